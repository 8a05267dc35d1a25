"""What every device producer shares: the frame type, timestamps, producer identity, and running one
task per device until stop with live stats (Modbus pollers and OPC UA readers use the same loop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from plantstream.core.records import ReadingFrame
from plantstream.core.runstats import RunStats

Emit = Callable[[ReadingFrame], None]

STATS_FLUSH_INTERVAL_S = 1.0


def now_us() -> int:
    """Wall-clock time, UTC microseconds since the epoch (the frame contract's timestamp unit)."""
    return time.time_ns() // 1000


def default_producer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{now_us()}"


async def wait_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleep up to `delay` seconds; True when `stop` was set meanwhile."""
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()


async def run_devices(
    workers: Iterable[tuple[str, Coroutine[Any, Any, None]]], stop: asyncio.Event, stats: RunStats | None
) -> None:
    """Run one task per device until `stop`; flush `stats` every second so `plantstream up` shows progress."""

    async def flush_stats(s: RunStats) -> None:
        while not await wait_stop(stop, STATS_FLUSH_INTERVAL_S):
            s.flush()

    try:
        async with asyncio.TaskGroup() as tg:
            for name, work in workers:
                tg.create_task(work, name=name)
            if stats is not None:
                tg.create_task(flush_stats(stats), name="producer-stats")
            await stop.wait()
    finally:
        if stats is not None:
            stats.flush()
