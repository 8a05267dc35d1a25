"""Fixes to how Faust (faust-streaming 0.15) comes out of a rebalance, each traced to lost frames or
stuck commits.

How a worker comes back after a rebalance that needs no table restore: `Recovery._restart_recovery`
resumes the flow ("Resuming flow..."); then `on_recovery_completed` resumes the stream partitions,
seeks them to their committed offsets (`Consumer.perform_seek`) and resumes the flow a second time.
The fetch loop runs all along, so records of the stream partitions arrive before and during that
seek. Found with a trace of the fetch loop over repeated runs of `tests/faults/test_broker_stall.py`
(the worker evicted during a stalled link, then rejoining):

1. `guard_resume`: mode's `FlowControlEvent.resume()` always clears every queue with
   `clear_on_resume`, the agents' input channels among them. The second resume cleared events that
   had already passed the fetch loop's read-offset check, so they never came again: the agent missed
   those frames (KPI windows a sample short; 2 runs of 14), and as they were never acked, Faust's
   commits, which need a contiguous run of acked offsets, stopped for good when two or more were
   lost. Now `resume()` clears only when the flow really was suspended: what a suspension let into
   the queues is still cleared, and the seek after it brings it back.

2. `keep_read_offsets`: the seek sets the fetch loop's read offset back to the committed offset even
   when the loop has already delivered the records from there on (aiokafka had started from that
   same committed offset). The rest of the batch then looks like a gap, and Faust's `_add_gap` marks
   the delivered offsets as acked, before the agent may have processed them. Now the read offset is
   kept when the loop delivered, since the flow resumed, every record from the committed offset up
   to it; those records come again and the fetch loop drops them as delivered. A read offset it did
   not earn that way (one the loop set again just after a revocation, for a record the agent never
   got; seen once in 20 runs of a first version) is sought back as before.

3. `dedupe_acked`: where a gap is still marked, its offsets can be acked twice, once from the gap
   and once by the agent. Faust's `_new_offset` then finds the run of consecutive acked offsets
   stopped at the repeat, so the committed offset crept on by one per commit interval (6 runs of 20
   with only fix 1). Duplicates are now removed before Faust computes the offset to commit.
"""

from __future__ import annotations

from typing import Any


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


def install(app: Any) -> None:
    """All fixes on a Faust app; call before its first rebalance completes (its agents start before)."""
    guard_resume(app.flow_control)
    keep_read_offsets(app.consumer)
    dedupe_acked(app.consumer)
