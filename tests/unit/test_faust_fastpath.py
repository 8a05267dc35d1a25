"""The direct hand-off of processors/faust_fastpath.py keeps mode's wait_first semantics: a callback's
result, its exception, a callback that has to wait (a full agent queue) finishing later, and one
abandoned when the flow is suspended for a rebalance, as Faust's fetch loop relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mode import Service

from processors import faust_fastpath


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
    faust_fastpath.install(svc)
    faust_fastpath.install(svc)  # idempotent
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
    faust_fastpath.install(svc)
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
    faust_fastpath.install(svc)
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
    faust_fastpath.install(svc)
    svc.suspend_flow.set()
    count = tasks_created(asyncio.get_running_loop())

    async def callback() -> int:
        return 1

    await svc.wait_first(callback(), svc.suspend_flow.wait())
    assert count[0] == 4


async def test_the_callbacks_exception_propagates() -> None:
    svc = FetchLoop()
    faust_fastpath.install(svc)

    async def at_once() -> None:
        raise ValueError("bad message")

    async def later() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("bad later")

    with pytest.raises(ValueError, match="bad message"):
        await svc.wait_first(at_once(), svc.suspend_flow.wait())
    with pytest.raises(KeyError, match="bad later"):
        await svc.wait_first(later(), svc.suspend_flow.wait())
