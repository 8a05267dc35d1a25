"""The DeviceReader interface every protocol implements, and the loop that runs readers until stop.

A reader owns one connection (a Modbus device or serial bus, an OPC UA session, an MQTT broker) and
the configured devices behind it. Its lifecycle:

1. `__init__`: configuration only, no I/O; a reader can be built for a device that is down.
2. `run(stop)`: connect, then read (poll) or subscribe, until `stop` is set. A device or network
   failure never raises out of `run`: the reader reports it (`report_failure`, rate-limited), marks
   the gap (`device_down`: the device's tags BAD in one frame, one RAISED device-down alert), and
   reconnects with backoff; on recovery `device_up` sends the CLEARED alert. `run` returns soon after
   `stop` is set, its connection released (it calls `close`).
3. `health()`: at any time, on the loop thread: up or not, devices down, frames sent, the last error.
4. `close()`: release the connection; idempotent.

Frames leave only through `send` (counted in RunStats as frames_produced, samples_read, samples_bad,
then handed to `emit` on the event loop thread; `emit` must not block for long). tests/conformance/
runs the same checks on every reader over a real server.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from plantstream.core.outage_log import OutageLog
from plantstream.core.records import Alert, ReadingFrame
from plantstream.core.runstats import RunStats
from producers.device_events import EventEmit, OutageTracker

Emit = Callable[[ReadingFrame], None]

FAILURE_LOG_INTERVAL_S = 30.0  # a failure that lasts is logged again at most this often

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


# --- the interface ----------------------------------------------------------------------------------


class NamedTag(Protocol):
    @property
    def name(self) -> str: ...


class SourceDevice(Protocol):
    """What a reader needs of a configured device (every device config of plantstream.core.config has it)."""

    @property
    def name(self) -> str: ...

    @property
    def asset(self) -> str: ...

    @property
    def tags(self) -> Sequence[NamedTag]: ...


@dataclass(frozen=True)
class ReaderHealth:
    up: bool  # the last attempt reached every device
    devices_down: tuple[str, ...]  # devices with an open outage (RAISED, not yet CLEARED)
    frames: int  # frames sent since the reader started
    last_frame_us: int | None  # scan time of the last frame sent
    last_error: str  # the failure being reported now; "" when none


class DeviceReader(abc.ABC):
    """One connection to one source of readings and the configured devices behind it (see the module doc)."""

    protocol: ClassVar[str]  # "modbus", "opcua", "mqtt", "sparkplug": log lines and task names

    def __init__(
        self,
        devices: Sequence[SourceDevice],
        emit: Emit,
        *,
        subject: str,
        log: logging.Logger,
        stats: RunStats | None = None,
        on_event: EventEmit | None = None,
        report_each_cause: bool = False,
    ) -> None:
        """`subject` names the connection in log lines; `report_each_cause`: a new cause is logged at once."""
        self.reader_devices = list(devices)
        self._emit = emit
        self._stats = stats
        self._on_event = on_event
        self.subject = subject
        self.problems = OutageLog(log, interval_s=FAILURE_LOG_INTERVAL_S)
        self._per_cause = report_each_cause
        self._cause = ""  # the failure being reported now
        self._outages = [OutageTracker(d.name, d.asset, [t.name for t in d.tags]) for d in self.reader_devices]
        self._gap_marked = [False] * len(self.reader_devices)
        self._attempted = False
        self._frames = 0
        self._last_frame_us: int | None = None

    @property
    def task_name(self) -> str:
        return f"{self.protocol}-{'+'.join(d.name for d in self.reader_devices)}"

    @abc.abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, read or subscribe, reconnect, until `stop`; never raises for a device condition."""

    def close(self) -> None:  # noqa: B027  (a reader without a connection of its own has nothing to release)
        """Release the connection; idempotent."""

    def health(self) -> ReaderHealth:
        pairs = zip(self.reader_devices, self._outages, strict=True)
        down = tuple(d.name for d, o in pairs if o.down_since_us is not None)
        return ReaderHealth(
            up=self._attempted and not down,
            devices_down=down,
            frames=self._frames,
            last_frame_us=self._last_frame_us,
            last_error=self._cause,
        )

    # --- for implementations ------------------------------------------------------------------------

    def send(self, frame: ReadingFrame) -> None:
        """Count the frame and hand it to `emit`."""
        samples = frame["samples"]
        self.add_stat("frames_produced")
        self.add_stat("samples_read", len(samples))
        bad = sum(1 for s in samples if s["quality"] == "BAD")
        if bad:
            self.add_stat("samples_bad", bad)
        self._frames += 1
        self._last_frame_us = frame["scan_time"]
        self._emit(frame)

    def device_up(self, index: int, at_us: int | None = None) -> None:
        """Device `index` answered: CLEARED if it was down; the next outage gets a gap frame again."""
        self._attempted = True
        self._gap_marked[index] = False
        self._event(self._outages[index].observe(True, at_us if at_us is not None else now_us()))

    def device_down(
        self,
        index: int,
        cause: str,
        at_us: int | None = None,
        gap: Callable[[int], ReadingFrame] | None = None,
    ) -> None:
        """Device `index` did not answer: RAISED once per outage; `gap(at_us)`, when given, builds the frame of
        BAD samples that marks the gap, sent once per outage (not once per retry)."""
        self._attempted = True
        at = at_us if at_us is not None else now_us()
        if gap is not None and not self._gap_marked[index]:
            self._gap_marked[index] = True
            self.add_stat("connection_gaps")
            self.send(gap(at))
        self._event(self._outages[index].observe(False, at, cause))

    def report_failure(self, cause: str, consequence: str = "") -> None:
        """Log the failure: at once, then at most every FAILURE_LOG_INTERVAL_S while it lasts (with
        `report_each_cause`, a different cause at once too)."""
        if self._per_cause and self._cause and cause != self._cause:
            self.problems.forget(self._condition())
        self._cause = cause
        tail = f"; {consequence}" if consequence else ""
        self.problems.report(self._condition(), "%s: %s%s", self.subject, cause, tail)

    def report_recovery(self, message: str) -> None:
        """One line when a reported failure ended."""
        if self._cause:
            self.problems.resolved(self._condition(), "%s: %s", self.subject, message)
            self._cause = ""

    def _condition(self) -> str:
        return self._cause if self._per_cause else "failure"

    def add_stat(self, name: str, n: int = 1) -> None:
        if self._stats is not None:
            self._stats.add(name, n)

    def _event(self, event: Alert | None) -> None:
        if event is not None and self._on_event is not None:
            self._on_event(event)


async def run_readers(readers: Sequence[DeviceReader], stop: asyncio.Event, stats: RunStats | None) -> None:
    """Run every reader in a task of its own until `stop`, flushing `stats` every second so `plantstream up`
    shows progress; every reader is closed on the way out."""

    async def flush_stats(s: RunStats) -> None:
        while not await wait_stop(stop, STATS_FLUSH_INTERVAL_S):
            s.flush()

    try:
        async with asyncio.TaskGroup() as tg:
            for r in readers:
                tg.create_task(r.run(stop), name=r.task_name)
            if stats is not None:
                tg.create_task(flush_stats(stats), name="producer-stats")
            await stop.wait()
    finally:
        for r in readers:
            r.close()
        if stats is not None:
            stats.flush()
