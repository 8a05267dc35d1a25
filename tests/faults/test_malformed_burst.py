"""Fault: a burst of malformed and oversized messages between good frames. The worker must not crash,
every bad message that reached Kafka must land in the dead-letter topic (unchanged, with its reason),
frames too large for Kafka are refused by the producer with an error naming the size, and every good
frame around the burst must be stored once, with KPI windows equal to a recomputation of the topic."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from plantstream.core import kafka_clients, runstats, topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from producers.publisher import Publisher
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, plant_raw, write_config
from tests.faults.checker import BadInput, FrameKey, check_run, read_raw
from tests.faults.live import count, storage_sink_thread
from tests.helpers import frame_codec, prepare_topics, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

ASSET = "demo.springfield.stamping.line1.press1"
T0 = 1_767_225_600_000_000
MESSAGES = 600
TOO_LARGE = 2  # frames over librdkafka's message.max.bytes (1 MB): refused before they reach Kafka


def good_frame(i: int) -> dict[str, Any]:
    t = T0 + i * 100_000
    return {
        "asset": ASSET,
        "device": "d",
        "seq": i,
        "producer_id": "burst",
        "scan_time": t,
        "historical": True,
        "buffered": False,
        "samples": [{"tag": "x", "source_time": t, "value": float(i), "quality": "GOOD", "unit": ""}],
    }


def too_large_frame(j: int) -> dict[str, Any]:
    """A scan of 45,000 tags (~1.1 MB encoded): valid Avro, too large for one Kafka message."""
    t = T0 + j
    return {
        **good_frame(0),
        "device": "huge",
        "seq": j,
        "scan_time": t,
        "samples": [
            {"tag": f"t{k}", "source_time": t, "value": float(k), "quality": "GOOD", "unit": ""} for k in range(45_000)
        ],
    }


def burst(settings: Settings) -> tuple[list[tuple[bytes | None, bytes]], list[FrameKey]]:
    """600 messages in one partition, about half good frames, the rest bad in five ways."""
    codec = frame_codec(settings)
    rng = random.Random(9)
    items: list[tuple[bytes | None, bytes]] = []
    good: list[FrameKey] = []
    for i in range(MESSAGES):
        kind = rng.random()
        if kind < 0.5:
            items.append((ASSET.encode(), codec.encode(good_frame(i))))
            good.append(("burst", "d", i))
        elif kind < 0.7:
            items.append((ASSET.encode(), os.urandom(rng.randint(0, 64))))  # garbage, often without the magic byte
        elif kind < 0.85:
            items.append((ASSET.encode(), b"\x00\x00\x00\x7f\xff" + os.urandom(40)))  # unknown schema id
        elif kind < 0.95:
            template = {**good_frame(0), "seq": -1, "samples": []}
            items.append((ASSET.encode(), codec.encode(template)[:-3]))  # a truncated valid frame
        else:
            items.append((ASSET.encode(), b"\x00" + os.urandom(900_000)))  # oversized garbage (< 1 MB)
    return items, good


def produce_each(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes]]) -> list[str]:
    """Produce like a misbehaving client would; returns the errors of messages Kafka did not take."""
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    p = Producer(kafka_clients.producer_config(settings, "test"))
    for key, value in items:
        try:
            p.produce(topic, key=key, value=value, on_delivery=delivered)
        except KafkaException as e:
            errors.append(str(e))
    assert p.flush(30) == 0
    return errors


def test_burst_of_bad_messages(stack: Stack, tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture) -> None:
    # 5 s windows: the 60 s of event time close a dozen windows to compare with the recomputation
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": 5, "grace_s": 1}, metrics={"enabled": False})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    items, good = burst(settings)
    bad = len(items) - len(good)
    with storage_sink_thread(settings):
        assert produce_each(settings, settings.topic(topics.READINGS), items) == []
        stats = RunStats("producer-burst")
        producer = Publisher(settings, frame_codec(settings), stats)
        with caplog.at_level(logging.ERROR, logger="plantstream.producers.publisher"):
            for j in range(TOO_LARGE):
                producer.emit(too_large_frame(j))
            assert producer.close(10) == 0
        refused = stats.get("frames_failed")
        assert refused == TOO_LARGE and stats.get("frames_acked") == 0
        refusals = [r.getMessage() for r in caplog.records if "was not delivered" in r.getMessage()]
        assert len(refusals) == TOO_LARGE and all("MSG_SIZE_TOO_LARGE" in m for m in refusals), refusals

        def counts() -> dict[str, int]:
            return dict(runstats.read_all(settings.pipeline.state_dir).get("processor", {}).get("counts", {}))

        worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
        try:
            wait_for(
                lambda: counts().get("frames_in", 0) + counts().get("dead_letters", 0) >= len(items),
                120,
                what="every message handled",
            )
            wait_for(
                lambda: (
                    count(settings, "SELECT COUNT(*) FROM frames") >= len(good)
                    and count(settings, "SELECT COUNT(*) FROM kpi_windows") >= counts().get("kpi_windows", 0)
                ),
                60,
                0.2,
                "the good frames and their KPI windows stored",
            )
            assert worker.poll() is None, "the worker must survive the burst"
        finally:
            assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    c = counts()
    report = check_run(
        "malformed-burst",
        settings,
        len(good),
        sqlite_path(settings),
        kpis=True,
        kpis_complete=True,
        sent_keys=good,
        bad=BadInput(sent=bad + TOO_LARGE, refused=refused),
        processed=c.get("frames_in", 0),
        dead_letters=c.get("dead_letters", 0),
    ).emit()
    report.assert_ok()
    assert report.acked == report.stored == len(good), "every good frame around the burst is stored"
    assert c["frames_in"] == len(good) and c["dead_letters"] == bad, c
    assert report.extra["deadlettered"] == bad and report.extra["deadletter_duplicates"] == 0, report.extra
    # the checker compared every window with the recomputation; enough of them to prove something
    assert report.kpi is not None and report.kpi.expected >= 10 and c["kpi_windows"] == report.kpi.expected
    for m in read_raw(settings, topics.DEADLETTER):
        headers = dict(m.headers() or [])
        assert headers["ps-stage"] == b"processor" and headers["ps-error-class"], headers
