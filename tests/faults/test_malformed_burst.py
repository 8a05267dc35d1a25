"""Fault: a burst of malformed and oversized messages between good frames. The worker must not crash,
every bad message must land in the dead-letter topic with its reason, and every good frame must count."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from plantstream import runstats, topics
from plantstream.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

ASSET = "demo.springfield.stamping.line1.press1"
T0 = 1_767_225_600_000_000


def test_burst_of_bad_messages(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    rng = random.Random(9)
    good = 0
    bad = 0
    items: list[tuple[bytes | None, bytes]] = []
    for i in range(600):
        kind = rng.random()
        if kind < 0.5:
            t = T0 + i * 100_000
            frame = {
                "asset": ASSET,
                "device": "d",
                "seq": i,
                "producer_id": "burst",
                "scan_time": t,
                "historical": True,
                "buffered": False,
                "samples": [{"tag": "x", "source_time": t, "value": float(i), "quality": "GOOD", "unit": ""}],
            }
            items.append((ASSET.encode(), codec.encode(frame)))
            good += 1
            continue
        bad += 1
        if kind < 0.7:
            items.append((ASSET.encode(), os.urandom(rng.randint(0, 64))))  # garbage, often without the magic byte
        elif kind < 0.85:
            items.append((ASSET.encode(), b"\x00\x00\x00\x7f\xff" + os.urandom(40)))  # unknown schema id
        elif kind < 0.95:
            template = {
                "asset": ASSET,
                "device": "d",
                "seq": -1,
                "producer_id": "burst",
                "scan_time": T0,
                "historical": True,
                "buffered": False,
                "samples": [],
            }
            items.append((ASSET.encode(), codec.encode(template)[:-3]))  # a truncated valid frame
        else:
            items.append((ASSET.encode(), b"\x00" + os.urandom(900_000)))  # oversized garbage (< 1 MB)
    produce(settings, settings.topic(topics.READINGS), items)

    def counts() -> dict[str, int]:
        return dict(runstats.read_all(settings.pipeline.state_dir).get("processor", {}).get("counts", {}))

    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        wait_for(
            lambda: counts().get("frames_in", 0) + counts().get("dead_letters", 0) >= len(items),
            120,
            what="every message handled",
        )
        dead = consume_all(settings, settings.topic(topics.DEADLETTER), bad, timeout=60)
        assert worker.poll() is None, "the worker must survive the burst"
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    c = counts()
    print(
        f"fault malformed-burst: sent={len(items)} good={good} bad={bad} processed={c.get('frames_in')} "
        f"dead_letters={c.get('dead_letters')}"
    )
    assert c["frames_in"] == good and c["dead_letters"] == bad
    assert len(dead) == bad
    for m in dead:
        headers = dict(m.headers())
        assert headers["ps-error"] and headers["ps-stage"] == b"processor"
        assert int(headers["ps-source-offset"]) >= 0
