"""Fault: the worker is killed with SIGKILL at random points of a backlog (3 times; 10 in soak mode) and
restarted after each kill. Its KPI output must equal a recomputation of the readings topic: no window
lost, none unexpected, every emitted value identical (a restart repeats the windows since the last
commit; the store's natural key absorbs the repeats). The storage sink runs alongside, so the checker
also proves every acked frame stored once.

The kill points are drawn from a printed seed; `PLANTSTREAM_FAULT_SEED=<seed>` replays a run's points."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, plant_raw, write_config
from tests.faults.checker import SOAK, KpiKey, check_run, compare_kpis, frame_key, read_topic, recompute_kpis
from tests.faults.live import count, storage_sink_thread
from tests.helpers import consume_until, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000
ASSETS = [f"demo.springfield.area{a}.line1.m{a}" for a in range(4)]
KILLS = int(os.environ.get("PLANTSTREAM_FAULT_KILLS", "10" if SOAK else "3"))
FRAMES_PER_ASSET = 3000 if SOAK else 900  # 0.5 s apart: 450 s of history per asset, 44 windows x 40 series
TAGS = 10
WINDOW_S = 10
# kill points, as fractions of the KPI windows: mid-stream, with room for the kill landing a few hundred
# windows late on a loaded machine (measured: up to ~175 of 1760)
KILL_RANGE = (0.15, 0.8)


def history() -> list[dict[str, Any]]:
    out = []
    for i in range(FRAMES_PER_ASSET):
        for a, asset in enumerate(ASSETS):
            t = T0 + i * 500_000
            out.append(
                {
                    "asset": asset,
                    "device": f"d{a}",
                    "seq": i,
                    "producer_id": "fault",
                    "scan_time": t,
                    "historical": True,
                    "buffered": False,
                    "samples": [
                        {
                            "tag": f"t{k}",
                            "source_time": t,
                            "value": float((i * (k + 1) + a) % 101),
                            "quality": "GOOD",
                            "unit": "",
                        }
                        for k in range(TAGS)
                    ],
                }
            )
    return out


def kill_points(seed: int, windows: int) -> list[int]:
    """How far the worker has got (distinct KPI windows emitted) when each kill lands, from the seed."""
    rng = random.Random(seed)
    lo, hi = (int(f * windows) for f in KILL_RANGE)
    return sorted(rng.randint(lo, hi) for _ in range(KILLS))


class KpiWatch:
    """Follows the KPI topic while the worker runs: how far it has got, to within a producer linger.

    (The worker's frame counter is written once a second, ~500 frames apart here: kills timed by it
    landed up to 600 frames late, near the end of the backlog.)"""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic(topics.KPI)
        self.consumer = Consumer(
            kafka_clients.consumer_config(settings, f"fault-watch-{time.time_ns()}", "fault-watch")
        )
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, -2) for p in parts])
        self.dec = decoder(settings, schemas.KPI_WINDOW)
        self.seen: set[KpiKey] = set()

    def distinct(self) -> int:
        for m in self.consumer.consume(1000, 0.05):
            if not m.error():
                r = self.dec.decode(m.value())
                self.seen.add((r["asset"], r["tag"], r["window_start"], r["window_end"]))
        return len(self.seen)

    def close(self) -> None:
        self.consumer.close()


def test_worker_sigkill_at_random_points_equals_uninterrupted_run(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    seed = int(os.environ.get("PLANTSTREAM_FAULT_SEED") or random.SystemRandom().randrange(2**32))
    raw = plant_raw(
        tmp_path,
        stack,
        windows={"kpi_window_s": WINDOW_S, "grace_s": 0, "idle_after_s": 3600},
        storage={"retention": {"samples_days": 0, "aggregates_days": 0}},  # keep the 2026-01 history
        metrics={"enabled": False},
    )
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    frames = history()
    codec = frame_codec(settings)
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in frames])
    # what an uninterrupted worker closes: the checker's recomputation of the readings topic
    expected = recompute_kpis(settings, read_topic(settings, topics.READINGS, schemas.READING_FRAME))
    assert len(expected) >= 500, f"only {len(expected)} KPI windows: too few to prove anything"
    points = kill_points(seed, len(expected))
    print(
        f"worker-sigkill: seed={seed} (PLANTSTREAM_FAULT_SEED replays it): kills at {points} of {len(expected)} windows"
    )

    log = tmp_path / "worker.log"
    killed_at: list[int] = []
    dec = decoder(settings, schemas.KPI_WINDOW)
    emitted: list[dict[str, Any]] = []
    seen: set[KpiKey] = set()

    def all_windows(msgs: list[Any]) -> bool:
        # a restart repeats the windows since the last commit: wait for every distinct window, not a count
        for m in msgs[len(emitted) :]:
            r = dec.decode(m.value())
            emitted.append(r)
            seen.add((r["asset"], r["tag"], r["window_start"], r["window_end"]))
        return seen >= expected.keys()

    started = time.monotonic()
    watch = KpiWatch(settings)
    with storage_sink_thread(settings):
        worker = spawn_cli(config, "process", log=log)
        try:
            for n, point in enumerate(points, 1):
                before = watch.distinct()
                # past the point and one new window from this incarnation: it dies mid-stream, not while
                # starting, even where the previous kill point was already past this one
                wait_for(
                    lambda p=point, b=before: watch.distinct() >= max(p, b + 1),
                    120,
                    0.02,
                    f"kill {n}: {point} distinct KPI windows emitted",
                )
                assert worker.poll() is None, log.read_text()[-3000:]
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                killed_at.append(watch.distinct())
                worker = spawn_cli(config, "process", log=log)
            kpi_msgs = consume_until(settings, settings.topic(topics.KPI), all_windows, timeout=180)
            assert len(kpi_msgs) == len(emitted)
            # the store has caught up with the worker's output before the checker reads it
            wait_for(
                lambda: (
                    count(settings, "SELECT COUNT(*) FROM kpi_windows") >= len(seen)
                    and count(settings, "SELECT COUNT(*) FROM frames") >= len(frames)
                ),
                60,
                0.2,
                "the sink to store every frame and KPI window",
            )
        finally:
            watch.close()
            assert stop(worker) == 0, log.read_text()[-3000:]
    elapsed = time.monotonic() - started

    # every emitted record, repeats included, against the recomputation: the store keeps the first of
    # a repeated window, so a repeat with other values would not show in the stored comparison
    out = compare_kpis(expected, emitted, complete=True)
    report = check_run(
        "worker-sigkill",
        settings,
        len(frames),
        sqlite_path(settings),
        kpis=True,
        kpis_complete=True,
        sent_keys=[frame_key(f) for f in frames],
        kills=len(killed_at),
        seed=seed,
        kill_points=",".join(map(str, points)),
        killed_at_windows=",".join(map(str, killed_at)),
        kpi_emitted=len(emitted),
        kpi_emitted_missing=len(out.missing),
        kpi_emitted_unexpected=len(out.unexpected),
        kpi_emitted_mismatched=len(out.mismatched),
        kpi_repeated=out.duplicated,  # windows the restarts sent again, absorbed by the store's natural key
        duration_s=round(elapsed, 1),
    ).emit()
    report.assert_ok()
    assert out.ok, (
        f"seed {seed}: emitted KPI windows differ from a recomputation of the readings topic: missing "
        f"{out.missing[:3]} ({len(out.missing)}), mismatched {out.mismatched[:3]} ({len(out.mismatched)}), "
        f"unexpected {out.unexpected[:3]} ({len(out.unexpected)}); first differences (emitted, recomputed): "
        f"{out.diffs}; worker log tail: {log.read_text()[-2000:]}"
    )
    assert report.acked == report.stored == len(frames)
    assert report.kpi is not None and report.kpi.got == report.kpi.expected == len(expected)
    assert len(killed_at) == KILLS and all(p < len(expected) for p in killed_at), (
        f"a kill landed after the worker's last window, not mid-stream: {killed_at} of {len(expected)}"
    )
