"""Fault: Kafka unreachable for longer than the store-and-forward buffer can hold. The buffer stays
within its bound, raises its alarm, drops the oldest frames only (counted), and keeps the newest."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import schemas
from plantstream.config import Settings
from plantstream.runstats import RunStats
from plantstream.serde import Codec, Decoder
from producers.kafka_out import FrameSink
from producers.store_forward import DiskBuffer
from tests.conftest import free_port, plant_raw


def frame(seq: int) -> dict:
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


@pytest.mark.timeout(60)
def test_full_buffer_drops_oldest_and_alarms(tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture) -> None:
    raw = plant_raw(tmp_path)
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{free_port()}"  # nobody listens: Kafka is down
    settings = Settings(**raw)
    path = tmp_path / "buffer.db"
    stats = RunStats("producer-modbus")
    buffer = DiskBuffer(path, max_bytes=30_000)
    sink = FrameSink(
        settings,
        Codec(schemas.READING_FRAME, 1),
        stats,
        buffer=buffer,
        alarm_fill=0.8,
        config_overrides={"enable.idempotence": False, "reconnect.backoff.max.ms": 200},
    )
    with caplog.at_level(logging.WARNING):
        time.sleep(1.0)  # librdkafka reports all brokers down
        for seq in range(400):
            sink.emit(frame(seq))
        assert sink.close(timeout=1) == 0  # nothing is lost that the bound did not force out
    dropped = stats.get("frames_dropped")
    print(f"fault buffer-full: sent=400 kept={400 - dropped} dropped={dropped}")
    assert dropped > 100 and stats.get("buffer_fill_alarms") == 1
    assert any("% full" in r.getMessage() for r in caplog.records)
    assert any("dropped the" in r.getMessage() and "oldest" in r.getMessage() for r in caplog.records)
    again = DiskBuffer(path, max_bytes=30_000)
    kept = again.after(0, 1000)
    dec = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)
    seqs = [dec.decode(v)["seq"] for _, _, v, _ in kept]
    assert again.bytes <= 30_000
    assert seqs == list(range(400 - len(seqs), 400)), "the newest frames are kept, in order"
    assert len(seqs) == 400 - dropped
    again.close()
