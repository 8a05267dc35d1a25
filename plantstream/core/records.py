"""The records on plantstream's topics, typed, and the builders of the ones built in several places.

Each TypedDict mirrors one record of schemas/*.avsc field for field: tests/unit/test_records.py
fails when a name, a nullability or a type differs. At run time the records stay plain dicts (what
fastavro encodes and decodes, at no conversion cost); the types are for mypy and the reader.
Timestamps are UTC microseconds since the epoch (Avro `timestamp-micros`).

A ReadingFrame, its Samples, an Alert and an AlarmCommand are built only through `reading_frame`,
`sample`, `alert` and `alarm_command`; KPI, OEE, anomaly, asset-state and alarm records each have one
builder in the processor that computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

Quality = Literal["GOOD", "UNCERTAIN", "BAD"]
QUALITIES: tuple[Quality, ...] = ("GOOD", "UNCERTAIN", "BAD")
Value = int | float | bool | str | None
AlertState = Literal["RAISED", "CLEARED"]
Severity = Literal["INFO", "WARNING", "CRITICAL"]
AlarmAction = Literal["ACKNOWLEDGE", "SHELVE", "UNSHELVE", "REMOVE_FROM_SERVICE", "RETURN_TO_SERVICE"]
AlarmLifecycle = Literal["NORMAL", "UNACK", "ACKED", "RTN_UNACK", "LATCHED", "SHELVED", "SUPPRESSED", "OUT_OF_SERVICE"]
AlarmEventKind = Literal[
    "ACTIVATED",
    "CLEARED",
    "ACKNOWLEDGED",
    "SHELVED",
    "UNSHELVED",
    "SHELF_EXPIRED",
    "SUPPRESSED",
    "UNSUPPRESSED",
    "REMOVED_FROM_SERVICE",
    "RETURNED_TO_SERVICE",
    "REJECTED",
]


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
    revision: int
    data_coverage: float | None


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
    revision: int
    data_coverage: float | None


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
    suppression: str


class TagValue(TypedDict):
    """The last sample of one tag (in AssetState)."""

    tag: str
    value: Value
    quality: Quality
    unit: str
    source_time: int


class MachineState(TypedDict):
    state: str
    reason: str
    since: int


class TagSoFar(TypedDict):
    tag: str
    count: int
    mean: float | None
    min: float | None
    max: float | None


class OpenKpiWindow(TypedDict):
    window_start: int
    window_end: int
    tags: list[TagSoFar]


class ShiftOee(TypedDict):
    shift: str
    window_start: int
    window_end: int
    planned_busy_time_s: float
    actual_production_time_s: float
    produced_quantity: float
    good_quantity: float
    availability: float | None
    effectiveness: float | None
    quality_ratio: float | None
    oee: float | None
    data_coverage: float | None


class OpenAlarm(TypedDict):
    rule: str
    severity: str
    state: str
    since: int


class AnomalyNow(TypedDict):
    time: int
    model: str
    score: float
    threshold: float
    is_anomaly: bool
    warming_up: bool
    top_signals: dict[str, float]


class AssetState(TypedDict):
    """The latest state of one asset (plant.state.v1, compacted; key: the asset path)."""

    asset: str
    updated: int
    event_time: int | None
    online: bool
    offline_reason: str
    offline_since: int | None
    last_report: int | None
    expected_interval_s: float | None
    tags: list[TagValue]
    machine_state: MachineState | None
    kpi_window: OpenKpiWindow | None
    shift_oee: ShiftOee | None
    open_alarms: list[OpenAlarm]
    open_alarms_by_severity: dict[str, int]
    anomaly: AnomalyNow | None


class AlarmCommand(TypedDict):
    """An operator action on one alarm (plant.alarm-commands.v1; key: the asset path)."""

    command_id: str
    asset: str
    rule: str
    action: AlarmAction
    user: str
    role: str
    time: int
    comment: str
    shelve_duration_s: float | None
    alert_id: str | None
    source: str


class AlarmState(TypedDict):
    """The lifecycle state of one alarm (plant.alarm-state.v1, compacted; key: the alarm id)."""

    alarm: str
    asset: str
    rule: str
    kind: str
    severity: str
    state: AlarmLifecycle
    active: bool
    acknowledged: bool
    latched: bool
    alert_id: str | None
    active_since: int | None
    message: str
    since: int
    acked_by: str
    acked_at: int | None
    ack_comment: str
    shelved_by: str
    shelved_until: int | None
    service_by: str
    comment: str
    suppressed_reason: str
    activations: list[int]
    activation_count: int


class AlarmEvent(TypedDict):
    """One transition of an alarm, or a refused command (plant.alarm-events.v1; key: the asset path)."""

    event_id: str
    alarm: str
    asset: str
    rule: str
    time: int
    event: AlarmEventKind
    from_state: str
    to_state: str
    user: str
    comment: str
    command_id: str | None
    reason: str
    alert_id: str | None
    severity: str


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
    suppression: str = "",
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
        "suppression": suppression,
    }


def alarm_id(asset: str, rule: str) -> str:
    """The id (and message key) of one alarm: one alert rule on one asset."""
    return f"{asset}/{rule}"


def alarm_command(
    *,
    command_id: str,
    asset: str,
    rule: str,
    action: AlarmAction,
    user: str,
    role: str,
    time: int,
    comment: str = "",
    shelve_duration_s: float | None = None,
    alert_id: str | None = None,
    source: str = "",
) -> AlarmCommand:
    return {
        "command_id": command_id,
        "asset": asset,
        "rule": rule,
        "action": action,
        "user": user,
        "role": role,
        "time": time,
        "comment": comment,
        "shelve_duration_s": shelve_duration_s,
        "alert_id": alert_id,
        "source": source,
    }
