"""Before/after of the per-sample paths in one process, interleaved: fastavro and dicts against columns.

    python tools/inprocess_ab.py [--rounds 5] [--json-out FILE]

Each round times, in turn, the old and the new way of: encoding a frame (records + fastavro against
plantstream/core/frame_codec.py), decoding one, adding it to the KPI windows (event_windows.apply_frame
against apply_columns, one frame per call as the worker's agent gives them) and writing a batch of 2,000
frames to SQLite (the storage sink's store). Frames: the benchmarks' synthetic plant (100 assets x 25
tags, doubles) and a Modbus-like frame of 20 tags (a quarter longs, a quarter booleans). The medians of
the rounds and their ratios go to stdout as JSON, with the load average: a figure of a busy machine is
only good as a ratio taken in the same round.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

import schemas
from plantstream.core.records import reading_frame, sample
from plantstream.core.serde import Codec, Decoder
from plantstream.simulators.synthetic import SyntheticPlant
from processors import event_windows
from sinks.stores.sqlite import SqliteStore

T0 = 1_767_225_600_000_000


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    codec = Codec(schemas.READING_FRAME, 1)
    plant = SyntheticPlant(100, 25, 40.0)
    frames = [plant.frame(i % 100, T0 + (i // 100) * 25_000) for i in range(8_000)]
    mixed = [
        dict(
            reading_frame(
                asset="p.s.a.l.m",
                device="d",
                seq=i,
                producer_id="p",
                scan_time=T0 + i * 100_000,
                samples=[
                    sample(
                        f"t{j}", T0 + i * 100_000, 1000 + i if j % 4 == 0 else (i % 2 == 0 if j % 4 == 1 else 0.5 * i)
                    )
                    for j in range(20)
                ],
            )
        )
        for i in range(4_000)
    ]
    samples = {"synthetic": 8_000 * 25, "mixed": 4_000 * 20}

    def fastavro_encode(fs: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for f in fs:
            buf = io.BytesIO()
            buf.write(b"\0\0\0\0\1")
            fastavro.schemaless_writer(buf, codec.parsed, f)
            out.append(buf.getvalue())
        return out

    blobs = {"synthetic": [codec.encode(f) for f in frames], "mixed": [codec.encode(f) for f in mixed]}
    assert blobs["synthetic"] == fastavro_encode(frames) and blobs["mixed"] == fastavro_encode(mixed)

    def decoder() -> Decoder:
        return Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)

    def fastavro_decode(bs: list[bytes]) -> None:
        for b in bs:
            fastavro.schemaless_reader(io.BytesIO(b[5:]), codec.parsed, None)

    cols = {k: [decoder().decode_frame(b) for b in v[:1]] for k, v in blobs.items()}  # JIT and layouts warm
    dec = decoder()
    cols = {k: [dec.decode_frame(b) for b in v] for k, v in blobs.items()}
    cols = {k: [dec.decode_frame(b) for b in v] for k, v in blobs.items()}
    dicts = {k: [dec.decode(b) for b in v] for k, v in blobs.items()}
    event_windows.apply_columns(event_windows.new_state(), cols["synthetic"][:2], 10_000_000, 2_000_000)

    def kpi_dicts(fs: list[Any]) -> None:
        states: dict[str, Any] = {}
        for f in fs:
            event_windows.apply_frame(
                states.setdefault(f["asset"], event_windows.new_state()), f, 10_000_000, 2_000_000
            )

    def kpi_columns(fs: list[Any]) -> None:
        states: dict[str, Any] = {}
        for f in fs:
            event_windows.apply_columns(
                states.setdefault(f.asset, event_windows.new_state()), [f], 10_000_000, 2_000_000
            )

    def sqlite(fs: list[Any]) -> None:
        with tempfile.TemporaryDirectory() as d:
            store = SqliteStore(Path(d) / "ab.db")
            for i in range(0, len(fs), 2000):
                store.write(fs[i : i + 2000], [])
            store.close()

    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any], int]] = {}
    for k in ("synthetic", "mixed"):
        fs = frames if k == "synthetic" else mixed
        cases[f"encode {k}"] = (
            lambda fs=fs: fastavro_encode(fs),
            lambda fs=fs: [codec.encode(f) for f in fs],
            samples[k],
        )
        cases[f"decode {k}"] = (
            lambda k=k: fastavro_decode(blobs[k]),
            lambda k=k: [dec.decode_frame(b) for b in blobs[k]],
            samples[k],
        )
        cases[f"kpi windows {k}"] = (lambda k=k: kpi_dicts(dicts[k]), lambda k=k: kpi_columns(cols[k]), samples[k])
        cases[f"sqlite write {k}"] = (lambda k=k: sqlite(dicts[k]), lambda k=k: sqlite(cols[k]), samples[k])
    runs: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in cases}
    for r in range(a.rounds):
        for name, (before, after, n) in cases.items():
            pair = [("before", before), ("after", after)]
            for which, fn in pair if r % 2 == 0 else pair[::-1]:  # alternating order
                runs[name][which].append(timed(fn) / n * 1e6)
    out: dict[str, Any] = {
        "tool": "tools/inprocess_ab.py",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
        "rounds": a.rounds,
        "us_per_sample_median": {},
    }
    for name, r2 in runs.items():
        b, af = statistics.median(r2["before"]), statistics.median(r2["after"])
        out["us_per_sample_median"][name] = {"before": round(b, 3), "after": round(af, 3), "speedup": round(b / af, 2)}
    text = json.dumps(out, indent=1)
    if a.json_out:
        Path(a.json_out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
