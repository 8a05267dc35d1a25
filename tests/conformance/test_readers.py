"""Conformance checks run on every DeviceReader (tests/conformance/readers.py), over its real server.

What any reader must do, whatever its protocol: frames that fit the ReadingFrame contract with a
gap-free sequence per device; health that tells the truth; one RAISED device-down alert per outage, the
device's tags BAD while it lasts, one CLEARED with the same id when the device answers again; no
exception for an unreachable device; a prompt return after stop; an idempotent close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import schemas
from plantstream.core.config import Settings
from plantstream.core.records import Alert, ReadingFrame
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from producers.readers.base import DeviceReader, run_readers
from tests.conformance.readers import CASES, ReaderCase

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(90)]

CODEC = Codec(schemas.READING_FRAME, 1)
DECODER = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)


@dataclass
class Running:
    readers: Sequence[DeviceReader]
    stats: RunStats
    task: asyncio.Task[None]
    stop: asyncio.Event
    frames: list[ReadingFrame] = field(default_factory=list)
    events: list[Alert] = field(default_factory=list)

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.task.done():
                self.task.result()  # a reader that raised fails the test with its error
                raise AssertionError(f"the readers stopped before {what}")
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def good(self, since: int = 0) -> list[ReadingFrame]:
        return [f for f in self.frames[since:] if f["samples"] and all(s["quality"] == "GOOD" for s in f["samples"])]


@contextlib.asynccontextmanager
async def running(case: ReaderCase, settings: Settings) -> AsyncIterator[Running]:
    stats = RunStats("conformance")
    frames: list[ReadingFrame] = []
    events: list[Alert] = []
    readers = case.readers(settings, frames.append, events.append, stats)
    stop = asyncio.Event()
    task = asyncio.create_task(run_readers(readers, stop, None))
    run = Running(readers, stats, task, stop, frames, events)
    try:
        yield run
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> ReaderCase:
    return request.param  # type: ignore[no-any-return]


async def test_frames_fit_the_contract_and_health_tells_the_truth(case: ReaderCase, tmp_path: Path) -> None:
    settings = case.settings(tmp_path)
    configured = {d.name: (d.asset, {t.name for t in d.tags}) for d in settings.devices}
    async with case.server(settings), running(case, settings) as run:
        await run.until(lambda: len(run.good()) >= 5, 20, "5 frames of GOOD samples")
        health = [r.health() for r in run.readers]
        frames = list(run.frames)
    assert all(h.up and not h.devices_down and not h.last_error for h in health), health
    assert sum(h.frames for h in health) >= len(frames)
    assert run.stats.get("frames_produced") >= len(frames)
    assert {h.last_frame_us for h in health} <= {f["scan_time"] for f in run.frames}
    by_device: dict[str, list[ReadingFrame]] = {}
    for f in frames:
        assert DECODER.decode(CODEC.encode(f)) == f, "the frame does not survive the Avro contract unchanged"
        asset, tags = configured[f["device"]]
        assert f["asset"] == asset and not f["historical"] and not f["buffered"]
        assert f["samples"] and {s["tag"] for s in f["samples"]} <= tags
        by_device.setdefault(f["device"], []).append(f)
    for device, seq in ((d, [f["seq"] for f in fs]) for d, fs in by_device.items()):
        assert seq == list(range(seq[0], seq[0] + len(seq))), f"{device}: sequence with a gap or repeat: {seq}"
    assert len({f["producer_id"] for f in frames}) == 1
    assert not run.events, "device-down alerts while the device answered"


async def test_an_outage_is_raised_once_marked_bad_and_cleared(case: ReaderCase, tmp_path: Path) -> None:
    settings = case.settings(tmp_path)
    device = settings.devices[0].name
    tags = {t.name for t in settings.devices[0].tags}
    server = case.server(settings)
    await server.__aenter__()
    try:
        async with running(case, settings) as run:
            await run.until(lambda: len(run.good()) >= 2, 20, "GOOD frames")
            cut = len(run.frames)
            await server.__aexit__(None, None, None)
            server = None
            await run.until(lambda: any(e["state"] == "RAISED" for e in run.events), 20, "the RAISED alert")
            await run.until(
                lambda: any(
                    {s["tag"] for s in f["samples"] if s["quality"] == "BAD"} == tags for f in run.frames[cut:]
                ),
                20,
                "a frame with every tag of the device BAD",
            )
            await asyncio.sleep(1.5)  # retries while it stays down must not raise again
            down = [r.health() for r in run.readers]
            server = case.server(settings)
            await server.__aenter__()
            back = len(run.frames)
            await run.until(lambda: any(e["state"] == "CLEARED" for e in run.events), 30, "the CLEARED alert")
            await run.until(lambda: len(run.good(back)) >= 2, 20, "GOOD frames after the restart")
            up = [r.health() for r in run.readers]
    finally:
        if server is not None:
            await server.__aexit__(None, None, None)
    assert [e["state"] for e in run.events] == ["RAISED", "CLEARED"], run.events
    raised, cleared = run.events
    assert raised["alert_id"] == cleared["alert_id"] and raised["asset"] == settings.devices[0].asset
    assert raised["rule"] == f"device-down:{device}" and raised["kind"] == "device_down"
    assert cleared["time"] >= raised["time"]
    assert any(not h.up and h.devices_down == (device,) and h.last_error for h in down), down
    assert all(h.up and not h.devices_down for h in up), up
    assert run.stats.get("samples_bad") >= len(tags)


async def test_an_unreachable_device_raises_nothing_and_stop_is_prompt(case: ReaderCase, tmp_path: Path) -> None:
    settings = case.settings(tmp_path)  # no server on its port
    async with running(case, settings) as run:
        await run.until(lambda: any(e["state"] == "RAISED" for e in run.events), 20, "the RAISED alert")
        health = [r.health() for r in run.readers]
        run.stop.set()
        t0 = time.monotonic()
        await asyncio.wait_for(run.task, 10)
        stopped_in = time.monotonic() - t0
    assert not any(h.up for h in health) and all(h.last_error for h in health), health
    assert stopped_in < 5
    for r in run.readers:
        r.close()  # run_readers closed it already: a second close is harmless
        r.close()


async def test_stop_returns_promptly_while_reading(case: ReaderCase, tmp_path: Path) -> None:
    settings = case.settings(tmp_path)
    async with case.server(settings), running(case, settings) as run:
        await run.until(lambda: len(run.good()) >= 2, 20, "GOOD frames")
        run.stop.set()
        t0 = time.monotonic()
        await asyncio.wait_for(run.task, 10)
        assert time.monotonic() - t0 < 5
        n = len(run.frames)
        await asyncio.sleep(0.5)
        assert len(run.frames) == n, "frames after the readers were stopped"
