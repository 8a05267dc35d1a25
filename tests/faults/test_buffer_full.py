"""Fault: Kafka unreachable for longer than the store-and-forward buffer can hold, then back. The buffer
stays within its bound, raises its alarm, and drops (refuses) the oldest frames only, counted; when Kafka
answers again at the same address the newest frames it kept go out in order, and every frame is either
acknowledged and stored once or counted as refused, never both and never neither.

Kafka "comes back" as a listener on the address the producer was configured with: a forwarding proxy
to the session's broker opens there, so the producer's own reconnect and drain find it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from producers.publisher import Publisher
from producers.store_forward import DiskBuffer
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw
from tests.faults.checker import check_run, read_topic
from tests.faults.live import count, storage_sink_thread
from tests.faults.proxy import StallProxy
from tests.helpers import frame_codec, prepare_topics, wait_for

pytestmark = pytest.mark.integration

MAX_BYTES = 30_000
OUTAGE_FRAMES = 400  # handed to the producer while Kafka is down: ~2.3x what the buffer holds
AFTER_FRAMES = 20  # handed to it once Kafka answers again


def frame(seq: int) -> dict[str, Any]:
    t = 1_767_225_600_000_000 + seq
    return {
        "asset": "a.b.c.d.e",
        "device": "plc",
        "seq": seq,
        "producer_id": "full",
        "scan_time": t,
        "historical": False,
        "buffered": False,
        "samples": [
            {"tag": f"t{k}", "source_time": t, "value": float(k), "quality": "GOOD", "unit": "bar"} for k in range(5)
        ],
    }


@contextlib.contextmanager
def kafka_back_at(port: int, bootstrap: str) -> Iterator[None]:
    """Kafka answers at 127.0.0.1:`port` (a proxy to the real broker) until the block ends.

    The proxy runs on its own event loop thread, so the test's blocking calls never stall it."""
    host, real_port = bootstrap.split(",")[0].rsplit(":", 1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kafka-back-proxy", daemon=True)
    thread.start()
    proxy = StallProxy(host, int(real_port), listen_port=port)
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
        yield
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.timeout(60)
def test_full_buffer_drops_oldest_and_alarms(
    stack: Stack, tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    raw = plant_raw(tmp_path, stack, metrics={"enabled": False})
    settings = Settings(**raw)  # the storage sink and the checker reach the real broker
    prepare_topics(settings)
    codec = frame_codec(settings)
    port = free_port()
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{port}"  # nobody listens there yet: Kafka is down
    device_side = Settings(**raw)
    path = tmp_path / "buffer.db"
    stats = RunStats("producer-modbus")
    sent = OUTAGE_FRAMES + AFTER_FRAMES

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    with caplog.at_level(logging.INFO), storage_sink_thread(settings):
        sink = Publisher(
            device_side,
            codec,
            stats,
            buffer=DiskBuffer(path, max_bytes=MAX_BYTES),
            alarm_fill=0.8,
            config_overrides={"reconnect.backoff.max.ms": 200},
        )
        try:
            # frames handed over before the producer knows Kafka is down would sit in librdkafka's queue
            wait_for(lambda: any("Kafka is unreachable" in m for m in messages()), 10, 0.05, "the outage noticed")
            for seq in range(OUTAGE_FRAMES):
                sink.emit(frame(seq))
            dropped = stats.get("frames_dropped")
            assert dropped > 100 and stats.get("buffer_fill_alarms") == 1
            assert any("% full" in m for m in messages())
            assert any("dropped the" in m and "oldest" in m for m in messages())
            assert stats.get("frames_acked") == 0 and stats.get("frames_buffered") == OUTAGE_FRAMES
            with kafka_back_at(port, stack.bootstrap):
                # drained, not "acked == kept": a frame that vanished from the buffer uncounted must show up
                # in the checker's figures (silently_lost), not as a timeout here
                drained = lambda: stats.get("frames_acked") > 0 and stats.get("buffer_frames") == 0  # noqa: E731
                wait_for(drained, 30, 0.1, "the kept frames acked after the outage")
                acked_after_outage = stats.get("frames_acked")
                for seq in range(OUTAGE_FRAMES, sent):
                    sink.emit(frame(seq))
                wait_for(
                    lambda: stats.get("frames_acked") >= acked_after_outage + AFTER_FRAMES,
                    15,
                    0.1,
                    "the frames after the outage",
                )
                assert sink.close(timeout=10) == 0
        finally:
            sink.close(timeout=1)  # no-op once closed; frees the buffer's lock if the test failed early
        acked = stats.get("frames_acked")
        wait_for(lambda: count(settings, "SELECT COUNT(*) FROM frames") >= acked, 30, 0.1, "every acked frame stored")
    assert stats.get("frames_failed") == 0
    again = DiskBuffer(path, max_bytes=MAX_BYTES)
    left = len(again)
    again.close()
    assert left == 0, f"{left} frame(s) accepted into the buffer were never acknowledged"
    report = check_run(
        "buffer-full",
        settings,
        sent,
        sqlite_path(settings),
        sent_keys=[("full", "plc", s) for s in range(sent)],
        refused=dropped,
        no_kpis="no-worker-runs",
        buffer_max_bytes=MAX_BYTES,
        outage_frames=OUTAGE_FRAMES,
        alarms=stats.get("buffer_fill_alarms"),
        producer_acked=stats.get("frames_acked"),
    ).emit()
    report.assert_ok()
    assert report.acked == report.stored == sent - dropped
    in_topic = [r.value for r in read_topic(settings, topics.READINGS, schemas.READING_FRAME) if r.value]
    assert [f["seq"] for f in in_topic] == list(range(dropped, sent)), "the newest frames are kept, in order"
    assert all(f["buffered"] == (f["seq"] < OUTAGE_FRAMES) for f in in_topic), "outage frames are marked buffered"
