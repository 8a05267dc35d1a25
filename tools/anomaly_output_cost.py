"""CPU cost of the anomaly model's update and of encoding the worker's output records, in one process.

    python tools/anomaly_output_cost.py

The model: `MultivariateModel.update` over 3,000 frames of one 20-tag synthetic asset (17 process values),
default settings, per phase (first half of the warm-up: covariance only; second half; judged), best of 3.
The outputs: one AnomalyScore (17 contributions) and one KpiWindow encoded 20,000 times by fastavro and by
`serde.Codec` (the flat writer), which must give the same bytes. Run it on two checkouts through
PYTHONPATH, alternating, for a before/after (figures in docs/performance.md).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import fastavro

import schemas
from plantstream.core.config import AnomalySettings
from plantstream.core.serde import Codec
from plantstream.simulators.synthetic import SyntheticPlant
from processors.anomaly.model import MultivariateModel

FRAMES = 3000
RECORDS: dict[str, dict[str, Any]] = {
    schemas.ANOMALY_SCORE: {
        "asset": "bench.site0.area0.line0.m00000",
        "time": 1_700_000_000_000_000,
        "model": "xreg-multiscale/5",
        "score": 0.73,
        "threshold": 1.3,
        "is_anomaly": False,
        "warming_up": False,
        "contributions": {f"pv{k:02d}": 1 / 17 for k in range(17)},
    },
    schemas.KPI_WINDOW: {
        "asset": "bench.site0.area0.line0.m00000",
        "tag": "pv03",
        "window_start": 1_700_000_000_000_000,
        "window_end": 1_700_000_010_000_000,
        "unit": "",
        "count": 100,
        "bad_count": 0,
        "min": 1.0,
        "max": 2.5,
        "mean": 1.7,
        "stddev": 0.3,
        "first": 1.1,
        "last": 2.0,
        "first_time": 1_700_000_000_000_000,
        "last_time": 1_700_000_009_900_000,
        "time_weighted_avg": 1.69,
        "rate_of_change": 0.01,
        "revision": 0,
        "data_coverage": 1.0,
    },
}


def model_cost() -> dict[str, float]:
    plant = SyntheticPlant(1, 20, 10.0, seed=1)
    frames = [plant.frame(0, 1_000_000_000 + i * 100_000) for i in range(FRAMES)]
    best: dict[str, float] = {}
    for _ in range(4):  # the first run compiles and warms caches
        m = MultivariateModel("a", AnomalySettings(), plant.pv_tags)
        marks = [time.process_time()]
        for i, f in enumerate(frames):
            m.update(f)
            if i in (599, 1199):
                marks.append(time.process_time())
        marks.append(time.process_time())
        spans = {
            "first_half_warmup": (marks[1] - marks[0]) / 600,
            "second_half_warmup": (marks[2] - marks[1]) / 600,
            "judged": (marks[3] - marks[2]) / (FRAMES - 1200),
            "all": (marks[3] - marks[0]) / FRAMES,
        }
        for k, v in spans.items():
            best[k] = min(best.get(k, v), v)
    return {k: round(v * 1e6, 2) for k, v in best.items()}


def per_call(fn: Callable[[], object], n: int = 20_000) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return round((time.process_time() - t) / n * 1e6, 2)


def encode_cost() -> dict[str, dict[str, float]]:
    out = {}
    for name, rec in RECORDS.items():
        codec = Codec(name, 1)

        def slow(codec: Codec = codec, rec: dict[str, Any] = rec) -> bytes:
            buf = io.BytesIO()
            buf.write(codec._header)
            fastavro.schemaless_writer(buf, codec.parsed, rec)
            return buf.getvalue()

        if codec.encode(rec) != slow():
            raise SystemExit(f"{name}: Codec.encode and fastavro disagree")
        out[name] = {"fastavro_us": per_call(slow), "codec_us": per_call(lambda c=codec, r=rec: c.encode(r))}
    return out


if __name__ == "__main__":
    print(json.dumps({"model_us_per_frame": model_cost(), "encode_us_per_record": encode_cost()}))
