"""Timers of the worker: when an asset counts as silent, and the once-a-second silence tick.

Contract: `SilenceClock` says how long an asset has been silent - only while its readings partition
is known, by the broker's word, to be read to the end, so neither a backlog nor a broker outage looks
like silent machines - and returns it once past `idle_after_us` (else None). `refresh` asks the
broker for the end offsets of the owned partitions each tick; when it cannot answer, nobody is idle.
`InputOffsets` remembers the last readings offset processed per partition and reports a jump (an
offset hole means frames the consumer never delivered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from plantstream.core import logs
from plantstream.core.runstats import RunStats
from processors.worker.state import AssetState

log = logs.get(__name__)


class InputOffsets:
    """Last readings offset processed per partition; an offset jump is logged and counted."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.last: dict[int, int] = {}

    def note(self, partition: int, offset: int) -> None:
        prev = self.last.get(partition)
        if prev is not None and offset > prev + 1:
            # plantstream's producers are idempotent, not transactional: their offsets have no holes,
            # so a jump means frames this worker never saw
            self.stats.add("input_offset_gaps")
            log.error(
                "readings partition %d jumped from offset %d to %d: %d frames were skipped by the consumer; "
                "replay them with a fresh consumer group if their KPIs matter",
                partition,
                prev,
                offset,
                offset - prev - 1,
            )
        self.last[partition] = offset

    def forget(self) -> None:
        """A partition that comes back after a rebalance resumes elsewhere: not a gap."""
        self.last.clear()


class SilenceClock:
    def __init__(self, idle_after_us: int, last_seen: dict[str, float], offsets: InputOffsets) -> None:
        self.idle_after_us = idle_after_us
        self.last_seen = last_seen  # asset -> monotonic time of its last frame (the processor's)
        self.offsets = offsets
        self.read_to_end_since: dict[int, float] = {}  # partition -> monotonic time it has been read to the end
        self.now = time.monotonic()

    async def refresh(
        self,
        owned: Collection[Any],
        end_offsets: Callable[[Collection[Any]], Awaitable[Mapping[Any, int | None]]],
        position: Callable[[Any], Awaitable[int | None]],
        now: float | None = None,
    ) -> None:
        """Note since when each owned partition (`owned`: topic-partitions with `.partition`) is read to the end."""
        self.now = time.monotonic() if now is None else now
        try:
            ends = await asyncio.wait_for(end_offsets(owned), timeout=2.0) if owned else {}
        except Exception:  # broker unreachable or slow: nobody is known to be idle
            self.read_to_end_since.clear()
            return
        for tp in owned:
            end, done = ends.get(tp), self.offsets.last.get(tp.partition)
            if done is None and end is not None:
                pos = await position(tp)
                done = None if pos is None else pos - 1
            if end is not None and done is not None and done + 1 >= end:
                self.read_to_end_since.setdefault(tp.partition, self.now)
            else:
                self.read_to_end_since.pop(tp.partition, None)
        for p in set(self.read_to_end_since) - {tp.partition for tp in owned}:
            del self.read_to_end_since[p]

    def forget(self) -> None:
        self.read_to_end_since.clear()

    def idle_us(self, asset: str, state: AssetState) -> int | None:
        """How long the asset has been silent, once longer than idle_after_us and while it has
        something open to close; else None."""
        oee_state = state.oee
        # OEE windows and shifts can be open while no KPI window is (an 8 h shift)
        if not state.windows["open"] and not (oee_state and oee_state["buckets"]):
            return None
        since = self.read_to_end_since.get(state.partition)
        if since is None:
            return None
        seen = self.last_seen.setdefault(asset, self.now)  # restored state: the silence counts from this start
        idle = int((self.now - max(seen, since)) * 1e6)
        return idle if idle > self.idle_after_us else None
