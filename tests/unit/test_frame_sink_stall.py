"""Publisher says so when Kafka stops acknowledging over a link that stays open (a stall)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import schemas
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec
from producers import publisher
from producers.publisher import Publisher
from tests.conftest import plant_raw

# an address in the environment (KAFKA_BOOTSTRAP, left by an in-process `up`) would win over the test's
pytestmark = pytest.mark.usefixtures("clean_env")

FRAME = {
    "asset": "demo.springfield.stamping.line1.press1",
    "device": "press1-plc",
    "seq": 0,
    "producer_id": "p",
    "scan_time": 1_767_225_600_000_000,
    "historical": False,
    "buffered": False,
    "samples": [{"tag": "state", "source_time": 1_767_225_600_000_000, "value": 1, "quality": "GOOD", "unit": ""}],
}


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: what a stalled broker looks like."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def sink_to(tmp_path: Path, port: int, stats: RunStats) -> Publisher:
    raw = plant_raw(tmp_path)
    raw["pipeline"]["kafka"].update(bootstrap=f"127.0.0.1:{port}", topic_prefix="t1.")
    return Publisher(Settings(**raw), Codec(schemas.READING_FRAME, 1), stats)


def wait_until(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_frames_without_acks_over_an_open_link_log_one_warning(
    tmp_path: Path, silent_broker: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "STALL_WARN_S", 0.6)
    caplog.set_level(logging.WARNING, logger="plantstream.producers.publisher")
    stats = RunStats("producer-test")
    sink = sink_to(tmp_path, silent_broker, stats)
    try:
        sink.emit(FRAME)
        assert wait_until(lambda: stats.get("ack_stalls") == 1, 5), "no stall reported"
        time.sleep(0.8)  # one warning per stall, not one per poll
    finally:
        sink.close(0.2)
    stalls = [r.getMessage() for r in caplog.records if "acknowledged no frame" in r.getMessage()]
    assert len(stalls) == 1 and f"127.0.0.1:{silent_broker}" in stalls[0] and "Fix:" in stalls[0], stalls
    assert stats.get("ack_stalls") == 1


def test_an_idle_sink_reports_no_stall(
    tmp_path: Path, silent_broker: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "STALL_WARN_S", 0.3)
    stats = RunStats("producer-test")
    sink = sink_to(tmp_path, silent_broker, stats)
    time.sleep(1.0)  # nothing emitted: nothing waits for an ack
    sink.close(0.2)
    assert stats.get("ack_stalls") == 0
    assert not [r for r in caplog.records if "acknowledged no frame" in r.getMessage()]
