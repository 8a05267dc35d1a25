"""What a sink hands its destination: one consumer batch, decoded, by record kind; and how a
destination says "not now" (Backpressure) without losing the batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import schemas
from plantstream.core.errors import SinkError
from plantstream.core.frame_codec import FrameColumns
from plantstream.core.records import AlarmEvent, Alert, AnomalyScore, KpiWindow, OeeWindow, ReadingFrame


class Backpressure(SinkError):
    """The destination cannot take the batch now (database down, locked, full); nothing of it was written,
    and the same batch may be offered again. The sink runner pauses consuming until it is taken."""


@dataclass
class Batch:
    """Records of one consumer batch by kind, in arrival order; a Store writes one in one transaction."""

    frames: list[ReadingFrame | FrameColumns] = field(default_factory=list)  # columns where the layout allows
    kpi_windows: list[KpiWindow] = field(default_factory=list)
    oee_windows: list[OeeWindow] = field(default_factory=list)
    anomaly_scores: list[AnomalyScore] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    alarm_events: list[AlarmEvent] = field(default_factory=list)

    def add(self, schema: str, record: dict[str, Any] | FrameColumns) -> None:
        """Add a decoded record of the schema named `schema` (schemas.READING_FRAME, ...)."""
        target = {
            schemas.READING_FRAME: self.frames,
            schemas.KPI_WINDOW: self.kpi_windows,
            schemas.OEE_WINDOW: self.oee_windows,
            schemas.ANOMALY_SCORE: self.anomaly_scores,
            schemas.ALERT: self.alerts,
            schemas.ALARM_EVENT: self.alarm_events,
        }[schema]
        cast(list[Any], target).append(record)

    def results(self) -> dict[str, list[Any]]:
        """The OEE windows, anomaly scores, alerts and alarm events present, by the stores' kind name."""
        kinds: dict[str, list[Any]] = {
            "oee_window": self.oee_windows,
            "anomaly_score": self.anomaly_scores,
            "alert": self.alerts,
            "alarm_event": self.alarm_events,
        }
        return {kind: records for kind, records in kinds.items() if records}

    def __len__(self) -> int:
        parts = (self.frames, self.kpi_windows, self.oee_windows, self.anomaly_scores, self.alerts, self.alarm_events)
        return sum(len(p) for p in parts)
