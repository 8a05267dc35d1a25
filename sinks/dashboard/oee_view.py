"""OEE as the page shows it: the three factors, why a factor is undefined, and OEE over a shift.

ISO 22400-2 (see /work/shared/KPI-NOTES.md): A = APT / PBT, E = PRI x PQ / APT, QR = GQ / PQ,
OEE = A x E x QR = PRI x GQ / PBT. Over a shift or any span longer than one window the factors come from
the summed times and counts of its windows, never from averaging the windows' ratios: a window with
no planned busy time or no production would otherwise be skipped or weigh as much as a full one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUMMED = ("planned_busy_time_s", "actual_production_time_s", "produced_quantity", "good_quantity")


NO_PBT = {
    "BREAK": "planned break: no planned busy time",
    "OFF": "outside the shift calendar: no planned operation time",
    "SHIFT": "planned stop: no planned busy time",
    "": "no planned busy time (planned break, planned stop or off shift)",
}


def undefined_reasons(rec: Mapping[str, Any], ideal_cycle_time_s: float | None, planned: str = "") -> dict[str, str]:
    """Why each undefined factor of an OEE record is undefined, in words a shift lead reads. `planned` is what
    the shift calendar says of the whole window (BREAK, OFF, SHIFT; "" when mixed or unknown)."""
    pbt = float(rec.get("planned_busy_time_s") or 0.0)
    apt = float(rec.get("actual_production_time_s") or 0.0)
    pq = float(rec.get("produced_quantity") or 0.0)
    out: dict[str, str] = {}
    if rec.get("availability") is None and pbt <= 0:
        out["availability"] = NO_PBT.get(planned, NO_PBT[""])
    if rec.get("effectiveness") is None:
        if ideal_cycle_time_s is None:
            out["effectiveness"] = "no ideal cycle time configured (plant.assets[].ideal_cycle_time_s)"
        elif apt <= 0:
            out["effectiveness"] = "no production time: the machine did not run"
    if rec.get("quality_ratio") is None and pq <= 0:
        out["quality"] = "no parts produced"
    if rec.get("oee") is None:
        first = next(iter(out.values()), "")
        out["oee"] = first or "a factor is undefined"
    return out


def factors(pbt: float, apt: float, pq: float, gq: float, ideal_cycle_time_s: float | None) -> dict[str, float | None]:
    """A, E, QR and OEE from summed times and counts. OEE = PRI x GQ / PBT is defined whenever PBT > 0 and
    PRI is known: a shift in which the machine never ran has OEE 0, not an undefined OEE."""
    a = apt / pbt if pbt > 0 else None
    e = ideal_cycle_time_s * pq / apt if ideal_cycle_time_s is not None and apt > 0 else None
    q = gq / pq if pq > 0 else None
    oee = ideal_cycle_time_s * gq / pbt if ideal_cycle_time_s is not None and pbt > 0 else None
    return {"availability": a, "effectiveness": e, "quality": q, "oee": oee}


def combine(windows: Iterable[Mapping[str, Any]], ideal_cycle_time_s: float | None) -> dict[str, Any]:
    """OEE over a span from its (tumbling, non-overlapping) OEE windows."""
    tot = dict.fromkeys(SUMMED, 0.0)
    downtime: dict[str, float] = {}
    n = 0
    start = end = None
    for w in windows:
        n += 1
        for k in SUMMED:
            tot[k] += float(w.get(k) or 0.0)
        for reason, s in (w.get("downtime_by_reason_s") or {}).items():
            downtime[reason] = downtime.get(reason, 0.0) + float(s)
        start = w["window_start"] if start is None else min(start, w["window_start"])
        end = w["window_end"] if end is None else max(end, w["window_end"])
    f = factors(
        tot["planned_busy_time_s"],
        tot["actual_production_time_s"],
        tot["produced_quantity"],
        tot["good_quantity"],
        ideal_cycle_time_s,
    )
    rec = {**tot, **f, "quality_ratio": f["quality"], "windows": n, "window_start": start, "window_end": end}
    rec["reasons"] = undefined_reasons(rec, ideal_cycle_time_s) if n else {"oee": "no OEE window yet"}
    rec["downtime_by_reason_s"] = downtime
    return rec


def window_view(rec: Mapping[str, Any], ideal_cycle_time_s: float | None, planned: str = "") -> dict[str, Any]:
    """An OEE window (topic record or store row) -> the tile's fields, with reasons for undefined factors."""
    return {
        "asset": rec["asset"],
        "window_start": rec["window_start"],
        "window_end": rec["window_end"],
        "shift": rec.get("shift") or "",
        "oee": rec.get("oee"),
        "availability": rec.get("availability"),
        "effectiveness": rec.get("effectiveness"),
        "quality": rec.get("quality_ratio"),
        "planned_busy_time_s": rec.get("planned_busy_time_s"),
        "actual_production_time_s": rec.get("actual_production_time_s"),
        "good_quantity": rec.get("good_quantity"),
        "produced_quantity": rec.get("produced_quantity"),
        "downtime_by_reason_s": dict(rec.get("downtime_by_reason_s") or {}),
        "reasons": undefined_reasons(rec, ideal_cycle_time_s, planned),
    }
