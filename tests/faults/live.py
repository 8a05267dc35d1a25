"""In-process pipeline for device-side faults: device producer -> real Kafka -> storage sink -> SQLite.

The producer runs in the test's event loop (so a test can stop a device server or stall its link
at a chosen moment) and hands frames to the real Publisher; the storage sink runs in a thread.
No subprocesses: each scenario costs seconds, not a worker start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from producers.service import frame_publisher
from sinks.storage import run_storage_sink
from sinks.stores.registry import sqlite_path
from tests.helpers import prepare_topics, wait_for

DeviceProducer = Callable[..., Coroutine[Any, Any, None]]


@dataclass
class Live:
    frames: list[dict[str, Any]] = field(default_factory=list)  # every frame handed to Kafka
    stats: RunStats = field(default_factory=lambda: RunStats("producer-fault"))

    def of(self, device: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["device"] == device]

    def last_quality(self, device: str) -> str:
        mine = self.of(device)
        return str(mine[-1]["samples"][0]["quality"]) if mine else ""

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {len(self.frames)} frames")
            await asyncio.sleep(0.05)


def count(settings: Settings, sql: str) -> int:
    db = sqlite_path(settings)
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return int(c.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # tables not created yet
            return 0


@contextlib.contextmanager
def storage_sink_thread(settings: Settings) -> Iterator[RunStats]:
    """The real storage sink in a thread of the test process until the block ends: no process start-up.

    An exception that ended the sink is raised when the block ends, so a test cannot pass on a dead sink.
    """
    stats = RunStats("sink-storage")
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_storage_sink(settings, stop, stats)
        except BaseException as e:  # reported to the test below
            failed.append(e)

    thread = threading.Thread(target=run, name="fault-sink", daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(30)
    if failed:
        raise AssertionError(f"the storage sink failed: {failed[0]!r}") from failed[0]
    assert not thread.is_alive(), "the storage sink did not stop within 30 s"


@contextlib.asynccontextmanager
async def live_pipeline(settings: Settings, produce: DeviceProducer) -> AsyncIterator[Live]:
    """Run `produce` (run_modbus_producer / run_opcua_producer) into Kafka and the store until the block ends.

    On exit the producer stops, every frame is delivered (or the test fails), and the sink runs
    until the store holds every acknowledged frame.
    """
    prepare_topics(settings)
    live = Live()
    sink = frame_publisher(settings, "producer-fault", live.stats)
    sink_stop = threading.Event()
    sink_thread = threading.Thread(
        target=run_storage_sink, args=(settings, sink_stop, RunStats("sink-storage")), name="fault-sink", daemon=True
    )
    sink_thread.start()

    def emit(frame: dict[str, Any]) -> None:
        live.frames.append(frame)
        sink.emit(frame)

    stop = asyncio.Event()
    task = asyncio.create_task(produce(settings, emit, stop, live.stats, "fault-producer"))
    try:
        yield live
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        undelivered = await asyncio.to_thread(sink.close, 30)
        try:
            assert undelivered == 0, f"{undelivered} frame(s) not acknowledged by Kafka"
            acked = live.stats.get("frames_acked")
            await asyncio.to_thread(
                wait_for,
                lambda: count(settings, "SELECT COUNT(*) FROM frames") >= acked,
                30,
                0.2,
                "the sink to store every acked frame",
            )
        finally:
            sink_stop.set()
            await asyncio.to_thread(sink_thread.join, 30)
