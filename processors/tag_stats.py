"""Per-tag window statistics as a mergeable accumulator of plain JSON-able dicts (for Faust tables).

Mean and variance use Welford's update, which stays exact for large offsets (e.g. 1e9 counters)
where sum-of-squares loses all precision. The time-weighted average holds each value until the
next sample (step interpolation, as historians do for process values).
"""

from __future__ import annotations

import math
from typing import Any

Acc = dict[str, Any]


def new_acc(unit: str = "") -> Acc:
    return {
        "n": 0,
        "bad": 0,
        "unit": unit,
        "min": None,
        "max": None,
        "mean": 0.0,
        "m2": 0.0,
        "first": None,
        "first_t": None,
        "last": None,
        "last_t": None,
        "integ": 0.0,
    }


def as_number(value: Any) -> float | None:
    """Numeric view of a sample value: bools count as 0/1 (a running flag's mean is its duty cycle)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def add(acc: Acc, t: int, value: Any, good: bool) -> None:
    """Add one sample at time t (µs). Non-GOOD or non-numeric samples are only counted."""
    if good and type(value) is float and -math.inf < value < math.inf:  # the common case, without a call
        x: float | None = value
    else:
        x = as_number(value) if good else None
    if x is None:
        acc["bad"] += 1
        return
    # one read and one write per field, no min()/max() calls: this runs for every sample
    n = acc["n"] + 1
    mean = acc["mean"]
    delta = x - mean
    mean += delta / n
    acc["n"] = n
    acc["mean"] = mean
    acc["m2"] += delta * (x - mean)
    lo = acc["min"]
    if lo is None or x < lo:
        acc["min"] = x
    hi = acc["max"]
    if hi is None or x > hi:
        acc["max"] = x
    first_t = acc["first_t"]
    if first_t is None or t < first_t:
        acc["first"], acc["first_t"] = x, t
    last_t = acc["last_t"]
    if last_t is None or t >= last_t:
        if last_t is not None:
            # hold the previous value until this sample; out-of-order samples do not add area
            acc["integ"] += acc["last"] * (t - last_t)
        acc["last"], acc["last_t"] = x, t


def merge(a: Acc, b: Acc) -> Acc:
    """The accumulator of a's samples followed by b's (b's all later in time, as consecutive panes are).

    Mean and variance combine with Chan's formula; the time-weighted area gains the stretch from a's
    last sample to b's first, during which a's last value held. Tumbling windows never merge, so
    their figures stay bit-for-bit those of the sequential update.
    """
    if a["n"] == 0 or b["n"] == 0:
        keep = b if a["n"] == 0 else a
        return {**keep, "bad": a["bad"] + b["bad"], "unit": a["unit"] or b["unit"]}
    n = a["n"] + b["n"]
    delta = b["mean"] - a["mean"]
    gap = a["last"] * (b["first_t"] - a["last_t"]) if b["first_t"] >= a["last_t"] else 0.0
    return {
        "n": n,
        "bad": a["bad"] + b["bad"],
        "unit": a["unit"] or b["unit"],
        "min": min(a["min"], b["min"]),
        "max": max(a["max"], b["max"]),
        "mean": a["mean"] + delta * b["n"] / n,
        "m2": a["m2"] + b["m2"] + delta * delta * a["n"] * b["n"] / n,
        "first": a["first"] if a["first_t"] <= b["first_t"] else b["first"],
        "first_t": min(a["first_t"], b["first_t"]),
        "last": b["last"] if b["last_t"] >= a["last_t"] else a["last"],
        "last_t": max(a["last_t"], b["last_t"]),
        "integ": a["integ"] + b["integ"] + gap,
    }


def result(acc: Acc) -> dict[str, Any]:
    """The statistics fields of a KpiWindow record."""
    n = acc["n"]
    out: dict[str, Any] = {
        "unit": acc["unit"],
        "count": n,
        "bad_count": acc["bad"],
        "min": acc["min"],
        "max": acc["max"],
        "mean": None,
        "stddev": None,
        "first": acc["first"],
        "last": acc["last"],
        "first_time": acc["first_t"],
        "last_time": acc["last_t"],
        "time_weighted_avg": None,
        "rate_of_change": None,
    }
    if n == 0:
        return out
    out["mean"] = acc["mean"]
    out["stddev"] = math.sqrt(max(acc["m2"], 0.0) / n)
    span = acc["last_t"] - acc["first_t"]
    if span > 0:
        out["time_weighted_avg"] = acc["integ"] / span
        out["rate_of_change"] = (acc["last"] - acc["first"]) / (span / 1e6)
    else:
        out["time_weighted_avg"] = acc["last"]
    return out
