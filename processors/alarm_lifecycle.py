"""The alarm lifecycle after ISA-18.2 / IEC 62682, pure: one alert rule on one asset is one alarm.

State (one JSON-able dict per alarm, in the asset's worker state) and what moves it:

- the process: an Alert RAISED makes the alarm active and unacknowledged (ACTIVATED), CLEARED makes it
  inactive (CLEARED); a latched alarm then needs a new acknowledgement however it was acknowledged
  while active (LATCHED), another one that was not acknowledged returns to normal unacknowledged
  (RTN_UNACK);
- people, by commands: ACKNOWLEDGE (also resets a latched alarm), SHELVE for a duration (the shelf
  expires by itself: SHELF_EXPIRED on the clock), UNSHELVE, REMOVE_FROM_SERVICE, RETURN_TO_SERVICE;
- the design: while the asset's machine is in one of the rule's `suppressed_in` states (PLANNED_STOP by
  default) the alarm is SUPPRESSED.

The state shown is the first that applies of OUT_OF_SERVICE, SHELVED, SUPPRESSED, then UNACK / ACKED
(active), RTN_UNACK / LATCHED (inactive, unacknowledged), NORMAL. The condition is tracked throughout.

Annunciation: an activation while OUT_OF_SERVICE, SHELVED or SUPPRESSED is not annunciated: its Alert
gets `suppression` set and the alert sink delivers nothing. When the alarm comes back while still
active, the Alert is RAISED again (same alert_id, the time it came back) without suppression; a
CLEARED carries suppression only when its RAISED was never annunciated.

A command that cannot apply (unknown alarm, a role without the right, a shelve without a valid duration,
an acknowledgement of another incident than the current one, nothing to acknowledge, an older command
than one applied) changes nothing and yields a REJECTED event with the reason. Every transition is an
AlarmEvent (the audit trail, with who, when and the comment) and a new AlarmState record.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plantstream.core import roles
from plantstream.core.config import AlertRule
from plantstream.core.records import (
    AlarmCommand,
    AlarmEvent,
    AlarmEventKind,
    AlarmLifecycle,
    AlarmState,
    Alert,
    alarm_id,
    alert,
)

Alarm = dict[str, Any]
US = 1_000_000
DAY_US = 86_400 * US
MAX_ACTIVATIONS = 100  # activation times kept per alarm (the newest, within 24 h)
SET_ASIDE = ("OUT_OF_SERVICE", "SHELVED", "SUPPRESSED")


@dataclass
class Outcome:
    events: list[AlarmEvent] = field(default_factory=list)
    states: list[AlarmState] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)  # RAISED again when a set-aside alarm comes back

    def __iadd__(self, other: Outcome) -> Outcome:
        self.events += other.events
        self.states += other.states
        self.alerts += other.alerts
        return self


def new_alarm(rule: AlertRule, t: int) -> Alarm:
    return {
        "active": False,
        "acked": True,
        "alert_id": None,
        "active_since": None,
        "message": "",
        "kind": rule.kind.value,
        "severity": rule.severity,
        "tags": [],
        "value": None,
        "latched": rule.latched,
        "state": "NORMAL",
        "since": t,
        "acked_by": "",
        "acked_at": None,
        "ack_comment": "",
        "shelved_by": "",
        "shelved_until": None,
        "oos": False,
        "service_by": "",
        "comment": "",
        "suppressed": "",
        "activations": [],
        "count": 0,
        "last_cmd": None,
        "announced": True,
    }


def lifecycle(a: Alarm) -> AlarmLifecycle:
    if a["oos"]:
        return "OUT_OF_SERVICE"
    if a["shelved_until"] is not None:
        return "SHELVED"
    if a["suppressed"]:
        return "SUPPRESSED"
    if a["active"]:
        return "ACKED" if a["acked"] else "UNACK"
    if not a["acked"]:
        return "LATCHED" if a["latched"] else "RTN_UNACK"
    return "NORMAL"


def state_record(asset: str, rule: str, a: Alarm) -> AlarmState:
    """The AlarmState record (schemas/alarm_state.avsc) of one alarm."""
    return {
        "alarm": alarm_id(asset, rule),
        "asset": asset,
        "rule": rule,
        "kind": a["kind"],
        "severity": a["severity"],
        "state": a["state"],
        "active": a["active"],
        "acknowledged": a["acked"],
        "latched": a["latched"],
        "alert_id": a["alert_id"],
        "active_since": a["active_since"],
        "message": a["message"],
        "since": a["since"],
        "acked_by": a["acked_by"],
        "acked_at": a["acked_at"],
        "ack_comment": a["ack_comment"],
        "shelved_by": a["shelved_by"],
        "shelved_until": a["shelved_until"],
        "service_by": a["service_by"],
        "comment": a["comment"],
        "suppressed_reason": a["suppressed"],
        "activations": list(a["activations"]),
        "activation_count": a["count"],
    }


def _event(
    asset: str,
    rule: str,
    a: Alarm | None,
    t: int,
    kind: AlarmEventKind,
    before: str,
    *,
    command: Mapping[str, Any] | None = None,
    reason: str = "",
) -> AlarmEvent:
    alarm = alarm_id(asset, rule)
    command_id = command["command_id"] if command is not None else None
    # stable: the same transition emitted again after a restart has the same id (stores keep it once)
    eid = hashlib.sha256(f"{alarm}|{kind}|{t}|{command_id or ''}".encode()).hexdigest()[:24]
    return {
        "event_id": eid,
        "alarm": alarm,
        "asset": asset,
        "rule": rule,
        "time": t,
        "event": kind,
        "from_state": before,
        "to_state": a["state"] if a is not None else before,
        "user": command["user"] if command is not None else "",
        "comment": command.get("comment", "") if command is not None else "",
        "command_id": command_id,
        "reason": reason,
        "alert_id": a["alert_id"] if a is not None else None,
        "severity": a["severity"] if a is not None else "",
    }


def _moved(asset: str, rule: str, a: Alarm, t: int, kind: AlarmEventKind, before: str, **kw: Any) -> Outcome:
    """Record a transition: the new state (since t when it changed), its event, and, when the alarm comes back
    from being set aside while its condition is present, the Alert RAISED again."""
    a["state"] = lifecycle(a)
    if a["state"] != before:
        a["since"] = t
    out = Outcome([_event(asset, rule, a, t, kind, before, **kw)], [state_record(asset, rule, a)])
    if a["active"] and not a["announced"] and a["state"] not in SET_ASIDE:
        a["announced"] = True
        out.alerts.append(
            alert(
                alert_id=a["alert_id"],
                asset=asset,
                rule=rule,
                kind=a["kind"],
                state="RAISED",
                severity=a["severity"],
                time=t,
                message=a["message"],
                tags=a["tags"],
                value=a["value"],
            )
        )
    return out


def ensure(alarms: dict[str, Alarm], rules: Mapping[str, AlertRule], asset: str, t: int) -> Outcome:
    """Alarms for rules that have none yet (the first frame of an asset, or a rule added to the config): each
    starts NORMAL and its state is published, so readers of plant.alarm-state.v1 see every alarm."""
    out = Outcome()
    for name, rule in rules.items():
        if name not in alarms:
            a = alarms[name] = new_alarm(rule, t)
            out.states.append(state_record(asset, name, a))
    return out


def on_alert(alarms: dict[str, Alarm], rule: AlertRule, record: Alert) -> Outcome:
    """An Alert RAISED or CLEARED of the alarm's rule; sets the record's `suppression` (module doc)."""
    asset, name, t = record["asset"], record["rule"], record["time"]
    a = alarms.get(name)
    if a is None:
        a = alarms[name] = new_alarm(rule, t)
    before = a["state"]
    if record["state"] == "RAISED":
        a.update(
            active=True,
            acked=False,
            acked_by="",
            acked_at=None,
            ack_comment="",
            alert_id=record["alert_id"],
            active_since=t,
            message=record["message"],
            tags=list(record["tags"]),
            value=record["value"],
            count=a["count"] + 1,
        )
        recent = [x for x in a["activations"] if x > t - DAY_US]
        recent.append(t)
        a["activations"] = recent[-MAX_ACTIVATIONS:]
        held = lifecycle(a)
        a["announced"] = held not in SET_ASIDE
        record["suppression"] = "" if a["announced"] else held
        return _moved(asset, name, a, t, "ACTIVATED", before)
    a.update(active=False, active_since=None, message=record["message"])
    if a["latched"]:
        a["acked"] = False  # latched: acknowledged again after it cleared
    record["suppression"] = "" if a["announced"] else a["state"]
    return _moved(asset, name, a, t, "CLEARED", before)


def on_machine_state(
    alarms: dict[str, Alarm], rules: Mapping[str, AlertRule], asset: str, machine: str | None, t: int
) -> Outcome:
    """The machine's state class changed (None: unknown): suppression by design starts or ends."""
    out = Outcome()
    for name, rule in rules.items():
        a = alarms.get(name)
        if a is None:
            continue
        reason = f"machine in {machine}" if machine is not None and machine in rule.suppressed_in else ""
        if reason == a["suppressed"]:
            continue
        before = a["state"]
        a["suppressed"] = reason
        out += _moved(asset, name, a, t, "SUPPRESSED" if reason else "UNSUPPRESSED", before)
    return out


def tick(alarms: dict[str, Alarm], asset: str, now_us: int) -> Outcome:
    """The wall clock: shelves that expired bring their alarms back."""
    out = Outcome()
    for name, a in alarms.items():
        until = a["shelved_until"]
        if until is not None and until <= now_us:
            before = a["state"]
            a["shelved_until"], a["shelved_by"] = None, ""
            out += _moved(asset, name, a, until, "SHELF_EXPIRED", before)
    return out


def _rejected(asset: str, rule: str, a: Alarm | None, cmd: AlarmCommand, reason: str) -> Outcome:
    before = a["state"] if a is not None else ""
    return Outcome([_event(asset, rule, a, cmd["time"], "REJECTED", before, command=cmd, reason=reason)])


def rejected_event(asset: str, rule: str, cmd: AlarmCommand, reason: str) -> AlarmEvent:
    """The REJECTED event of a command refused before it reached an alarm (unknown asset, wrong partition)."""
    return _event(asset, rule, None, cmd["time"], "REJECTED", "", command=cmd, reason=reason)


def on_command(
    alarms: dict[str, Alarm],
    rules: Mapping[str, AlertRule],
    asset: str,
    cmd: AlarmCommand,
    now_us: int,
    max_shelve_s: float,
) -> Outcome:
    """Apply one operator command, or refuse it (a REJECTED event with the reason; nothing changes)."""
    name, action = cmd["rule"], cmd["action"]
    rule = rules.get(name)
    if rule is None:
        known = ", ".join(sorted(rules)) or "none"
        return _rejected(asset, name, None, cmd, f"no alarm {name!r} on {asset} (its alarms: {known})")
    a = alarms.get(name)
    if a is None:
        a = alarms[name] = new_alarm(rule, cmd["time"])
    right = roles.ACTION_RIGHT[action]
    if not roles.may(cmd["role"], right):
        who = f"{cmd['user']} ({cmd['role'] or 'no role'})"
        return _rejected(
            asset, name, a, cmd, f"{who} may not {action}: it needs {' or '.join(roles.roles_with(right))}"
        )
    if a["last_cmd"] is not None and cmd["time"] < a["last_cmd"]:
        return _rejected(
            asset, name, a, cmd, f"out of order: a later command (of {a['last_cmd']} µs) was applied already"
        )
    before = a["state"]
    if action == "ACKNOWLEDGE":
        if cmd["alert_id"] and cmd["alert_id"] != a["alert_id"]:
            return _rejected(
                asset, name, a, cmd, f"out of date: incident {cmd['alert_id']} is not the alarm's current one "
                f"({a['alert_id']}); look again and acknowledge what is shown now",
            )  # fmt: skip
        if a["acked"]:
            by = f", acknowledged by {a['acked_by']}" if a["acked_by"] else ""
            return _rejected(asset, name, a, cmd, f"nothing to acknowledge: the alarm is {before}{by}")
        a.update(acked=True, acked_by=cmd["user"], acked_at=cmd["time"], ack_comment=cmd["comment"])
        kind: AlarmEventKind = "ACKNOWLEDGED"
    elif action == "SHELVE":
        d = cmd["shelve_duration_s"]
        if d is None or not math.isfinite(d) or d <= 0:
            return _rejected(asset, name, a, cmd, "SHELVE needs shelve_duration_s: how long, in seconds (> 0)")
        if d > max_shelve_s:
            return _rejected(
                asset, name, a, cmd, f"a shelf lasts at most {max_shelve_s:g} s (pipeline.alarms.max_shelve_s)"
            )
        if a["oos"]:
            return _rejected(asset, name, a, cmd, "the alarm is out of service: return it to service first")
        until = cmd["time"] + int(d * US)
        if until <= now_us:
            return _rejected(asset, name, a, cmd, "the shelf would have expired already: the command came too late")
        a.update(shelved_until=until, shelved_by=cmd["user"], comment=cmd["comment"])
        kind = "SHELVED"
    elif action == "UNSHELVE":
        if a["shelved_until"] is None:
            return _rejected(asset, name, a, cmd, f"the alarm is not shelved (it is {before})")
        a.update(shelved_until=None, shelved_by="")
        kind = "UNSHELVED"
    elif action == "REMOVE_FROM_SERVICE":
        if a["oos"]:
            return _rejected(asset, name, a, cmd, f"the alarm is out of service already (by {a['service_by']})")
        a.update(oos=True, service_by=cmd["user"], comment=cmd["comment"], shelved_until=None, shelved_by="")
        kind = "REMOVED_FROM_SERVICE"
    else:  # RETURN_TO_SERVICE
        if not a["oos"]:
            return _rejected(asset, name, a, cmd, f"the alarm is in service (it is {before})")
        a.update(oos=False, service_by="")
        kind = "RETURNED_TO_SERVICE"
    a["last_cmd"] = cmd["time"]
    return _moved(asset, name, a, cmd["time"], kind, before, command=cmd)
