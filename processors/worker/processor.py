"""The per-frame path: readings message -> decoded frame -> the asset's state -> stages -> outputs.

Contract:
- `process(topic, partition, offset, key, value)` handles one readings message synchronously (no
  I/O: outputs go to an `Outputs`, changed state is noted in the `AssetStates` for the Checkpoint).
  A message that does not decode or breaks the contract (empty asset, key not the asset path) is
  dead-lettered with stage `processor`. A frame at or below its asset's applied offset is skipped
  (a redelivery after a restart: its outputs went out before). `process_many(messages)` does the same
  for many messages, giving each asset's frames to the stages together (in offset order).
- Each stage gets the asset's state and frames in the order of the stage list; a stage that raises
  dead-letters the frames it was given (stage `processor.<name>` in the headers) and the others go
  on (processors/worker/stage.py has the whole Stage contract). Failures are counted per stage
  (`stage_errors`, `stage_errors.<name>`) and logged once per cause (stage, error class, place).
- `advance(owned, idle_of, now_us)` gives every asset of an owned partition its silence tick;
  it returns True when some state changed (the caller then persists: no commit comes while the
  input is silent).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

from plantstream.core import logs
from plantstream.core.frame_codec import FrameColumns
from plantstream.core.runstats import RunStats
from plantstream.core.serde import DecodeError
from processors.worker.outputs import Outputs, dead_letter_headers
from processors.worker.stage import AnyFrame, AsRecords, Emit, Kind, Silence, Stage, StageFailure, Step
from processors.worker.state import AssetState, AssetStates

log = logs.get(__name__)

_COUNTER = {
    Kind.KPI: "kpi_windows",
    Kind.OEE: "oee_windows",
    Kind.ANOMALY: "anomaly_scores",
    Kind.STATE: "asset_states",
    Kind.ALARM_STATE: "alarm_states",
    Kind.ALARM_EVENT: "alarm_events",
}


def asset_of(frame: AnyFrame) -> str:
    return frame.asset if isinstance(frame, FrameColumns) else str(frame.get("asset") or "")


def contract_problem(frame: AnyFrame, key: bytes | None) -> str | None:
    """Why a decoded frame breaks the contract, or None when it is usable."""
    asset = asset_of(frame)
    if not asset:
        return "frame has an empty asset path"
    if key is not None and key.decode("utf-8", "replace") != asset:
        return f"message key {key!r} differs from the frame's asset {asset!r}; key must be the asset path"
    return None


class Message(NamedTuple):
    """A readings message as the agent got it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FrameProcessor:
    def __init__(
        self,
        decode: Callable[[bytes | None], AnyFrame],
        stages: Sequence[Stage],
        states: AssetStates,
        outputs: Outputs,
        stats: RunStats,
        grace_us: int,
    ) -> None:
        self.decode = decode
        self.stages = list(stages)
        self.states = states
        self.outputs = outputs
        self.stats = stats
        self.grace_us = grace_us
        self.last_seen: dict[str, float] = {}  # asset -> monotonic time of its last frame (since this start)
        self._logged_causes: set[tuple[str, str, str]] = set()

    # -- frames ----------------------------------------------------------------------------------

    def process(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """One readings message (the agent's path today): `process_many` of one, without the grouping."""
        m = Message(topic, partition, offset, key, value)
        try:
            frame = self.decode(value)
        except DecodeError as e:
            self._reject(m, str(e), type(e).__name__)
            return
        problem = contract_problem(frame, key)
        if problem:
            self._reject(m, problem, "ContractError")
            return
        self._process_asset(asset_of(frame), [frame], [m])

    def process_many(self, messages: Sequence[Message]) -> None:
        """Readings messages in offset order per partition: each asset's frames go to the stages together."""
        by_asset: dict[str, tuple[list[AnyFrame], list[Message]]] = {}
        for m in messages:
            try:
                frame = self.decode(m.value)
            except DecodeError as e:
                self._reject(m, str(e), type(e).__name__)
                continue
            problem = contract_problem(frame, m.key)
            if problem:
                self._reject(m, problem, "ContractError")
                continue
            asset = asset_of(frame)
            group = by_asset.get(asset)
            if group is None:
                by_asset[asset] = ([frame], [m])
            else:
                group[0].append(frame)
                group[1].append(m)
        for asset, (frames, sources) in by_asset.items():
            self._process_asset(asset, frames, sources)

    def _process_asset(self, asset: str, frames: list[AnyFrame], sources: list[Message]) -> None:
        stats = self.stats
        partition = sources[-1].partition
        state = self.states.get(asset)
        if state is None:
            state = self.states.create(asset, partition)
        if sources[0].offset <= state.offset:  # a redelivery after a restart: its outputs went out before
            fresh = [i for i, m in enumerate(sources) if m.offset > state.offset]
            stats.add("frames_skipped_redelivered", len(sources) - len(fresh))
            if not fresh:
                return
            frames, sources = [frames[i] for i in fresh], [sources[i] for i in fresh]
        emitted = self._apply(state, frames, sources)
        state.offset = sources[-1].offset
        state.partition = partition  # lets a timer write this state back to its partition
        self.last_seen[asset] = time.monotonic()
        self.states.changed(asset, partition, state)
        self._send(asset.encode(), emitted)
        now_ms = time.time() * 1000
        last = frames[-1]
        if not (last.historical if isinstance(last, FrameColumns) else last.get("historical")):
            # how long after the earliest possible moment (window end + grace) each window went out
            grace_ms = self.grace_us / 1000
            for kind, record in emitted:
                if kind is Kind.KPI:
                    stats.observe("window_close_latency_ms", now_ms - record["window_end"] / 1000 - grace_ms)
        samples = 0
        for frame in frames:
            if isinstance(frame, FrameColumns):
                scan, n = frame.scan_time, len(frame)
            else:
                scan, n = frame["scan_time"], len(frame["samples"])
            stats.observe("frame_latency_ms", now_ms - scan / 1000)
            samples += n
        stats.add("samples_in", samples)
        stats.add("frames_in", len(frames))

    def _apply(self, state: AssetState, frames: list[AnyFrame], sources: list[Message]) -> list[Emit]:
        step = Step(time.time_ns() // 1000, [])
        emitted = step.emitted
        records = AsRecords(frames)  # dicts for the stages that want them, made when first read
        for stage in self.stages:
            given: Sequence[Any] = frames if getattr(stage, "takes_columns", False) else records
            first = 0  # index into frames of the first frame not yet given to this stage
            while first < len(frames):
                todo = given if first == 0 else given[first:]
                try:
                    emitted += stage.apply(state, todo, step)
                    break
                except StageFailure as f:
                    emitted += f.records
                    self._stage_failed(stage, f.cause, sources[first + f.index])
                    first += f.index + 1
                except Exception as e:
                    for m in sources[first:]:
                        self._stage_failed(stage, e, m)
                    break
        return emitted

    def _send(self, key: bytes, emitted: list[Emit]) -> None:
        emit, stats = self.outputs.emit, self.stats
        for kind, record in emitted:
            # an alarm's state is keyed by the alarm (compaction keeps one per alarm), the rest by the asset
            emit(record["alarm"].encode() if kind is Kind.ALARM_STATE else key, kind, record)
            counter = _COUNTER.get(kind)
            if counter is not None:
                stats.add(counter)
                if (kind is Kind.KPI or kind is Kind.OEE) and record["revision"]:
                    stats.add(f"{counter}_corrected")  # a correction after late data
            elif kind is Kind.ALERT:
                stats.add("alerts_raised" if record["state"] == "RAISED" else "alerts_cleared")
            elif kind is Kind.LATE:
                # beyond grace: no window takes them; they stay visible (and stored, from the readings topic)
                stats.add("samples_late", len(record["samples"]))

    def _stage_failed(self, stage: Stage, exc: BaseException, m: Message) -> None:
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        cause = (stage.name, type(exc).__name__, f"{where.filename}:{where.lineno}" if where else "")
        self.stats.add("stage_errors")
        self.stats.add(f"stage_errors.{stage.name}")
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            log.error(
                "stage %s failed on %s[%d]@%d (%s: %s); the frame goes to the dead-letter topic, the other stages "
                "go on; further failures of this kind are only counted (processor stage_errors.%s)",
                stage.name,
                m.topic,
                m.partition,
                m.offset,
                type(exc).__name__,
                exc,
                stage.name,
                exc_info=exc,
            )
        headers = dead_letter_headers(
            f"{type(exc).__name__}: {exc}",
            type(exc).__name__,
            m.topic,
            m.partition,
            m.offset,
            f"processor.{stage.name}",
        )
        self.outputs.dead_letter(m.key, m.value, headers)
        self.stats.add("dead_letters")

    def _reject(self, m: Message, error: str, exc_class: str) -> None:
        self.stats.add("dead_letters")
        log.warning("dead letter from %s[%d]@%d: %s", m.topic, m.partition, m.offset, error)
        headers = dead_letter_headers(error, exc_class, m.topic, m.partition, m.offset, "processor")
        self.outputs.dead_letter(m.key, m.value, headers)

    # -- silence ---------------------------------------------------------------------------------

    def advance(self, owned: Collection[int], idle_of: Callable[[str, AssetState], int | None], now_us: int) -> bool:
        """The silence tick for every asset of an owned readings partition (see the module doc)."""
        changed = False
        for asset, state in self.states.items():
            # the table also holds standby copies of other workers' assets: those are theirs to judge
            if state.partition not in owned:
                continue
            emitted: list[Emit] = []
            silence = Silence(now_us, idle_of(asset, state), emitted)
            for stage in self.stages:
                try:
                    emitted += stage.advance(state, silence)
                except Exception as e:  # one asset's failing tick must not stop the others'
                    self.stats.add("stage_errors")
                    self.stats.add(f"stage_errors.{stage.name}")
                    cause = (stage.name, type(e).__name__, "advance")
                    if cause not in self._logged_causes:
                        self._logged_causes.add(cause)
                        log.error("stage %s failed advancing %s: %s: %s", stage.name, asset, type(e).__name__, e)
            if emitted:
                self._send(asset.encode(), emitted)
                if silence.idle_us is not None:
                    for kind in (Kind.KPI, Kind.OEE):
                        n = sum(1 for e in emitted if e.kind is kind)
                        if n:
                            self.stats.add(f"{_COUNTER[kind]}_idle_closed", n)
                self.states.changed(asset, state.partition, state)
                changed = True
        return changed

    def revoked(self, assets: Collection[str]) -> None:
        for stage in self.stages:
            stage.revoked(assets)
