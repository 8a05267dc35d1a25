"""Timers of the worker: when an asset counts as silent, and the once-a-second silence tick.

Contract: `SilenceClock` says how long an asset has been silent - only while its readings partition
is known, by the broker's word, to be read to the end, so neither a backlog nor a broker outage looks
like silent machines - and returns it once past `idle_after_us` (else None). `refresh` asks the
broker for the end offsets of the owned partitions each tick; when it cannot answer, nobody is idle
for that tick, and once it has not answered for `outage_after_s` the silence counts anew from its next
answer (frames held by producers during an outage arrive after it). `EndOffsets` asks the broker with
a client of its own.
`InputOffsets` remembers the last readings offset processed per partition and reports a jump (an
offset hole means frames the consumer never delivered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

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


class EndOffsets:
    """End offsets of topic-partitions (anything with `.topic` and `.partition`), asked of the broker.

    Not through Faust's consumer: it answers from its fetch thread after the fetch wait, 0.5 s when
    idle and over 2 s on a busy machine, and every late answer made the silence clock start again (an
    asset's last OEE windows then stayed open: docs/worker.md)."""

    def __init__(self, admin: AdminClient, timeout_s: float = 2.0) -> None:
        self.admin = admin
        self.timeout_s = timeout_s

    async def __call__(self, owned: Collection[Any]) -> dict[Any, int]:
        if not owned:
            return {}
        keys = {tp: TopicPartition(tp.topic, tp.partition) for tp in owned}
        futures = self.admin.list_offsets(
            {k: OffsetSpec.latest() for k in keys.values()}, request_timeout=self.timeout_s
        )
        return {tp: (await asyncio.wrap_future(futures[k])).offset for tp, k in keys.items()}


class SilenceClock:
    def __init__(
        self, idle_after_us: int, last_seen: dict[str, float], offsets: InputOffsets, outage_after_s: float = 5.0
    ) -> None:
        self.idle_after_us = idle_after_us
        self.last_seen = last_seen  # asset -> monotonic time of its last frame (the processor's)
        self.offsets = offsets
        self.outage_after_s = outage_after_s
        self.read_to_end_since: dict[int, float] = {}  # partition -> monotonic time it has been read to the end
        self.now = time.monotonic()
        self.answered = False  # the last refresh got the broker's answer
        self.answered_at: float | None = None

    async def refresh(
        self,
        owned: Collection[Any],
        end_offsets: Callable[[Collection[Any]], Awaitable[Mapping[Any, int | None]]],
        position: Callable[[Any], Awaitable[int | None]],
        now: float | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        """Note since when each owned partition (`owned`: topic-partitions with `.partition`) is read to the end."""
        self.now = time.monotonic() if now is None else now
        try:
            ends = await asyncio.wait_for(end_offsets(owned), timeout=timeout_s) if owned else {}
            for tp in owned:
                end, done = ends.get(tp), self.offsets.last.get(tp.partition)
                if done is None and end is not None:
                    pos = await asyncio.wait_for(position(tp), timeout=timeout_s)
                    done = None if pos is None else pos - 1
                if end is not None and done is not None and done + 1 >= end:
                    self.read_to_end_since.setdefault(tp.partition, self.now)
                else:
                    self.read_to_end_since.pop(tp.partition, None)
        except Exception as e:  # broker unreachable or slow: nobody is known to be idle this tick
            log.debug("end offsets not known this tick: %s: %s", type(e).__name__, e)
            self.answered = False
            if self.answered_at is None or self.now - self.answered_at > self.outage_after_s:
                self.read_to_end_since.clear()  # an outage, not one slow answer: what was known is stale
            return
        self.answered, self.answered_at = True, self.now
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
        if since is None or not self.answered:
            return None
        seen = self.last_seen.setdefault(asset, self.now)  # restored state: the silence counts from this start
        idle = int((self.now - max(seen, since)) * 1e6)
        return idle if idle > self.idle_after_us else None
