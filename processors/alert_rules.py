"""Alert rules from the config (``pipeline.alerts``): pure evaluation, JSON-able state, Alert records.

Each (rule, asset) pair is a small state machine: idle -> pending (condition holds, waiting for
``min_duration_s``) -> RAISED -> CLEARED -> idle. One incident yields exactly one RAISED and one
CLEARED record, both with the same ``alert_id`` = hash(rule, asset, time the condition began), so a
replay of the same history reproduces the same ids and an idempotent sink stores each once.

Kinds (time is event time: the samples' source time, µs):

- threshold: raise when value > ``above`` (or < ``below``) has held for ``min_duration_s``; clear
  when value <= above - hysteresis (and >= below + hysteresis). Only GOOD numeric samples count.
- rate_of_change: rate = (v_now - v_oldest) / (t_now - t_oldest) over the GOOD samples of the last
  ``span_s``; raise when |rate| > ``rate_per_s``, clear when |rate| <= rate_per_s - hysteresis.
- stale: no GOOD sample of the tag for ``stale_after_s``. Checked at every frame of the asset (event
  time, so a replay finds the same gaps) and by ``tick`` on the wall clock (a silent producer sends
  no frames at all). The incident begins at last GOOD sample + stale_after_s; a GOOD sample clears it.
- state: the machine has been in UNPLANNED_STOP (plantstream.core.machine_state) for
  ``stop_longer_than_min`` minutes; clears when it leaves UNPLANNED_STOP.
- anomaly: AnomalyScore records (``apply_anomaly``): score > ``score_above`` (or the model's
  is_anomaly flag when unset), ignoring warm-up; clear below score_above - hysteresis.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from plantstream.core import machine_state as ms
from plantstream.core.config import AlertKind, AlertRule
from plantstream.core.records import Alert, AlertState, alert

AlertsState = dict[str, Any]
Tracker = dict[str, Any]
US = 1_000_000


def alert_id(rule: str, asset: str, start: int) -> str:
    return hashlib.sha256(f"{rule}|{asset}|{start}".encode()).hexdigest()[:24]


def rules_for(rules: list[AlertRule], asset: str) -> list[AlertRule]:
    """The rules whose asset (exact path or glob) matches."""
    return [r for r in rules if r.asset == asset or fnmatchcase(asset, r.asset)]


def new_state() -> AlertsState:
    return {"rules": {}}


def _tracker(state: AlertsState, rule: AlertRule) -> Tracker:
    tr = state["rules"].get(rule.name)
    if tr is None:
        tr = state["rules"][rule.name] = {
            "raised": False,
            "id": None,
            "since": None,
            "hist": [],
            "last_good_t": None,
            "last_good_wall": None,
        }
    return tr


def _record(
    rule: AlertRule, asset: str, tr: Tracker, state: AlertState, t: int, message: str, tags: list[str], value: Any
) -> Alert:
    return alert(
        alert_id=tr["id"],
        asset=asset,
        rule=rule.name,
        kind=rule.kind.value,
        state=state,
        severity=rule.severity,
        time=t,
        message=message,
        tags=tags,
        value=float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
    )


def step(
    tr: Tracker,
    rule: AlertRule,
    asset: str,
    t: int,
    raise_cond: bool,
    clear_cond: bool,
    value: Any,
    tags: list[str],
    text: str,
    min_duration_us: int | None = None,
) -> Alert | None:
    """Advance one (rule, asset) state machine by one observation; the Alert record of a change, or None."""
    min_us = int(rule.min_duration_s * US) if min_duration_us is None else min_duration_us
    if not tr["raised"]:
        if not raise_cond:
            tr["since"] = None
            return None
        if tr["since"] is None:
            tr["since"] = t
        if t - tr["since"] < min_us:
            return None
        tr["raised"], tr["id"] = True, alert_id(rule.name, asset, tr["since"])
        return _record(rule, asset, tr, "RAISED", t, rule.message or text, tags, value)
    if not clear_cond:
        return None
    rec = _record(rule, asset, tr, "CLEARED", t, f"cleared: {rule.message or text}", tags, value)
    tr["raised"], tr["id"], tr["since"] = False, None, None
    return rec


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _threshold(tr: Tracker, rule: AlertRule, asset: str, t: int, v: float) -> Alert | None:
    hi, lo, h = rule.above, rule.below, rule.hysteresis
    raise_cond = (hi is not None and v > hi) or (lo is not None and v < lo)
    clear_cond = (hi is None or v <= hi - h) and (lo is None or v >= lo + h)
    if hi is not None and v > hi:
        limit = f"above {hi:g}"
    elif lo is not None and v < lo:
        limit = f"below {lo:g}"
    else:
        limit = "within limits"
    return step(tr, rule, asset, t, raise_cond, clear_cond, v, [rule.tag], f"{rule.tag} = {v:.6g} {limit}")


def _rate(tr: Tracker, rule: AlertRule, asset: str, t: int, v: float) -> Alert | None:
    hist = tr["hist"]
    hist.append([t, v])
    cutoff = t - int(rule.span_s * US)
    while len(hist) > 2 and hist[0][0] < cutoff:
        hist.pop(0)
    t0, v0 = hist[0]
    if t <= t0:
        return None
    rate = (v - v0) / ((t - t0) / US)
    limit = rule.rate_per_s or 0.0
    return step(
        tr,
        rule,
        asset,
        t,
        abs(rate) > limit,
        abs(rate) <= limit - rule.hysteresis,
        rate,
        [rule.tag],
        f"{rule.tag} changes {rate:+.6g}/s, limit {limit:g}/s",
    )


def _stale_check(tr: Tracker, rule: AlertRule, asset: str, now: int) -> Alert | None:
    """Raise when `now` (event or wall time, µs) is past the last GOOD sample + stale_after_s."""
    if tr["raised"] or tr["last_good_t"] is None:
        return None
    after = int((rule.stale_after_s or 0) * US)
    start = tr["last_good_t"] + after
    tr["since"] = start
    tr["raised"], tr["id"] = True, alert_id(rule.name, asset, start)
    text = rule.message or f"no GOOD sample of {rule.tag} for {rule.stale_after_s:g} s"
    return _record(rule, asset, tr, "RAISED", start, text, [rule.tag], None)


def apply_frame(
    state: AlertsState,
    rules: list[AlertRule],
    frame: dict[str, Any],
    now_wall_us: int,
    state_tags: frozenset[str] = frozenset(),
    codes: ms.StateMap | None = None,
) -> list[Alert]:
    """Evaluate the asset's rules (already matched with ``rules_for``) on one frame; Alert records out."""
    asset = frame["asset"]
    out: list[Alert] = []
    codes = ms.DEFAULT_STATE_MAP if codes is None else codes
    for rule in rules:
        if rule.kind is AlertKind.ANOMALY:
            continue
        tr = _tracker(state, rule)
        if rule.kind is AlertKind.STALE and tr["last_good_t"] is None:
            # the asset's first frame starts the clock: a tag that never arrives becomes stale too
            tr["last_good_t"], tr["last_good_wall"] = frame["scan_time"], now_wall_us
        watched = (set(state_tags) if not rule.tag else {rule.tag}) if rule.kind is AlertKind.STATE else {rule.tag}
        for s in frame["samples"]:
            if s["tag"] not in watched or s["quality"] != "GOOD":
                continue
            t = s["source_time"]
            rec: Alert | None = None
            if rule.kind is AlertKind.STATE:
                c = ms.classify(s["value"], codes)
                if c is None:
                    continue
                stopped = c[0] == ms.UNPLANNED_STOP
                minutes = rule.stop_longer_than_min or 0.0
                rec = step(
                    tr,
                    rule,
                    asset,
                    t,
                    stopped,
                    not stopped,
                    s["value"],
                    [s["tag"]],
                    f"unplanned stop ({c[1]}) longer than {minutes:g} min",
                    min_duration_us=max(int(minutes * 60 * US), int(rule.min_duration_s * US)),
                )
            elif rule.kind is AlertKind.STALE:
                if tr["last_good_t"] is None or t >= tr["last_good_t"]:
                    tr["last_good_t"], tr["last_good_wall"] = t, now_wall_us
                if tr["raised"]:
                    rec = step(tr, rule, asset, t, False, True, s["value"], [rule.tag], f"{rule.tag} is stale")
            else:
                v = _number(s["value"])
                if v is None:
                    continue
                rec = (_threshold if rule.kind is AlertKind.THRESHOLD else _rate)(tr, rule, asset, t, v)
            if rec is not None:
                out.append(rec)
        if rule.kind is AlertKind.STALE and frame["scan_time"] - tr["last_good_t"] > int(
            (rule.stale_after_s or 0) * US
        ):
            rec = _stale_check(tr, rule, asset, frame["scan_time"])
            if rec is not None:
                out.append(rec)
    return out


def tick(state: AlertsState, rules: list[AlertRule], asset: str, now_wall_us: int) -> list[Alert]:
    """Wall-clock staleness: the asset's stale rules whose tag has had no GOOD sample for stale_after_s."""
    out: list[Alert] = []
    for rule in rules:
        if rule.kind is not AlertKind.STALE:
            continue
        tr = state["rules"].get(rule.name)
        if tr is None or tr["last_good_wall"] is None:
            continue
        if now_wall_us - tr["last_good_wall"] > int((rule.stale_after_s or 0) * US):
            rec = _stale_check(tr, rule, asset, now_wall_us)
            if rec is not None:
                out.append(rec)
    return out


def apply_anomaly(state: AlertsState, rules: list[AlertRule], score: Mapping[str, Any]) -> list[Alert]:
    """Evaluate the anomaly rules (already matched to the score's asset) on one AnomalyScore record."""
    if score.get("warming_up"):
        return []
    out: list[Alert] = []
    top = [k for k, _ in sorted(score.get("contributions", {}).items(), key=lambda kv: -kv[1])[:3]]
    for rule in rules:
        if rule.kind is not AlertKind.ANOMALY:
            continue
        tr = _tracker(state, rule)
        s = float(score["score"])
        if rule.score_above is not None:
            raise_cond, clear_cond = s > rule.score_above, s <= rule.score_above - rule.hysteresis
        else:
            raise_cond = bool(score["is_anomaly"])
            clear_cond = not raise_cond
        tags = [rule.tag] if rule.tag else top
        text = f"anomaly score {s:.4g} from {score['model']}" + (f", driven by {', '.join(top)}" if top else "")
        rec = step(tr, rule, score["asset"], score["time"], raise_cond, clear_cond, s, tags, text)
        if rec is not None:
            out.append(rec)
    return out
