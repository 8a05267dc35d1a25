"""`plantstream bench storage`: samples per second the stores take, batch by batch, as the sink writes them.

Synthetic frames of 20-50 samples each, written in batches like the sink's; only the store.write
calls are timed (not building the records). Each run starts from an empty database; the figure is
the median of the runs. PostgreSQL: the server at --dsn, else a throwaway local one with default
(durable: fsync on) settings.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plantstream.core.records import ReadingFrame, reading_frame, sample
from sinks.batch import Batch
from sinks.stores.base import Store

T0 = 1_767_225_600_000_000


def make_batches(n_batches: int, frames_per_batch: int, seed: int = 1) -> list[list[ReadingFrame]]:
    rng = random.Random(seed)
    batches: list[list[ReadingFrame]] = []
    seq = 0
    for _ in range(n_batches):
        batch = []
        for _ in range(frames_per_batch):
            t = T0 + seq * 100_000
            asset = f"acme.site.area.line{seq % 10}.m{seq % 7}"
            batch.append(
                reading_frame(
                    asset=asset,
                    device=f"d{seq % 70}",
                    seq=seq,
                    producer_id="bench",
                    scan_time=t,
                    samples=[sample(f"tag{k}", t, rng.random() * 100) for k in range(rng.randint(20, 50))],
                )
            )
            seq += 1
        batches.append(batch)
    return batches


def time_run(store: Store, batches: list[list[ReadingFrame]]) -> dict[str, float]:
    samples = 0
    start = time.perf_counter()
    for b in batches:
        samples += store.write(Batch(frames=list(b)))["samples"]
    elapsed = time.perf_counter() - start
    store.close()
    expected = sum(len(f["samples"]) for b in batches for f in b)
    if samples != expected:
        raise RuntimeError(f"stored {samples} samples, expected {expected}")
    return {"samples": samples, "seconds": round(elapsed, 4), "samples_per_s": round(samples / elapsed)}


def bench(open_fresh: Callable[[int], Store], batches: list[list[ReadingFrame]], runs: int) -> dict[str, Any]:
    results = [time_run(open_fresh(i), batches) for i in range(runs)]
    return {"runs": results, "median_samples_per_s": statistics.median(r["samples_per_s"] for r in results)}


def run(
    runs: int = 5,
    n_batches: int = 20,
    frames_per_batch: int = 500,
    dsn: str | None = None,
    sqlite: bool = True,
    postgres: bool = True,
) -> dict[str, Any]:
    batches = make_batches(n_batches, frames_per_batch)
    n_samples = sum(len(f["samples"]) for b in batches for f in b)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "params": {
            "runs": runs,
            "batches": n_batches,
            "frames_per_batch": frames_per_batch,
            "samples_per_frame": "20-50",
            "samples_per_run": n_samples,
        },
    }
    if sqlite:
        from sinks.stores.sqlite import SqliteStore

        with tempfile.TemporaryDirectory(prefix="plantstream-bench-") as d:
            out["sqlite"] = bench(lambda i: SqliteStore(Path(d) / f"run{i}.db"), batches, runs)
    if postgres:
        out["postgres"] = _bench_postgres(batches, runs, dsn)
    return out


def _bench_postgres(batches: list[list[ReadingFrame]], runs: int, dsn: str | None) -> dict[str, Any]:
    import psycopg

    from plantstream.stack.postgres import LocalPostgres
    from sinks.stores.postgres import PostgresStore

    server = None
    if dsn is None:
        server = LocalPostgres(durable=True)
        server.init()
        server.start()
        dsn = server.dsn()
    try:
        dbs: list[str] = []

        def fresh(i: int) -> Store:
            name = f"plantstream_bench_{os.getpid()}_{i}"
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}"')
                c.execute(f'CREATE DATABASE "{name}"')
            dbs.append(name)
            return PostgresStore(psycopg.conninfo.make_conninfo(dsn, dbname=name))

        result = bench(fresh, batches, runs)
        result["server"] = "local throwaway (fsync on)" if server else "--dsn"
        with psycopg.connect(dsn, autocommit=True) as c:
            result["server_version"] = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for name in dbs:
                c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        return result
    finally:
        if server is not None:
            server.cleanup()


def main(out_path: str | None = None, **kwargs: Any) -> dict[str, Any]:
    result = run(**kwargs)
    text = json.dumps(result, indent=2)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(text + "\n")
    print(text)
    return result
