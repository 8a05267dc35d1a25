"""The worker's per-frame path in one process, no broker: samples/s and the CPU split between its stages.

    python tools/worker_split.py [--assets 100] [--tags 20] [--frames 20000] [--profile]

Real Avro bytes (the synthetic plant of the benchmarks) go through the worker's FrameProcessor with the
real stages and an in-memory output collector, once with every stage on and once with KPI windows only,
frames decoded as dicts (fastavro) and as columns (plantstream/core/frame_codec.py). What it leaves out is
what `plantstream bench worker` adds: the Kafka consumer (Faust), the output producer and the checkpoints.
Rates are per CPU second, not wall time (the machine is shared).
With --profile, cProfile's inclusive share of each stage in the run with every stage and columns.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import schemas
from plantstream.bench.worker import _kpi_only
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from plantstream.simulators.synthetic import SyntheticPlant
from processors.worker.outputs import Collected
from processors.worker.processor import FrameProcessor, Message
from processors.worker.stages import default_stages
from processors.worker.state import AssetStates, TableStore

T0 = 1_767_225_600_000_000
STAGES = [
    ("decode", "frame_codec.py:decode"),
    ("kpi windows", "kpi_windows.py:apply"),
    ("oee", "stages/oee.py:apply_frame"),
    ("anomaly", "stages/anomaly.py:apply_frame"),
    ("alert rules", "alerts.py:apply"),
    ("alarms", "stages/alarms.py:apply"),
    ("asset state", "stages/asset_state.py:apply"),
    ("frames as dicts", "frame_codec.py:to_frame"),
    ("outputs", "processor.py:_send"),
]


def run(raw: dict[str, Any], msgs: list[Message], decode: str, tags: int, profile: bool) -> tuple[float, Any]:
    settings = Settings(**raw)
    dec = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)
    proc = FrameProcessor(
        getattr(dec, decode),
        default_stages(settings, TableStore("anomaly-models", {})),
        AssetStates("kpi-windows", {}),
        Collected(),
        RunStats("processor"),
        2_000_000,
    )
    warm = len(msgs) // 10
    for m in msgs[:warm]:  # compiled code, models past their first frames
        proc.process(*m)
    prof = cProfile.Profile() if profile else None
    t = time.process_time()  # CPU time: the machine is shared, wall time would measure the others too
    if prof:
        prof.enable()
    for m in msgs[warm:]:
        proc.process(*m)
    if prof:
        prof.disable()
    return (len(msgs) - warm) * tags / (time.process_time() - t), prof


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    plant = SyntheticPlant(a.assets, a.tags, 10.0)
    raw = {**plant.config(), "pipeline": {"windows": {"kpi_window_s": 10, "grace_s": 2}, "alerts": plant.alert_rules()}}
    codec = Codec(schemas.READING_FRAME, 7)
    msgs = []
    for i in range(a.frames):
        k, s = i % a.assets, i // a.assets
        value = codec.encode_columns(**plant.frame_columns(k, T0 + s * 100_000))
        msgs.append(Message("readings", k % 6, i, plant.assets[k].encode(), value))
    for name, config in (("kpi windows only", _kpi_only(raw)), ("every stage", raw)):
        for decode in ("decode", "decode_frame"):
            rate, _ = run(config, msgs, decode, a.tags, False)
            kind = "dicts  " if decode == "decode" else "columns"
            print(f"{name:17s} frames as {kind}: {rate:10,.0f} samples per CPU second ({1e6 / rate:.2f} µs/sample)")
    if a.profile:
        _, prof = run(raw, msgs, "decode_frame", a.tags, True)
        st = pstats.Stats(prof)
        cum = {f"{k[0]}:{k[2]}": v[3] for k, v in st.stats.items()}  # type: ignore[attr-defined]
        total = max(v for k, v in cum.items() if "processor.py:process" in k)
        for name, pat in STAGES:
            share = max((v for k, v in cum.items() if pat in k), default=0.0) / total
            print(f"  {name:16s} {100 * share:5.1f} % of the per-frame path (cProfile, inclusive)")


if __name__ == "__main__":
    main()
