"""The ISA-18.2 alarm lifecycle (processors/alarm_lifecycle.py) and its figures (plantstream.core.alarm_figures)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from plantstream.core import alarm_figures
from plantstream.core.config import AlertRule
from plantstream.core.records import AlarmCommand, Alert, alarm_command, alert
from processors import alarm_lifecycle as lc

S = 1_000_000
T0 = 1_767_225_600 * S
ASSET = "a.b.c.d.e"
HOT = AlertRule(name="hot", asset=ASSET, kind="threshold", tag="t", above=80, severity="CRITICAL")
LATCH = AlertRule(name="latch", asset=ASSET, kind="threshold", tag="t", above=90, latched=True)
RULES = {"hot": HOT, "latch": LATCH}


def raised(rule: str, t_s: float, alert_id: str = "i1", state: str = "RAISED") -> Alert:
    return alert(
        alert_id=alert_id,
        asset=ASSET,
        rule=rule,
        kind="threshold",
        state=state,  # type: ignore[arg-type]
        severity="CRITICAL",
        time=T0 + int(t_s * S),
        message=f"{rule} {state}",
        tags=["t"],
        value=85.0,
    )


def cmd(action: str, t_s: float, rule: str = "hot", role: str = "operator", **kw: Any) -> AlarmCommand:
    return alarm_command(
        command_id=f"c-{action}-{t_s}",
        asset=ASSET,
        rule=rule,
        action=action,  # type: ignore[arg-type]
        user="alice",
        role=role,
        time=T0 + int(t_s * S),
        **kw,
    )


def fresh() -> dict[str, lc.Alarm]:
    alarms: dict[str, lc.Alarm] = {}
    out = lc.ensure(alarms, RULES, ASSET, T0)
    assert [s["state"] for s in out.states] == ["NORMAL", "NORMAL"]  # every alarm published once
    return alarms


def apply(alarms: dict[str, lc.Alarm], c: AlarmCommand, now_s: float | None = None) -> lc.Outcome:
    now = c["time"] if now_s is None else T0 + int(now_s * S)
    return lc.on_command(alarms, RULES, ASSET, c, now, 3600)


def test_activation_acknowledgement_and_return_to_normal() -> None:
    alarms = fresh()
    a = raised("hot", 1)
    out = lc.on_alert(alarms, HOT, a)
    assert a["suppression"] == "" and alarms["hot"]["state"] == "UNACK"
    assert [(e["event"], e["from_state"], e["to_state"]) for e in out.events] == [("ACTIVATED", "NORMAL", "UNACK")]
    out = apply(alarms, cmd("ACKNOWLEDGE", 2, alert_id="i1", comment="on it"))
    ev = out.events[0]
    assert (ev["event"], ev["to_state"], ev["user"], ev["comment"]) == ("ACKNOWLEDGED", "ACKED", "alice", "on it")
    st = out.states[0]
    assert (st["state"], st["acked_by"], st["acked_at"], st["alarm"]) == ("ACKED", "alice", T0 + 2 * S, "a.b.c.d.e/hot")
    lc.on_alert(alarms, HOT, raised("hot", 3, state="CLEARED"))
    assert alarms["hot"]["state"] == "NORMAL"


def test_returned_to_normal_unacknowledged_then_acknowledged() -> None:
    alarms = fresh()
    lc.on_alert(alarms, HOT, raised("hot", 1))
    lc.on_alert(alarms, HOT, raised("hot", 2, state="CLEARED"))
    assert alarms["hot"]["state"] == "RTN_UNACK"
    assert apply(alarms, cmd("ACKNOWLEDGE", 3)).states[0]["state"] == "NORMAL"


def test_a_latched_alarm_stays_until_acknowledged_after_it_cleared() -> None:
    alarms = fresh()
    lc.on_alert(alarms, LATCH, raised("latch", 1))
    apply(alarms, cmd("ACKNOWLEDGE", 2, rule="latch"))
    assert alarms["latch"]["state"] == "ACKED"
    lc.on_alert(alarms, LATCH, raised("latch", 3, state="CLEARED"))
    assert alarms["latch"]["state"] == "LATCHED"  # the acknowledgement while active does not reset it
    out = apply(alarms, cmd("ACKNOWLEDGE", 4, rule="latch"))
    assert (out.events[0]["from_state"], out.states[0]["state"]) == ("LATCHED", "NORMAL")


def test_a_shelved_alarm_is_not_annunciated_and_comes_back_when_the_shelf_expires() -> None:
    alarms = fresh()
    out = apply(alarms, cmd("SHELVE", 0, shelve_duration_s=60, comment="sensor being replaced"))
    assert out.states[0]["state"] == "SHELVED" and out.states[0]["shelved_until"] == T0 + 60 * S
    a = raised("hot", 10)
    lc.on_alert(alarms, HOT, a)
    assert a["suppression"] == "SHELVED" and alarms["hot"]["state"] == "SHELVED" and alarms["hot"]["active"]
    assert lc.tick(alarms, ASSET, T0 + 59 * S).events == []
    out = lc.tick(alarms, ASSET, T0 + 61 * S)
    assert [(e["event"], e["from_state"], e["to_state"]) for e in out.events] == [("SHELF_EXPIRED", "SHELVED", "UNACK")]
    # still active: RAISED again, same incident, now annunciated
    assert [(r["alert_id"], r["state"], r["suppression"], r["time"]) for r in out.alerts] == [
        ("i1", "RAISED", "", T0 + 60 * S)
    ]
    c = raised("hot", 70, state="CLEARED")
    lc.on_alert(alarms, HOT, c)
    assert c["suppression"] == ""  # its RAISED went out: so does the CLEARED


def test_cleared_while_shelved_is_never_annunciated() -> None:
    alarms = fresh()
    apply(alarms, cmd("SHELVE", 0, shelve_duration_s=60))
    r, c = raised("hot", 5), raised("hot", 6, state="CLEARED")
    lc.on_alert(alarms, HOT, r)
    lc.on_alert(alarms, HOT, c)
    assert (r["suppression"], c["suppression"]) == ("SHELVED", "SHELVED")
    out = apply(alarms, cmd("UNSHELVE", 7))
    assert out.alerts == [] and out.states[0]["state"] == "RTN_UNACK"


def test_suppressed_by_design_while_the_machine_is_in_a_planned_stop() -> None:
    alarms = fresh()
    out = lc.on_machine_state(alarms, RULES, ASSET, "PLANNED_STOP", T0)
    assert {e["event"] for e in out.events} == {"SUPPRESSED"}
    assert alarms["hot"]["state"] == "SUPPRESSED" and alarms["hot"]["suppressed"] == "machine in PLANNED_STOP"
    a = raised("hot", 1)
    lc.on_alert(alarms, HOT, a)
    assert a["suppression"] == "SUPPRESSED"
    out = lc.on_machine_state(alarms, RULES, ASSET, "RUNNING", T0 + 5 * S)
    assert [r["state"] for r in out.alerts] == ["RAISED"] and alarms["hot"]["state"] == "UNACK"
    # a rule that is never suppressed
    never = AlertRule(name="hot", asset=ASSET, kind="threshold", tag="t", above=80, suppressed_in=[])
    assert lc.on_machine_state(alarms, {"hot": never}, ASSET, "PLANNED_STOP", T0 + 6 * S).events == []


def test_out_of_service_needs_an_admin() -> None:
    alarms = fresh()
    out = apply(alarms, cmd("REMOVE_FROM_SERVICE", 1))
    assert out.events[0]["event"] == "REJECTED" and out.states == []
    assert out.events[0]["reason"] == "alice (operator) may not REMOVE_FROM_SERVICE: it needs admin"
    out = apply(alarms, cmd("REMOVE_FROM_SERVICE", 2, role="admin", comment="decommissioned"))
    assert out.states[0]["state"] == "OUT_OF_SERVICE" and out.states[0]["service_by"] == "alice"
    a = raised("hot", 3)
    lc.on_alert(alarms, HOT, a)
    assert a["suppression"] == "OUT_OF_SERVICE"
    out = apply(alarms, cmd("RETURN_TO_SERVICE", 4, role="admin"))
    assert out.states[0]["state"] == "UNACK" and out.alerts[0]["state"] == "RAISED"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (cmd("ACKNOWLEDGE", 5, rule="nope"), "no alarm 'nope' on a.b.c.d.e (its alarms: hot, latch)"),
        (cmd("SHELVE", 5), "SHELVE needs shelve_duration_s: how long, in seconds (> 0)"),
        (cmd("SHELVE", 5, shelve_duration_s=-1), "SHELVE needs shelve_duration_s: how long, in seconds (> 0)"),
        (cmd("SHELVE", 5, shelve_duration_s=7200), "a shelf lasts at most 3600 s (pipeline.alarms.max_shelve_s)"),
        (cmd("ACKNOWLEDGE", 5, role="viewer"), "alice (viewer) may not ACKNOWLEDGE: it needs operator or admin"),
        (cmd("ACKNOWLEDGE", 5, alert_id="old"), "out of date: incident old is not the alarm's current one (i1)"),
        (cmd("ACKNOWLEDGE", 1), "out of order: a later command"),
        (cmd("UNSHELVE", 5), "the alarm is not shelved (it is ACKED)"),
        (cmd("RETURN_TO_SERVICE", 5, role="admin"), "the alarm is in service (it is ACKED)"),
    ],
)
def test_bad_commands_are_refused_with_a_reason_and_change_nothing(command: AlarmCommand, reason: str) -> None:
    alarms = fresh()
    lc.on_alert(alarms, HOT, raised("hot", 1))
    apply(alarms, cmd("ACKNOWLEDGE", 2))
    before = copy.deepcopy(alarms)
    out = apply(alarms, command)
    assert [e["event"] for e in out.events] == ["REJECTED"] and out.states == [] and out.alerts == []
    assert out.events[0]["reason"].startswith(reason), out.events[0]["reason"]
    assert out.events[0]["command_id"] == command["command_id"]
    assert alarms == before


def test_nothing_to_acknowledge_and_a_command_too_late_for_its_shelf() -> None:
    alarms = fresh()
    out = apply(alarms, cmd("ACKNOWLEDGE", 1))
    assert out.events[0]["reason"] == "nothing to acknowledge: the alarm is NORMAL"
    out = apply(alarms, cmd("SHELVE", 1, shelve_duration_s=10), now_s=20)
    assert out.events[0]["reason"] == "the shelf would have expired already: the command came too late"


def test_event_ids_are_stable_and_the_state_stays_json() -> None:
    a1, a2 = fresh(), fresh()
    e1 = lc.on_alert(a1, HOT, raised("hot", 1)).events[0]
    e2 = lc.on_alert(a2, HOT, raised("hot", 1)).events[0]
    assert e1["event_id"] == e2["event_id"]
    assert json.loads(json.dumps(a1)) == a1


def test_figures_rate_standing_frequent_and_chattering() -> None:
    now = T0 + 3600 * S
    rows = [
        {"alarm": "x/chatter", "activations": [now - 50 * S, now - 30 * S, now - 10 * S], "active": True},
        {"alarm": "x/slow", "activations": [now - 3000 * S, now - 20 * S], "active": False, "state": "SHELVED"},
        {"alarm": "x/stale", "activations": [], "active": True, "active_since": now - 2 * 86_400 * S},
        {"alarm": "x/old", "activations": [now - 2 * 86_400 * S], "active": False},
    ]
    f = alarm_figures.figures(rows, now)
    assert f["per_10min"] == 4 and f["activations_24h"] == 5
    assert f["standing"] == 2 and f["stale"] == 1 and f["shelved"] == 1
    assert f["chattering"] == ["x/chatter"]
    assert [(m["alarm"], m["activations"]) for m in f["most_frequent"]] == [("x/chatter", 3), ("x/slow", 2)]
    assert f["most_frequent"][0]["share"] == pytest.approx(0.6)
    assert f["avg_per_10min_24h"] == pytest.approx(5 / 144)
