"""The dashboard's view model: pure functions from config, store rows and topic records to JSON-able dicts.

No I/O here, so every rule the page shows (offline, active alerts, downsampling) is unit-tested.
Times are integer UTC microseconds, as everywhere in plantstream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from plantstream.core.config import DashboardSettings, MqttDevice, OpcUaDevice, Settings, SparkplugDevice, TagRole

US = 1_000_000


# --- the plant: asset tree and what each asset has -------------------------------------------------


def scan_intervals(settings: Settings) -> dict[str, float]:
    """Seconds between two frames of each asset: its fastest device's poll or publishing interval."""
    out: dict[str, float] = {}
    for d in settings.devices:
        if isinstance(d, OpcUaDevice):
            interval = d.publishing_interval_ms / 1000
        elif isinstance(d, MqttDevice | SparkplugDevice):
            interval = d.frame_period_s
        else:
            interval = d.poll_interval_s
        out[d.asset] = min(interval, out.get(d.asset, math.inf))
    return out


def asset_tags(settings: Settings) -> dict[str, list[dict[str, str]]]:
    """The tags of each asset (name, unit, role) in device order."""
    out: dict[str, list[dict[str, str]]] = {a.path: [] for a in settings.plant.assets}
    for d in settings.devices:
        for t in d.tags:
            out.setdefault(d.asset, []).append({"name": t.name, "unit": t.unit, "role": str(t.role)})
    return out


def trend_tags(settings: Settings, asset: str) -> list[str]:
    """Tags drawn as trends: process values (counters and states have their own views: OEE, downtime)."""
    return [t["name"] for t in asset_tags(settings).get(asset, []) if t["role"] == TagRole.PROCESS_VALUE.value]


def asset_tree(paths: Iterable[str]) -> list[dict[str, Any]]:
    """ISA-95 paths (enterprise.site.area.line.machine) as nested nodes {name, path, children}, sorted."""
    root: dict[str, Any] = {"children": {}}
    for path in sorted(set(paths)):
        node = root
        parts = path.split(".")
        for i, part in enumerate(parts):
            node = node["children"].setdefault(part, {"name": part, "path": ".".join(parts[: i + 1]), "children": {}})

    def listed(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**c, "children": listed(c)} for c in node["children"].values()]

    return listed(root)


def plant_view(settings: Settings) -> dict[str, Any]:
    """What the page needs first: name, tree, and each asset's path, kind and description (its tags come
    with /api/asset when it is selected, so a plant of 1,000 assets loads as fast as one of ten)."""
    return {
        "name": settings.plant.name,
        "tree": asset_tree(a.path for a in settings.plant.assets),
        "assets": [{"path": a.path, "kind": a.kind, "description": a.description} for a in settings.plant.assets],
    }


# --- liveness ----------------------------------------------------------------------------------


def offline_after_s(cfg: DashboardSettings, scan_interval_s: float | None) -> float:
    """Silence that makes an asset offline: N scan intervals, but never less than offline_after_s."""
    if scan_interval_s is None:
        return cfg.offline_after_s
    return max(cfg.offline_after_s, cfg.offline_after_scans * scan_interval_s)


def asset_status(
    cfg: DashboardSettings,
    intervals: Mapping[str, float],
    last_seen_us: Mapping[str, int],
    assets: Iterable[str],
    now_us: int,
) -> dict[str, dict[str, Any]]:
    """online/offline per asset, with the age of its newest live frame (None: never seen)."""
    out: dict[str, dict[str, Any]] = {}
    for a in assets:
        seen = last_seen_us.get(a)
        limit = offline_after_s(cfg, intervals.get(a))
        age = None if seen is None else max(0.0, (now_us - seen) / US)
        out[a] = {"online": age is not None and age <= limit, "age_s": None if age is None else round(age, 1)}
    return out


# --- trends: downsampling -----------------------------------------------------------------------


def downsample(rows: Iterable[tuple[int, float]], start_us: int, width_us: int) -> dict[str, list[float]]:
    """(time, value) rows -> min/max/avg per bucket; `t` is the bucket's start. The SQL readers do the same
    in the database (so 24 h of 1 s samples never leave it); this is the reference and the live-path helper."""
    buckets: dict[int, list[float]] = {}
    for ts, v in rows:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        b = (ts - start_us) // width_us
        acc = buckets.get(b)
        if acc is None:
            buckets[b] = [v, v, v, 1]
        else:
            acc[0] = min(acc[0], v)
            acc[1] = max(acc[1], v)
            acc[2] += v
            acc[3] += 1
    out: dict[str, list[float]] = {"t": [], "min": [], "max": [], "avg": []}
    for b in sorted(buckets):
        lo, hi, total, n = buckets[b]
        out["t"].append(start_us + b * width_us)
        out["min"].append(lo)
        out["max"].append(hi)
        out["avg"].append(total / n)
    return out


def series_from_buckets(
    rows: Iterable[tuple[int, float, float, float]], start_us: int, width_us: int
) -> dict[str, list[float]]:
    """(bucket index, min, max, avg) rows from SQL -> the same shape as `downsample`."""
    out: dict[str, list[float]] = {"t": [], "min": [], "max": [], "avg": []}
    for b, lo, hi, avg in sorted(rows):
        out["t"].append(start_us + int(b) * width_us)
        out["min"].append(lo)
        out["max"].append(hi)
        out["avg"].append(avg)
    return out


def merge_buckets(*parts: Iterable[tuple[int, float, float, float, int]]) -> list[tuple[int, float, float, float]]:
    """(bucket, min, max, avg, count) rows from several sources (KPI windows, raw samples) -> one row per
    bucket: min of mins, max of maxes, count-weighted mean."""
    acc: dict[int, list[float]] = {}
    for rows in parts:
        for b, lo, hi, avg, n in rows:
            if n is None or n <= 0 or avg is None:
                continue
            # PostgreSQL's SUM(bigint) is numeric (Decimal): plain numbers from here on
            lo, hi, avg, n = float(lo), float(hi), float(avg), int(n)
            cur = acc.get(int(b))
            if cur is None:
                acc[int(b)] = [lo, hi, avg * n, n]
            else:
                cur[0] = min(cur[0], lo)
                cur[1] = max(cur[1], hi)
                cur[2] += avg * n
                cur[3] += n
    return [(b, lo, hi, total / n) for b, (lo, hi, total, n) in sorted(acc.items())]


# --- live records -------------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    return v


def frame_update(frame: Mapping[str, Any]) -> dict[str, Any]:
    """A ReadingFrame -> the newest value per tag (a frame may hold several samples of a tag)."""
    values: dict[str, Any] = {}
    quality: dict[str, str] = {}
    times: dict[str, int] = {}
    for s in frame["samples"]:
        if s["source_time"] >= times.get(s["tag"], -1):
            times[s["tag"]] = s["source_time"]
            values[s["tag"]] = _json_value(s["value"])
            quality[s["tag"]] = s["quality"]
    return {
        "asset": frame["asset"],
        "time": frame["scan_time"],
        "historical": bool(frame.get("historical", False)),
        "values": values,
        "quality": quality,
    }


def downtime_by_reason(windows: Iterable[Mapping[str, float]]) -> list[dict[str, Any]]:
    """Sum of downtime seconds per reason over windows, longest first (the Pareto)."""
    total: dict[str, float] = {}
    for w in windows:
        for reason, s in w.items():
            total[reason] = total.get(reason, 0.0) + float(s)
    return [
        {"reason": r, "seconds": round(s, 3)} for r, s in sorted(total.items(), key=lambda x: (-x[1], x[0])) if s > 0
    ]


def alert_view(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": record["alert_id"],
        "asset": record["asset"],
        "rule": record.get("rule") or "",
        "kind": record.get("kind") or "",
        "state": record["state"],
        "severity": record.get("severity") or "",
        "time": record["time"],
        "message": record.get("message") or "",
        "value": _json_value(record.get("value")),
    }


class AlertBoard:
    """Active alerts: the newest state per alert_id is RAISED. Fed from the store at start, then live."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}

    def apply(self, record: Mapping[str, Any]) -> bool:
        """Take a state change; True if the board changed. Out-of-order (older) changes are ignored."""
        a = alert_view(record)
        prev = self._latest.get(a["alert_id"])
        if prev is not None and (prev["time"], prev["state"] == "CLEARED") >= (a["time"], a["state"] == "CLEARED"):
            return False
        self._latest[a["alert_id"]] = a
        return True

    def active(self, acks: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """RAISED alerts, newest first, each with its acknowledgement (or None)."""
        rows = [
            {**a, "ack": dict(acks[a["alert_id"]]) if a["alert_id"] in acks else None}
            for a in self._latest.values()
            if a["state"] == "RAISED"
        ]
        severity = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
        return sorted(rows, key=lambda r: (r["ack"] is not None, severity.get(r["severity"], 3), -r["time"]))

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self._latest.get(alert_id)

    def cleared(self) -> list[dict[str, Any]]:
        """CLEARED alerts, newest first (an alarm that returned to normal may still wait for an acknowledgement)."""
        return sorted((a for a in self._latest.values() if a["state"] == "CLEARED"), key=lambda r: -r["time"])
