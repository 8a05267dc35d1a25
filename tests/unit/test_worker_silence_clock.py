"""The worker's silence clock: one slow answer from the broker must not restart an asset's silence
(that kept packer1's last OEE windows open on a busy machine), an outage must."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from plantstream.core.runstats import RunStats
from processors.worker.state import AssetState
from processors.worker.timers import InputOffsets, SilenceClock

US = 1_000_000


class TP(NamedTuple):
    topic: str
    partition: int


OWNED = [TP("readings", 0)]


def state() -> AssetState:
    s = AssetState("a", 0)
    s.windows["open"] = {"w": 1}  # something open to close
    return s


class Broker:
    """Answers the end offsets, or fails to (a timeout, as asyncio.wait_for raises)."""

    def __init__(self, end: int) -> None:
        self.end = end
        self.up = True

    async def ends(self, owned: Collection[Any]) -> Mapping[Any, int | None]:
        if not self.up:
            raise TimeoutError
        return dict.fromkeys(owned, self.end)


async def no_position(tp: Any) -> int | None:
    return None


def clock(broker: Broker) -> SilenceClock:
    offsets = InputOffsets(RunStats("t"))
    offsets.note(0, broker.end - 1)  # read to the end
    return SilenceClock(5 * US, {"a": 0.0}, offsets, outage_after_s=5.0)


def tick(c: SilenceClock, broker: Broker, t: float) -> None:
    asyncio.run(c.refresh(OWNED, broker.ends, no_position, now=t))


def ticks(c: SilenceClock, broker: Broker, seconds: range) -> None:
    for t in seconds:
        tick(c, broker, float(t))


def test_silence_grows_while_the_partition_is_read_to_the_end() -> None:
    broker = Broker(10)
    c, s = clock(broker), state()
    ticks(c, broker, range(0, 7))
    assert c.idle_us("a", s) == 6 * US
    broker.end = 11  # a frame not yet read: not silent
    tick(c, broker, 7.0)
    assert c.idle_us("a", s) is None


def test_one_slow_answer_pauses_the_silence_but_does_not_restart_it() -> None:
    broker = Broker(10)
    c, s = clock(broker), state()
    ticks(c, broker, range(0, 5))
    broker.up = False
    tick(c, broker, 5.0)
    assert c.idle_us("a", s) is None  # not known this tick
    broker.up = True
    tick(c, broker, 7.0)
    assert c.idle_us("a", s) == 7 * US  # counted from the start, not from the late answer


def test_an_outage_restarts_the_silence_from_the_next_answer() -> None:
    broker = Broker(10)
    c, s = clock(broker), state()
    ticks(c, broker, range(0, 4))
    broker.up = False
    for t in range(4, 12):
        tick(c, broker, float(t))
        assert c.idle_us("a", s) is None
    broker.up = True
    tick(c, broker, 12.0)
    tick(c, broker, 18.0)
    # producers held their frames during the outage: silence counts from the broker's first answer
    assert c.idle_us("a", s) == 6 * US
