"""One asset's live state (plant.state.v1, the plant's digital twin), pure: what the worker keeps per
frame, and the AssetState record built from it and from the KPI, OEE and alarm state.

Per frame (cheap: a dict store per sample, no arithmetic): every tag's last sample, the newest scan time,
the last report (a frame with a GOOD sample) and since when only BAD samples came. Everything else is
read when a record is built, at most once per asset per `pipeline.state_topic.interval_s`.

Online: the asset reported within its allowed silence (plantstream.core.reporting) of now. Offline
reasons: `silence` (no frame), `device_down` (frames still come, every sample BAD: the device does not
answer, or a Sparkplug death certificate), `no_data` (nothing since the worker owns it). An offline
asset's machine state is null (unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plantstream.core.records import AnomalyNow, AssetState, OpenAlarm, OpenKpiWindow, ShiftOee, TagSoFar, TagValue
from processors import oee, tag_stats
from processors.alarm_lifecycle import SET_ASIDE, Alarm

Twin = dict[str, Any]
SEVERITY_RANK = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}


def new_twin() -> Twin:
    # tags: tag -> its last Sample; t: newest scan time; seen: scan time of the last report; bad_since:
    # scan time of the first frame of only BAD samples after it; ms: [class, reason, since] of the machine;
    # emitted: wall clock of the last record; online, reason: what it said
    return {
        "tags": {},
        "t": None,
        "seen": None,
        "bad_since": None,
        "anomaly": None,
        "ms": None,
        "emitted": 0,
        "online": None,
        "reason": None,
        "dirty": True,
    }


def apply_frame(twin: Twin, frame: Mapping[str, Any]) -> None:
    t = frame["scan_time"]
    tags = twin["tags"]
    samples = frame["samples"]
    newest = twin["t"]
    if newest is None or t >= newest:
        for s in samples:  # frames of one device come in order: the newest frame holds the newest values
            tags[s["tag"]] = s
        twin["t"] = t
    else:
        for s in samples:
            old = tags.get(s["tag"])
            if old is None or s["source_time"] >= old["source_time"]:
                tags[s["tag"]] = s
    if any(s["quality"] == "GOOD" for s in samples):
        if twin["seen"] is None or t >= twin["seen"]:
            twin["seen"], twin["bad_since"] = t, None
    elif twin["bad_since"] is None and (twin["seen"] is None or t > twin["seen"]):
        twin["bad_since"] = t
    twin["dirty"] = True


def note_machine(twin: Twin, oee_state: Mapping[str, Any] | None) -> None:
    """Follow the OEE state machine's current state (it knows the classes and the silences)."""
    cur = oee_state["state"] if oee_state is not None else None
    if cur is None:
        if twin["ms"] is not None:
            twin["ms"], twin["dirty"] = None, True
        return
    ms = twin["ms"]
    if ms is None or ms[0] != cur[1] or ms[1] != cur[2]:
        twin["ms"], twin["dirty"] = [cur[1], cur[2], cur[0]], True


def liveness(twin: Twin, now_us: int, limit_us: int) -> tuple[bool, str, int | None]:
    """(online, offline reason, offline since) at the wall-clock time now_us."""
    seen = twin["seen"]
    if seen is None:
        return False, "no_data", None
    if now_us - seen <= limit_us:
        return True, "", None
    flowing = twin["bad_since"] is not None and twin["t"] is not None and now_us - twin["t"] <= limit_us
    return False, "device_down" if flowing else "silence", seen + limit_us


def _tags(twin: Twin) -> list[TagValue]:
    return [
        {
            "tag": tag,
            "value": s["value"],
            "quality": s["quality"],
            "unit": s.get("unit", ""),
            "source_time": s["source_time"],
        }
        for tag, s in sorted(twin["tags"].items())
    ]


def _kpi_window(windows: Mapping[str, Any], size: int, hop: int) -> OpenKpiWindow | None:
    panes, max_t = windows.get("open") or {}, windows.get("max_t")
    if not panes or max_t is None:
        return None
    start = max_t - max_t % size
    merged: dict[str, tag_stats.Acc] = {}
    for p in range(start, start + size, hop):
        for tag, acc in (panes.get(str(p)) or {}).items():
            merged[tag] = tag_stats.merge(merged[tag], acc) if tag in merged else acc
    out: list[TagSoFar] = []
    for tag, acc in sorted(merged.items()):
        n = acc["n"]
        out.append({"tag": tag, "count": n, "mean": acc["mean"] if n else None, "min": acc["min"], "max": acc["max"]})
    return {"window_start": start, "window_end": start + size, "tags": out}


def _shift_oee(oee_state: Mapping[str, Any] | None, profile: oee.AssetProfile | None) -> ShiftOee | None:
    if oee_state is None or profile is None or not oee_state["buckets"]:
        return None
    buckets = oee_state["buckets"]
    shifts = [b for k, b in buckets.items() if k.startswith("s:")]
    candidates = shifts or [b for k, b in buckets.items() if k.startswith("w:")]
    if not candidates:
        return None
    b = max(candidates, key=lambda b: b["start"])
    k = oee.kpis(b["t"], b["q"], profile.roles, b["failures"], profile.ideal_cycle_time_s)
    upto = oee_state["max_t"] if oee_state["max_t"] is not None else b["end"]
    span = min(upto, b["end"]) - b["start"]
    known = sum(b["t"].values())
    return {
        "shift": b["shift"],
        "window_start": b["start"],
        "window_end": b["end"],
        "planned_busy_time_s": k["planned_busy_time_s"],
        "actual_production_time_s": k["actual_production_time_s"],
        "produced_quantity": k["produced_quantity"],
        "good_quantity": k["good_quantity"],
        "availability": k["availability"],
        "effectiveness": k["effectiveness"],
        "quality_ratio": k["quality_ratio"],
        "oee": k["oee"],
        "data_coverage": min(1.0, known / span) if span > 0 else None,
    }


def open_alarms(alarms: Mapping[str, Alarm]) -> tuple[list[OpenAlarm], dict[str, int]]:
    rows: list[OpenAlarm] = [
        {"rule": rule, "severity": a["severity"], "state": a["state"], "since": a["since"]}
        for rule, a in alarms.items()
        if a["state"] != "NORMAL"
    ]
    rows.sort(key=lambda r: (SEVERITY_RANK.get(r["severity"], 3), -r["since"]))
    by: dict[str, int] = {}
    for r in rows:
        if r["state"] not in SET_ASIDE:
            by[r["severity"]] = by.get(r["severity"], 0) + 1
    return rows, by


def _anomaly(score: Mapping[str, Any] | None) -> AnomalyNow | None:
    if score is None:
        return None
    top = sorted(score.get("contributions", {}).items(), key=lambda kv: -kv[1])[:3]
    return {
        "time": score["time"],
        "model": score["model"],
        "score": score["score"],
        "threshold": score["threshold"],
        "is_anomaly": score["is_anomaly"],
        "warming_up": score["warming_up"],
        "top_signals": dict(top),
    }


def record(
    asset: str,
    twin: Twin,
    windows: Mapping[str, Any],
    oee_state: Mapping[str, Any] | None,
    alarms: Mapping[str, Alarm],
    profile: oee.AssetProfile | None,
    *,
    size: int,
    hop: int,
    now_us: int,
    limit_us: int,
    expected_interval_s: float | None,
) -> AssetState:
    """The AssetState record (schemas/asset_state.avsc) of one asset now."""
    online, reason, since = liveness(twin, now_us, limit_us)
    # offline, what the machine does now is not known: the OEE state machine holds the last state only
    # up to the window the silence began in (processors/oee.py), which may end before the silence limit
    ms = twin["ms"] if online else None
    rows, by = open_alarms(alarms)
    return {
        "asset": asset,
        "updated": now_us,
        "event_time": twin["t"],
        "online": online,
        "offline_reason": reason,
        "offline_since": since,
        "last_report": twin["seen"],
        "expected_interval_s": expected_interval_s,
        "tags": _tags(twin),
        "machine_state": {"state": ms[0], "reason": ms[1], "since": ms[2]} if ms is not None else None,
        "kpi_window": _kpi_window(windows, size, hop),
        "shift_oee": _shift_oee(oee_state, profile),
        "open_alarms": rows,
        "open_alarms_by_severity": by,
        "anomaly": _anomaly(twin["anomaly"]),
    }


def unseen(asset: str, now_us: int, expected_interval_s: float | None) -> AssetState:
    """The record of a configured asset that has sent nothing since the worker owns it."""
    return {
        "asset": asset,
        "updated": now_us,
        "event_time": None,
        "online": False,
        "offline_reason": "no_data",
        "offline_since": None,
        "last_report": None,
        "expected_interval_s": expected_interval_s,
        "tags": [],
        "machine_state": None,
        "kpi_window": None,
        "shift_oee": None,
        "open_alarms": [],
        "open_alarms_by_severity": {},
        "anomaly": None,
    }
