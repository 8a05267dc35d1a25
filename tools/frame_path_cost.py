"""CPU time of the worker's per-frame path, in-process: real Avro bytes in, the configured stages, outputs
collected in memory (no broker), for comparing two checkouts interleaved on one machine.

    PYTHONPATH=<checkout> python tools/frame_path_cost.py [--assets 20] [--tags 20] [--frames 20000]

prints one JSON line: the checkout, the stages, µs of CPU per frame over the whole backlog (after a
warm-up pass), and the outputs by kind. Run it for each checkout in turn, several times, and compare
medians: the figure includes every stage of the checkout, so a difference is what the stages cost.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import schemas
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from plantstream.simulators.synthetic import SyntheticPlant
from processors.worker.outputs import Collected
from processors.worker.processor import FrameProcessor, Message
from processors.worker.stages import default_stages
from processors.worker.state import AssetStates, TableStore

T0 = 1_767_225_600_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=20)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--frames", type=int, default=20_000)
    args = ap.parse_args()
    plant = SyntheticPlant(assets=args.assets, tags=args.tags, rate_hz=10.0)
    settings = Settings(**plant.config(), pipeline={"alerts": plant.alert_rules()})
    codec = Codec(schemas.READING_FRAME, 1)
    decoder = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)
    scans = args.frames // args.assets
    frames = [plant.frame(a, T0 + s * 100_000) for s in range(scans) for a in range(args.assets)]
    msgs = [Message("r", 0, i, f["asset"].encode(), codec.encode(f)) for i, f in enumerate(frames)]

    def run(batch: list[Message]) -> tuple[float, Collected]:
        out = Collected()
        stages = default_stages(settings, TableStore("anomaly-models", {}))
        proc = FrameProcessor(decoder.decode, stages, AssetStates("kpi-windows", {}), out, RunStats("p"), 5_000_000)
        t = time.process_time()
        for m in batch:
            proc.process(*m)
        return time.process_time() - t, out

    run(msgs[: len(msgs) // 10])  # warm-up: imports, caches
    cpu, out = run(msgs)
    stages = [s.name for s in default_stages(settings, TableStore("m", {}))]
    print(
        json.dumps(
            {
                "checkout": str(Path(schemas.__file__).resolve().parents[1]),
                "stages": stages,
                "frames": len(msgs),
                "samples_per_frame": args.tags,
                "cpu_us_per_frame": round(cpu / len(msgs) * 1e6, 1),
                "outputs": dict(Counter(str(k) for _, k, _ in out.records)),
            }
        )
    )


if __name__ == "__main__":
    main()
