"""The Stage interface: how the worker hands an asset's frames to each piece of math.

Contract (what the runner, processors/worker/processor.py, guarantees and expects):
- `apply(state, frames, step)` gets one asset's `AssetState` and that asset's new frames in offset
  order (a batch-friendly signature so a stage can work on many at once). Frames are ReadingFrame
  dicts, unless the stage sets `takes_columns = True`: it then gets each frame as the decoder gave it,
  FrameColumns (plantstream/core/frame_codec.py) where the layout allowed, else a dict. It changes the
  state in place and returns its output records as `Emit(kind, record)`, in the order they are to be
  sent. Frames already applied (offset at or below `state.offset`) never reach a stage.
- `step.now_us` is the wall clock of this step (µs); `step.emitted` holds what the stages before this
  one emitted for the same frames (a stage reading another's output, e.g. alert rules on anomaly
  scores, must come after it in the worker's stage list).
- An exception from `apply` does not stop the worker: the frames it was given are dead-lettered with
  the stage's name and the error in the headers, counted, and logged once per cause; the other
  stages still get the frames and the state changes made before the raise stand (so a stage must
  leave its state usable when it raises). A stage working on many frames can name the one that
  failed by raising `StageFailure(index, records, cause)`: only that frame is dead-lettered, the
  records of the frames before it are sent, and the frames after it are given to the stage again.
- `advance(state, silence)` is called about once a second for every asset whose partition this
  worker owns, with the wall clock and, when the asset has been silent for longer than
  `pipeline.windows.idle_after_s` while its partition was read to the end, the length of the
  silence: a stage may close what the silence closes, and returns records like `apply`.
  `silence.emitted` holds what the earlier stages' `advance` emitted in this tick.
- `revoked(assets)` tells the stage these assets are owned elsewhere now: anything it keeps about
  them outside `AssetState` must be dropped (it is restored from the tables when they come back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from plantstream.core.errors import ProcessorError
from plantstream.core.frame_codec import FrameColumns
from plantstream.core.records import QUALITIES
from processors.worker.state import AssetState

Frame = dict[str, Any]  # a decoded ReadingFrame (schemas/reading_frame.avsc)
AnyFrame = Frame | FrameColumns  # what the decoder gives: columns where the frame's layout allows


class Kind(StrEnum):
    """What an output record is; the output layer maps it to a topic and a schema."""

    KPI = "kpi"  # KpiWindow -> plant.kpi.v1
    OEE = "oee"  # OeeWindow -> plant.oee.v1
    ANOMALY = "anomaly"  # AnomalyScore -> plant.anomalies.v1
    ALERT = "alert"  # Alert -> plant.alerts.v1
    LATE = "late"  # ReadingFrame of samples too late for any window -> plant.readings.late.v1
    STATE = "state"  # AssetState -> plant.state.v1 (compacted)
    ALARM_STATE = "alarm_state"  # AlarmState -> plant.alarm-state.v1 (compacted; key: the alarm id)
    ALARM_EVENT = "alarm_event"  # AlarmEvent -> plant.alarm-events.v1


class Emit(NamedTuple):
    kind: Kind
    record: Mapping[str, Any]  # a record of plantstream.core.records (KpiWindow, Alert, ...), keyed by its asset


@dataclass(slots=True)
class Step:
    now_us: int  # wall clock of this step, µs since the epoch
    emitted: list[Emit]  # records the earlier stages emitted for these frames, in order


@dataclass(frozen=True, slots=True)
class Silence:
    now_us: int  # wall clock, µs since the epoch
    idle_us: int | None  # how long the asset has been silent, once past idle_after_s (else None)
    emitted: list[Emit] = field(default_factory=list)  # what the earlier stages' advance emitted this tick


class StageFailure(ProcessorError):
    """Raised by a stage given several frames, to name the one that failed (see the module doc)."""

    def __init__(self, index: int, records: list[Emit], cause: BaseException) -> None:
        super().__init__(f"frame {index} of the batch: {type(cause).__name__}: {cause}")
        self.index = index
        self.records = records
        self.cause = cause


class Stage(Protocol):
    name: str  # short, stable: it names the stage in dead-letter headers and counters

    def apply(self, state: AssetState, frames: Sequence[Frame], step: Step) -> list[Emit]: ...

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]: ...

    def revoked(self, assets: Iterable[str]) -> None: ...


def record(frame: AnyFrame) -> Frame:
    """A frame as a ReadingFrame dict (columns are turned into one once, shared, read only)."""
    return dict(frame.to_frame()) if isinstance(frame, FrameColumns) else frame


_SUBSETS: dict[tuple[tuple[str, ...], frozenset[str]], list[int]] = {}


def subset(frame: AnyFrame, tags: frozenset[str]) -> Frame:
    """The frame with only the samples of `tags` (in frame order), as a dict, for a stage that reads no
    other sample: from columns without a dict per sample."""
    if not isinstance(frame, FrameColumns):
        return frame
    key = (frame.tags, tags)
    idx = _SUBSETS.get(key)
    if idx is None:
        if len(_SUBSETS) > 10_000:
            _SUBSETS.clear()
        idx = _SUBSETS[key] = [i for i, t in enumerate(frame.tags) if t in tags]
    times, quality = frame.times, frame.quality
    values: Any = frame.values if frame.kinds is None else frame.python_values()
    samples = [
        {
            "tag": frame.tags[i],
            "source_time": int(times[i]),
            "value": float(values[i]) if frame.kinds is None else values[i],
            "quality": QUALITIES[quality[i]],
            "unit": frame.units[i],
        }
        for i in idx
    ]
    return {
        "asset": frame.asset,
        "device": frame.device,
        "seq": frame.seq,
        "producer_id": frame.producer_id,
        "scan_time": frame.scan_time,
        "historical": frame.historical,
        "buffered": frame.buffered,
        "samples": samples,
    }


class AsRecords(Sequence[Frame]):
    """Frames as dicts, each turned into one only when a stage reads it (most stages of an asset without
    their configuration never do)."""

    __slots__ = ("_frames",)

    def __init__(self, frames: Sequence[AnyFrame]) -> None:
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [record(f) for f in self._frames[i]]
        return record(self._frames[i])


class FrameByFrame:
    """Base for a stage that handles one frame at a time: implement `apply_frame`; `advance` and
    `revoked` do nothing and `active` is True unless overridden."""

    name = "stage"

    def apply_frame(self, state: AssetState, frame: Frame, step: Step) -> list[Emit]:
        raise NotImplementedError

    def active(self, state: AssetState) -> bool:
        """False when the stage has nothing to do for this asset (its frames are then not even read)."""
        return True

    def apply(self, state: AssetState, frames: Sequence[Frame], step: Step) -> list[Emit]:
        if not self.active(state):
            return []
        if len(frames) == 1:
            return self.apply_frame(state, frames[0], step)
        out: list[Emit] = []
        for i, frame in enumerate(frames):
            try:
                out += self.apply_frame(state, frame, step)
            except Exception as e:
                raise StageFailure(i, out, e) from e
        return out

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        return []

    def revoked(self, assets: Iterable[str]) -> None:
        return None
