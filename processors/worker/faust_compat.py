"""Everything of the worker that touches private names of faust-streaming, mode-streaming or aiokafka.

No other module may use a private name of these libraries. Each correction here is a patch on an
instance (never on a class), idempotent, and has a unit test beside the unpatched behaviour
(tests/unit/test_faust_compat.py), so a new release that fixes or changes the internals shows up there.
`check_versions()` refuses to start on versions the patches were not tested with.

What is here, and why (docs/worker.md has the traces that found them):

- `install_fastpath`: a cheaper hand-off from Faust's fetch loop to its agents, same semantics.
- `guard_resume`, `keep_read_offsets`, `dedupe_acked`: how Faust comes out of a rebalance.
- `rewind_dropped_changelogs`: changelog records Faust's fetch loop drops are fetched again (a table
  recovery stalled for good without it).
- `before_offset_commit`: runs the Checkpoint right before Faust commits the input offsets.
- `changelog_key`: a table key encoded as Faust's recovery reads it.
- `create_topics_through_any_broker`: Faust's topic declaration asks only the first broker it knows
  for the controller; with that broker down, every worker start failed (NodeNotReadyError).
- `stop_request`: how a signal seen by another thread stops mode's worker.
- `recovery_remaining`: how far the table recovery is from done (for the watchdog).

Fast path. Faust's fetch loop (`Consumer._drain_messages`) passes every message to the conductor
through mode's `Service.wait_first(callback(message), suspend_flow.wait())`, so that a callback
blocked on a full agent queue is abandoned when a rebalance suspends the flow. `wait_first` creates
four tasks and an `asyncio.wait` per message, about a tenth of the worker's time per 20-sample frame
(`python -m processors.worker.faust_compat`). Nearly always the callback does not block at all: it
puts the event into the agent's queue and returns. The patched consumer gives the loop one turn, then
runs the callback directly up to its first suspension; if it finishes there no task is created, if it
suspends the rest goes to the original `wait_first`. A suspended flow, a stopping or a crashed
consumer always take the original path. The turn of the loop keeps the original pace of one message
per turn: without it the fetch loop ran far ahead of the agent and a restarted worker skipped frames
across its start-up rebalance.

Rebalance. After a rebalance that needs no table restore, Faust resumes the flow
(`Recovery._restart_recovery`), then `on_recovery_completed` resumes the stream partitions, seeks them
to their committed offsets (`Consumer.perform_seek`) and resumes the flow a second time, while the
fetch loop runs all along:

1. `guard_resume`: mode's `FlowControlEvent.resume()` always clears every queue with
   `clear_on_resume`, the agents' input channels among them. The second resume cleared events that
   had already passed the fetch loop's read-offset check, so they never came again (lost frames, and
   commits stopped for good, as they need a contiguous run of acked offsets). Now `resume()` clears
   only when the flow really was suspended.
2. `keep_read_offsets`: the seek sets the fetch loop's read offset back to the committed offset even
   when the loop has already delivered the records from there on; the rest of the batch then looks
   like a gap and Faust's `_add_gap` marks offsets acked before the agent processed them. Now the read
   offset is kept when the loop delivered, since the flow resumed, every record from the committed
   offset up to it; a read offset it did not earn that way is sought back as before.
3. `dedupe_acked`: where a gap is still marked, its offsets can be acked twice; Faust's `_new_offset`
   then stops its run of consecutive offsets at the repeat, so the committed offset crept on by one
   per commit interval. Duplicates are removed before Faust computes the offset to commit.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine, Generator
from importlib import metadata
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from faust.exceptions import NotReady
from faust.serializers import codecs
from mode.services import WaitResults

from plantstream.core import logs
from plantstream.core.errors import ProcessorError

log = logs.get(__name__)

# the versions every patch here was written for and tested with (tests/unit/test_faust_compat.py)
TESTED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


class UnsupportedVersions(ProcessorError, RuntimeError):
    """Installed Faust/mode/aiokafka versions differ from those the patches were tested with."""


def installed_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TESTED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def check_versions(installed: dict[str, str | None] | None = None) -> None:
    """Raise `UnsupportedVersions`, naming the versions and the fix, unless exactly the tested ones run."""
    installed = installed_versions() if installed is None else installed
    wrong = {name: v for name, v in installed.items() if v != TESTED[name]}
    if wrong:
        have = ", ".join(f"{name} {v or 'missing'}" for name, v in sorted(wrong.items()))
        want = ", ".join(f"{name}=={v}" for name, v in TESTED.items())
        raise UnsupportedVersions(
            f"the worker patches internals of Faust and was tested only with {want}; installed: {have}. "
            f"Fix: pip install {' '.join(f'{n}=={v}' for n, v in TESTED.items())} (the versions pyproject.toml "
            "pins), or run tests/unit/test_faust_compat.py against the new versions and update TESTED in "
            "processors/worker/faust_compat.py"
        )


def stop_request(worker: Any) -> Callable[[], None]:
    """A thread-safe way to ask mode's worker to stop, as its own SIGTERM handler does (the signal itself
    is taken by plantstream.core.shutdown, so that it is seen even while the main thread is blocked)."""

    def request() -> None:
        worker.loop.call_soon_threadsafe(worker._schedule_shutdown, signal.SIGTERM)

    return request


def recovery_remaining(app: Any) -> int | None:
    """Changelog records the table recovery still waits for, or None when no recovery runs."""
    if not app.in_recovery:
        return None
    return int(app.tables.recovery.active_remaining_total())


def changelog_key(key: str) -> bytes:
    """A table key as Faust writes it to a changelog topic (the tables' json key serializer)."""
    return codecs.dumps("json", key)


def before_offset_commit(app: Any, persist: Callable[[], Awaitable[None]]) -> None:
    """Run `persist` every time Faust is about to commit input offsets (idempotent).

    Faust's `Consumer._commit_offsets` calls `app.producer.flush()` right before it commits offsets
    it has already chosen; so do the revocation and the shutdown. `persist` runs first, then Faust's
    own flush; an exception from `persist` propagates and the offsets are not committed."""
    producer = app.producer
    if getattr(producer, "_plantstream_before_commit", False):
        return
    flush = producer.flush

    async def persisting_flush() -> None:
        await persist()
        await flush()

    producer.flush = persisting_flush
    producer._plantstream_before_commit = True


# -- fast path ----------------------------------------------------------------------------------


class _Rest:
    """Awaitable that continues a coroutine already run up to its first suspension.

    `yield from` cannot take over a started coroutine (it would resume it with None before the
    awaited future is done), so this forwards each step to the task driving it by hand."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # CancelledError included: the coroutine sees it where it waits
                try:
                    yielded = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def install_fastpath(consumer: Any) -> None:
    """Give this Faust consumer (any mode Service with `suspend_flow`) the direct hand-off (idempotent)."""
    if getattr(consumer, "_plantstream_fastpath", False):
        return
    original = consumer.wait_first
    suspended = consumer.suspend_flow.is_set
    stopped = consumer._stopped.is_set
    crashed = consumer._crashed.is_set

    async def wait_first(*coros: Any, timeout: float | None = None) -> WaitResults:
        if len(coros) != 2 or timeout is not None or not asyncio.iscoroutine(coros[0]):
            return await original(*coros, timeout=timeout)
        callback, other = coros
        # one turn of the loop per message, as wait_first gives: the fetch loop must not run ahead of the
        # agents (hundreds of fetched events queued when a rebalance comes lost frames in tests)
        await asyncio.sleep(0)
        if suspended() or stopped() or crashed():
            return await original(*coros)
        try:
            yielded = callback.send(None)
        except StopIteration as done:
            other.close()  # never awaited: it was only there to abandon a blocked callback
            return WaitResults([callback], [done.value], False)
        except BaseException:
            other.close()
            raise
        return await original(_Rest(callback, yielded), other)

    consumer.wait_first = wait_first
    consumer._plantstream_fastpath = True


async def _measure(n: int = 20000) -> dict[str, float]:
    """us per hand-off of a callback that does not block: mode's wait_first against the direct path."""
    import time

    from mode import Service

    class Probe(Service):
        suspend_flow: Any

    async def callback(i: int) -> int:
        return i

    out: dict[str, float] = {}
    for name in ("wait_first", "direct"):
        probe = Probe()
        probe.suspend_flow = asyncio.Event()
        if name == "direct":
            install_fastpath(probe)
        t0 = time.perf_counter()
        for i in range(n):
            await probe.wait_first(callback(i), probe.suspend_flow.wait())
        out[name] = round((time.perf_counter() - t0) / n * 1e6, 2)
    return out


# -- rebalance ----------------------------------------------------------------------------------


def guard_resume(flow_control: Any) -> None:
    """Make this `mode.utils.queues.FlowControlEvent` clear its queues only on a real resume (idempotent)."""
    if getattr(flow_control, "_plantstream_resume_guard", False):
        return
    original = flow_control.resume
    is_active = flow_control.is_active

    def resume() -> None:
        if is_active():
            return  # already flowing: what the queues hold passed the read-offset check of this assignment
        original()

    flow_control.resume = resume
    flow_control._plantstream_resume_guard = True


def keep_read_offsets(consumer: Any) -> None:
    """Make this Faust consumer's `perform_seek` keep a read offset the fetch loop earned (idempotent)."""
    if getattr(consumer, "_plantstream_keep_read_offsets", False):
        return
    read_offset = consumer._read_offset
    to_message = consumer._to_message
    resume_flow = consumer.resume_flow
    seek_to_committed = consumer.seek_to_committed
    perform_seek = consumer.perform_seek
    first: dict[Any, int] = {}  # tp -> the first offset the fetch loop delivered since the flow resumed
    keep: dict[Any, int] = {}

    def noting_resume_flow() -> None:
        if not consumer.flow_active:
            first.clear()
        resume_flow()

    def noting_to_message(tp: Any, record: Any) -> Any:
        # the fetch loop checks the same read offset right after this (nothing runs in between)
        if tp not in first:
            r = read_offset.get(tp)
            if r is None or record.offset >= r:
                first[tp] = record.offset
        return to_message(tp, record)

    async def noting_seek_to_committed() -> Any:
        committed = await seek_to_committed()
        # the fetch loop went on during the round trip: decide now, just before perform_seek overwrites
        # the read offsets (it does so without yielding to the loop in between)
        keep.clear()
        if consumer.flow_active:
            for tp, offset in committed.items():
                last = read_offset.get(tp)
                start = first.get(tp)
                if offset is not None and start is not None and last is not None and 0 <= start <= offset < last:
                    keep[tp] = last
        return committed

    async def keeping_perform_seek() -> None:
        keep.clear()
        await perform_seek()
        read_offset.update(keep)
        keep.clear()

    consumer.resume_flow = noting_resume_flow
    consumer._to_message = noting_to_message
    consumer.seek_to_committed = noting_seek_to_committed
    consumer.perform_seek = keeping_perform_seek
    consumer._plantstream_keep_read_offsets = True


def dedupe_acked(consumer: Any) -> None:
    """Make this Faust consumer drop repeated acked offsets before it computes a commit (idempotent)."""
    if getattr(consumer, "_plantstream_dedupe_acked", False):
        return
    new_offset = consumer._new_offset

    def deduped_new_offset(tp: Any) -> Any:
        acked = consumer._acked.get(tp)
        if acked:
            gap = consumer._gap.get(tp)
            unique = set(acked)
            if gap:  # rare: only after a gap was marked; offsets acked already must not come from it again
                for offset in unique:
                    gap.chop(offset, offset + 1)
            if len(unique) != len(acked):
                acked[:] = sorted(unique)
        return new_offset(tp)

    consumer._new_offset = deduped_new_offset
    consumer._plantstream_dedupe_acked = True


def rewind_dropped_changelogs(consumer: Any) -> None:
    """Make this Faust consumer fetch again the changelog records its fetch loop drops (idempotent).

    Faust's `getmany` drops what is left of a fetched batch when the flow is suspended (a rebalance)
    or the generation changed, and then seeks the *stream* partitions back to their committed offsets.
    Changelog partitions have none: aiokafka's position stays past the dropped records, and a table
    recovery waiting for them waits for good. After such a drop, each changelog partition of the batch
    is sought back to the earliest record that may not have been delivered (the last one handed out may
    have been abandoned with its callback), unless something sought it meanwhile (its position is no
    longer right after the batch: the recovery's own seek then decides). Reading a changelog record
    twice is harmless: recovery applies the values in order, the last one stays.

    The seek runs in the consumer's own thread and event loop (aiokafka is not thread-safe) and the
    fetch loop does not wait for it."""
    if getattr(consumer, "_plantstream_rewind_dropped", False):
        return
    app = consumer.app
    wait_next_records = consumer._wait_next_records
    getmany = consumer.getmany
    batches: list[Any] = []  # the batch of the getmany in progress (one at a time: one fetch loop)

    async def stashing_wait_next_records(timeout: float) -> Any:
        records, active = await wait_next_records(timeout)
        batches.append(records)
        return records, active

    async def rewinding_getmany(timeout: float) -> Any:
        generation = app.consumer_generation_id
        handed: dict[Any, int] = {}  # tp -> offset of the last record handed to the fetch loop
        batches.clear()
        try:
            async for tp, message in getmany(timeout):
                handed[tp] = message.offset
                yield tp, message
        finally:
            records = batches.pop() if batches else None
            if records and (not consumer.flow_active or app.consumer_generation_id != generation):
                changelogs = app.tables.changelog_topics
                rewind = {}
                for tp, batch in records.items():
                    if batch and tp.topic in changelogs:
                        last = handed.get(tp)
                        rewind[tp] = (batch[0].offset if last is None else last, batch[-1].offset + 1)
                if rewind:
                    _seek_in_consumer_thread(consumer, rewind)

    consumer._wait_next_records = stashing_wait_next_records
    consumer.getmany = rewinding_getmany
    consumer._plantstream_rewind_dropped = True


def _seek_in_consumer_thread(consumer: Any, rewind: dict[Any, tuple[int, int]]) -> None:
    """For each tp: seek to `to` if its position is still `expected` (on the consumer thread's loop)."""
    thread = consumer._thread

    def seek() -> None:
        aio = thread._consumer
        if aio is None:
            return
        subscriptions = aio._subscription
        for tp, (to, expected) in rewind.items():
            if not subscriptions.is_assigned(tp):
                continue  # its next owner recovers it from its own start
            state = subscriptions.subscription.assignment.state_value(tp)
            if state is not None and state.has_valid_position and state.position == expected:
                aio.seek(tp, to)
                log.warning(
                    "changelog %s[%d]: Faust dropped fetched records %d-%d during a rebalance; fetching them again",
                    tp.topic,
                    tp.partition,
                    to,
                    expected - 1,
                )

    thread.thread_loop.call_soon_threadsafe(seek)


def create_topics_through_any_broker(app: Any) -> None:
    """Declare topics through any broker that answers, not only the first one of the metadata.

    faust-streaming's `Transport._get_controller_node` sends a MetadataRequest to the first broker the
    client knows and gives up when that one is down, so a worker (re)started while one broker of a cluster
    is down but not yet fenced exits with NodeNotReadyError (docs/deployment.md). Each broker is asked in
    turn; the controller it names is used when it can be reached, else the broker that answered: in KRaft
    every broker takes CreateTopics and forwards it to the controller.
    """
    for transport in (app.transport, app.producer_transport):
        if getattr(transport, "_plantstream_any_broker", False):
            continue

        async def any_reachable(owner: Any, client: Any, timeout: int = 30000) -> int | None:
            errors: list[str] = []
            for node_id in sorted(b.nodeId for b in client.cluster.brokers()):
                try:
                    waited = await owner.wait(client.send(node_id, MetadataRequest([])), timeout=timeout)
                except (KafkaError, OSError) as e:
                    errors.append(f"node {node_id}: {e!r}")
                    continue
                if waited.stopped:
                    return None
                controller: int = waited.result.controller_id
                if controller == node_id or await client.ready(controller):
                    return controller
                return node_id
            raise NotReady(f"no broker answered a metadata request ({'; '.join(errors) or 'none known'})")

        transport._get_controller_node = any_reachable
        transport._plantstream_any_broker = True


def install(app: Any, persist: Callable[[], Awaitable[None]] | None = None) -> None:
    """Every patch on a Faust app; call before its first rebalance completes (its agents start before)."""
    install_fastpath(app.consumer)
    guard_resume(app.flow_control)
    keep_read_offsets(app.consumer)
    dedupe_acked(app.consumer)
    rewind_dropped_changelogs(app.consumer)
    if persist is not None:
        before_offset_commit(app, persist)


if __name__ == "__main__":
    print(asyncio.run(_measure()))
