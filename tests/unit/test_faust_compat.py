"""Each patch of processors/worker/faust_compat.py next to the unpatched behaviour, on mode's and Faust's real
objects: the fetch-loop fast path keeps mode's wait_first semantics (a callback's result, its exception, a
callback that has to wait finishing later, one abandoned when the flow is suspended); the rebalance fixes run on
mode's real flow-control queue and Faust's real (unstarted) consumer.

Only the broker's answer to "where are the committed offsets" is given by the test: the consumer is
not started, so `seek_to_committed` answers from a dict instead of a Kafka round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from mode import Service
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from processors.worker import faust_compat


class FetchLoop(Service):
    """Stands in for Faust's consumer: a real mode Service with the event Faust's loop waits on."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def tasks_created(loop: asyncio.AbstractEventLoop) -> list[int]:
    count = [0]
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        count[0] += 1
        return factory(loop, coro, **kwargs) if factory else asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    return count


async def test_a_callback_that_does_not_wait_runs_without_a_task() -> None:
    svc = FetchLoop()
    faust_compat.install_fastpath(svc)
    faust_compat.install_fastpath(svc)  # idempotent
    count = tasks_created(asyncio.get_running_loop())

    async def callback(x: int) -> int:
        return x * 2

    results = [await svc.wait_first(callback(i), svc.suspend_flow.wait()) for i in range(50)]
    assert [r.results for r in results] == [[2 * i] for i in range(50)]
    assert not any(r.stopped for r in results)
    assert count[0] == 0
    # mode's own wait_first makes four tasks per call: the fast path is what removed them
    plain = FetchLoop()
    await plain.wait_first(callback(1), plain.suspend_flow.wait())
    assert count[0] == 4


async def test_a_callback_that_waits_finishes_through_the_original_path() -> None:
    svc = FetchLoop()
    faust_compat.install_fastpath(svc)
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)  # full: the next put must wait for the agent

    async def callback(x: int) -> str:
        await queue.put(x)
        await asyncio.sleep(0)  # a second suspension, forwarded by the continuation too
        return f"put {x}"

    async def agent() -> list[int]:
        await asyncio.sleep(0.05)
        return [await queue.get(), await queue.get()]

    got, r = await asyncio.gather(agent(), svc.wait_first(callback(7), svc.suspend_flow.wait()))
    assert got == [0, 7]
    assert r.results == ["put 7"]


async def test_a_waiting_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    svc = FetchLoop()
    faust_compat.install_fastpath(svc)
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)
    cancelled = asyncio.Event()

    async def callback(x: int) -> None:
        try:
            await queue.put(x)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def rebalance() -> None:
        await asyncio.sleep(0.05)
        svc.suspend_flow.set()

    _, r = await asyncio.gather(rebalance(), svc.wait_first(callback(7), svc.suspend_flow.wait()))
    await asyncio.sleep(0)
    assert cancelled.is_set()
    assert queue.qsize() == 1 and queue.get_nowait() == 0  # the abandoned message was not delivered
    assert r.results == [True] and not r.stopped


async def test_a_suspended_flow_takes_the_original_path() -> None:
    svc = FetchLoop()
    faust_compat.install_fastpath(svc)
    svc.suspend_flow.set()
    count = tasks_created(asyncio.get_running_loop())

    async def callback() -> int:
        return 1

    await svc.wait_first(callback(), svc.suspend_flow.wait())
    assert count[0] == 4


async def test_the_callbacks_exception_propagates() -> None:
    svc = FetchLoop()
    faust_compat.install_fastpath(svc)

    async def at_once() -> None:
        raise ValueError("bad message")

    async def later() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("bad later")

    with pytest.raises(ValueError, match="bad message"):
        await svc.wait_first(at_once(), svc.suspend_flow.wait())
    with pytest.raises(KeyError, match="bad later"):
        await svc.wait_first(later(), svc.suspend_flow.wait())


READINGS = TP("plant.readings.v1", 0)


def _flow() -> tuple[FlowControlEvent, FlowControlQueue[int]]:
    flow = FlowControlEvent(initially_suspended=True)
    return flow, FlowControlQueue(flow_control=flow, clear_on_resume=True)


async def test_unguarded_resume_of_a_running_flow_drops_queued_events() -> None:
    # why the guard exists: if mode stops doing this, the guard may go (and this test tells)
    flow, queue = _flow()
    flow.resume()
    queue.put_nowait(1)
    flow.resume()
    assert queue.qsize() == 0


async def test_resume_of_a_running_flow_keeps_queued_events() -> None:
    flow, queue = _flow()
    faust_compat.guard_resume(flow)
    flow.resume()
    queue.put_nowait(1)
    queue.put_nowait(2)
    flow.resume()  # Faust's second resume after a rebalance
    assert flow.is_active()
    assert [queue.get_nowait(), queue.get_nowait()] == [1, 2]


async def test_resume_after_a_suspension_still_clears_and_releases_waiting_producers() -> None:
    flow, queue = _flow()
    faust_compat.guard_resume(flow)
    faust_compat.guard_resume(flow)  # idempotent: one guard, not two
    flow.resume()
    queue.put_nowait(1)  # the previous assignment's event
    flow.suspend()
    waiting = asyncio.create_task(flow.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    flow.resume()
    await asyncio.wait_for(waiting, 1)
    assert queue.qsize() == 0  # the consumer seeks back to the committed offsets: it comes again
    assert flow.is_active()


def _consumer(committed: Mapping[TP, int | None], during_seek: Callable[[], object] | None = None) -> Any:
    app = faust.App("rebalance-fixes-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    consumer: Any = app.consumer

    async def seek_to_committed() -> Mapping[TP, int | None]:
        await asyncio.sleep(0)  # the round trip to the broker, during which the fetch loop goes on
        if during_seek:
            during_seek()
        return committed

    consumer.seek_to_committed = seek_to_committed
    return consumer


def _deliver(consumer: Any, tp: TP, offsets: range) -> list[int]:
    """What Faust's fetch loop does per record: make the message, pass it on unless behind the read offset."""
    passed = []
    for offset in offsets:
        record = ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, b"x", None, 0, 1, ())
        consumer._to_message(tp, record)
        r = consumer._read_offset.get(tp)
        if r is None or offset >= r:
            consumer._read_offset[tp] = offset
            passed.append(offset)
    return passed


async def test_unfixed_seek_moves_the_read_offset_back_behind_delivered_records() -> None:
    consumer = _consumer({READINGS: 16}, lambda: _deliver(consumer, READINGS, range(16, 35)))
    consumer.resume_flow()
    await consumer.perform_seek()
    assert consumer._read_offset[READINGS] == 16  # 35 then looks like a gap over 17..34: Faust's _add_gap


async def test_seek_keeps_the_read_offset_of_records_delivered_from_the_committed_offset() -> None:
    other = TP("plant.readings.v1", 1)
    # the fetch loop delivers 16..34 from aiokafka's own start while the seek goes to the broker
    consumer = _consumer({READINGS: 16, other: 40}, lambda: _deliver(consumer, READINGS, range(16, 35)))
    faust_compat.keep_read_offsets(consumer)
    faust_compat.keep_read_offsets(consumer)
    consumer.resume_flow()
    consumer._read_offset[other] = 12  # behind the committed offset: the seek moves it forward
    await consumer.perform_seek()
    assert consumer._read_offset[READINGS] == 34
    assert consumer._read_offset[other] == 40
    assert consumer._committed_offset[READINGS] == 16  # commits still start from the committed offset
    assert _deliver(consumer, READINGS, range(16, 36)) == [34, 35]  # the repeats are dropped, 34 comes twice


async def test_a_read_offset_left_from_before_the_resume_is_sought_back() -> None:
    consumer = _consumer({READINGS: 32})
    faust_compat.keep_read_offsets(consumer)
    consumer._read_offset[READINGS] = 34  # set by the fetch loop just after the revocation, for a record
    consumer.resume_flow()  # the agent never got
    assert _deliver(consumer, READINGS, range(32, 36)) == [34, 35]  # 32 and 33 dropped against it
    await consumer.perform_seek()
    assert consumer._read_offset[READINGS] == 32  # so they come again


async def test_seek_while_suspended_applies_as_is() -> None:
    consumer = _consumer({READINGS: 16})
    faust_compat.keep_read_offsets(consumer)
    consumer.resume_flow()
    _deliver(consumer, READINGS, range(16, 35))
    consumer.stop_flow()  # a revocation: what was delivered before it is gone from the queues
    await consumer.perform_seek()
    assert consumer._read_offset[READINGS] == 16


def _acked_twice(consumer: Any) -> None:
    # committed 17; the agent acked 17..34; a gap was marked over 17..35 (the read offset moved back)
    consumer._committed_offset[READINGS] = 17
    consumer._acked[READINGS].extend(range(17, 35))
    consumer._acked_index[READINGS].update(range(17, 35))
    consumer._gap[READINGS].addi(17, 36)


async def test_unfixed_offsets_acked_twice_let_the_commit_creep() -> None:
    consumer = _consumer({})
    _acked_twice(consumer)
    assert consumer._new_offset(READINGS) == 18  # one offset per commit interval


async def test_offsets_acked_twice_are_committed_in_one_go() -> None:
    consumer = _consumer({})
    faust_compat.dedupe_acked(consumer)
    faust_compat.dedupe_acked(consumer)
    _acked_twice(consumer)
    assert consumer._new_offset(READINGS) == 35
    consumer._committed_offset[READINGS] = 35  # what Faust records once that commit went through
    consumer._acked[READINGS].append(35)  # the agent acks 35
    consumer._acked_index[READINGS].add(35)
    assert consumer._new_offset(READINGS) == 36


def test_the_installed_versions_are_the_tested_ones() -> None:
    faust_compat.check_versions()  # pyproject.toml pins exactly these


def test_other_versions_are_refused_with_the_versions_and_the_fix() -> None:
    installed: dict[str, str | None] = {**faust_compat.TESTED, "mode-streaming": "0.8.0", "aiokafka": None}
    with pytest.raises(faust_compat.UnsupportedVersions) as refused:
        faust_compat.check_versions(installed)
    text = str(refused.value)
    assert "mode-streaming 0.8.0" in text and "aiokafka missing" in text and "faust-streaming 0.15.3" not in text
    assert "pip install faust-streaming==0.15.3 mode-streaming==0.7.1 aiokafka==0.14.0" in text


async def test_the_checkpoint_runs_before_fausts_own_flush_and_stops_the_commit_when_it_fails() -> None:
    app = faust.App("commit-hook-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    calls: list[str] = []
    fail = False

    async def persist() -> None:
        calls.append("persist")
        if fail:
            raise RuntimeError("outputs not confirmed")

    async def faust_flush() -> None:
        calls.append("faust flush")

    app.producer.flush = faust_flush  # type: ignore[method-assign]
    faust_compat.before_offset_commit(app, persist)
    faust_compat.before_offset_commit(app, persist)  # idempotent
    await app.producer.flush()
    assert calls == ["persist", "faust flush"]
    fail = True
    with pytest.raises(RuntimeError, match="not confirmed"):
        await app.producer.flush()
    assert calls == ["persist", "faust flush", "persist"]
