"""The records on plantstream's topics, typed, and the builders of the ones built in several places.

Each TypedDict mirrors one record of schemas/*.avsc field for field: tests/unit/test_records.py
fails when a name, a nullability or a type differs. At run time the records stay plain dicts (what
fastavro encodes and decodes, at no conversion cost); the types are for mypy and the reader.
Timestamps are UTC microseconds since the epoch (Avro `timestamp-micros`).

A ReadingFrame, its Samples and an Alert are built only through `reading_frame`, `sample` and
`alert`; KPI, OEE and anomaly records each have one builder in the processor that computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

Quality = Literal["GOOD", "UNCERTAIN", "BAD"]
QUALITIES: tuple[Quality, ...] = ("GOOD", "UNCERTAIN", "BAD")
Value = int | float | bool | str | None
AlertState = Literal["RAISED", "CLEARED"]
Severity = Literal["INFO", "WARNING", "CRITICAL"]


class Sample(TypedDict):
    """One tag's value at one time."""

    tag: str
    source_time: int
    value: Value
    quality: Quality
    unit: str


class ReadingFrame(TypedDict):
    """One scan of one device for one asset (topic plant.readings.v1, key: the asset path)."""

    asset: str
    device: str
    seq: int
    producer_id: str
    scan_time: int
    historical: bool
    buffered: bool
    samples: list[Sample]


class KpiWindow(TypedDict):
    """Statistics of one tag over one event-time window (plant.kpi.v1)."""

    asset: str
    tag: str
    window_start: int
    window_end: int
    unit: str
    count: int
    bad_count: int
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None
    first: float | None
    last: float | None
    first_time: int | None
    last_time: int | None
    time_weighted_avg: float | None
    rate_of_change: float | None


class OeeWindow(TypedDict):
    """ISO 22400-2 OEE of one asset over one window (plant.oee.v1)."""

    asset: str
    window_start: int
    window_end: int
    shift: str
    planned_busy_time_s: float
    actual_production_time_s: float
    produced_quantity: float
    good_quantity: float
    scrap_quantity: float
    availability: float | None
    effectiveness: float | None
    quality_ratio: float | None
    oee: float | None
    scrap_ratio: float | None
    failures: int
    mtbf_s: float | None
    mttr_s: float | None
    downtime_by_reason_s: dict[str, float]


class AnomalyScore(TypedDict):
    """One asset's anomaly score for one frame (plant.anomalies.v1)."""

    asset: str
    time: int
    model: str
    score: float
    threshold: float
    is_anomaly: bool
    warming_up: bool
    contributions: dict[str, float]


class Alert(TypedDict):
    """One state change of one alert (plant.alerts.v1)."""

    alert_id: str
    asset: str
    rule: str
    kind: str
    state: AlertState
    severity: Severity
    time: int
    message: str
    tags: list[str]
    value: float | None


def sample(tag: str, source_time: int, value: Value, quality: Quality = "GOOD", unit: str = "") -> Sample:
    return {"tag": tag, "source_time": source_time, "value": value, "quality": quality, "unit": unit}


def reading_frame(
    *,
    asset: str,
    device: str,
    seq: int,
    producer_id: str,
    scan_time: int,
    samples: list[Sample],
    historical: bool = False,
    buffered: bool = False,
) -> ReadingFrame:
    return {
        "asset": asset,
        "device": device,
        "seq": seq,
        "producer_id": producer_id,
        "scan_time": scan_time,
        "historical": historical,
        "buffered": buffered,
        "samples": samples,
    }


def alert(
    *,
    alert_id: str,
    asset: str,
    rule: str,
    kind: str,
    state: AlertState,
    severity: Severity,
    time: int,
    message: str,
    tags: Sequence[str] = (),
    value: float | None = None,
) -> Alert:
    return {
        "alert_id": alert_id,
        "asset": asset,
        "rule": rule,
        "kind": kind,
        "state": state,
        "severity": severity,
        "time": time,
        "message": message,
        "tags": list(tags),
        "value": value,
    }
