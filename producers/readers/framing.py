"""Samples that arrive one message at a time, grouped into ReadingFrames per device (pure).

A device's samples of one frame period become one live frame (and one historical frame for samples
flagged historical, e.g. Sparkplug `is_historical`), each sample keeping its source time. A sample
equal to the last one accepted for its tag (same source time, value and quality) is dropped as a
repeat; an older or same-millisecond different value is kept (sources may send out of order, and
two changes can share a millisecond timestamp). Report by exception
(deadbands, heartbeats) applies when a frame is cut. The MQTT message ids of a frame's messages are
handed back with it, to be acknowledged once the frame is on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from plantstream.core.records import ReadingFrame, Sample, reading_frame, sample
from producers.report_by_exception import DeadbandTag, ExceptionFilter

MAX_SAMPLES_PER_FRAME = 5000  # ~250 kB of Avro, well under Kafka's 1 MB default message limit


class FramedTag(Protocol):
    name: str
    unit: str


@dataclass
class Flushed:
    frames: list[ReadingFrame]
    acks: list[int]  # MQTT message ids whose samples are in `frames` (or were dropped as duplicates)
    duplicates: int = 0


@dataclass
class FrameAssembler:
    """One device's open frame: samples and message ids since the last cut."""

    device: str
    asset: str
    producer_id: str
    period_s: float
    tags: Sequence[DeadbandTag] = ()
    seq: int = 0
    _live: list[Sample] = field(default_factory=list)
    _history: list[Sample] = field(default_factory=list)
    _acks: list[int] = field(default_factory=list)
    _last: dict[tuple[str, bool], tuple[int, object, str]] = field(default_factory=dict)
    _duplicates: int = 0
    opened_at: float | None = None  # monotonic time of the first sample of the open frame

    def __post_init__(self) -> None:
        self._exceptions = ExceptionFilter.for_tags(self.tags)

    def add(self, samples: Iterable[Sample], now: float, *, historical: bool = False) -> None:
        target = self._history if historical else self._live
        last = self._last
        for s in samples:
            key = (s["tag"], historical)
            seen = (s["source_time"], s["value"], s["quality"])
            if last.get(key) == seen:
                self._duplicates += 1
                continue
            last[key] = seen
            target.append(s)
        if self.opened_at is None and (self._live or self._history):
            self.opened_at = now

    def ack_later(self, mid: int) -> None:
        """Acknowledge this message when the frame holding its samples is cut."""
        self._acks.append(mid)
        if self.opened_at is None:
            self.opened_at = -1.0  # nothing to frame, only an ack: cut at the next chance

    @property
    def size(self) -> int:
        return len(self._live) + len(self._history)

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    def due(self, now: float) -> bool:
        return self.opened_at is not None and (
            now - self.opened_at >= self.period_s or self.size >= MAX_SAMPLES_PER_FRAME
        )

    def cut(self, scan_time: int) -> Flushed:
        """The open frame(s), and the message ids to acknowledge now."""
        live, history, acks, dupes = self._live, self._history, self._acks, self._duplicates
        self._live, self._history, self._acks, self._duplicates = [], [], [], 0
        self.opened_at = None
        if self._exceptions is not None and live:
            live = self._exceptions.filter(live, scan_time)
        frames = []
        for samples, historical in ((history, True), (live, False)):
            for start in range(0, len(samples), MAX_SAMPLES_PER_FRAME):
                frames.append(self._frame(samples[start : start + MAX_SAMPLES_PER_FRAME], scan_time, historical))
        return Flushed(frames, acks, dupes)

    def bad_frame(self, tags: Sequence[FramedTag], scan_time: int) -> ReadingFrame:
        """Every listed tag BAD at scan_time: marks a gap (connection lost, node or device dead)."""
        return self._frame([sample(t.name, scan_time, None, "BAD", t.unit) for t in tags], scan_time, False)

    def _frame(self, samples: list[Sample], scan_time: int, historical: bool) -> ReadingFrame:
        frame = reading_frame(
            asset=self.asset,
            device=self.device,
            seq=self.seq,
            producer_id=self.producer_id,
            scan_time=scan_time,
            samples=samples,
            historical=historical,
        )
        self.seq += 1
        return frame
