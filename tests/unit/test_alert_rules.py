"""Alert rules: every kind, hysteresis, minimum duration, one RAISED + one CLEARED per incident."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from plantstream.core.config import AlertRule
from processors import alert_rules as ar

S = 1_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
ASSET = "demo.springfield.stamping.line1.press1"


def rule(**kw: Any) -> AlertRule:
    return AlertRule(**{"name": "r", "asset": ASSET, **kw})


def frame(t_s: float, quality: str = "GOOD", **values: Any) -> dict:
    t = T0 + int(t_s * S)
    return {
        "asset": ASSET,
        "scan_time": t,
        "samples": [{"tag": k, "source_time": t, "value": v, "quality": quality} for k, v in values.items()],
    }


def feed(rules: list[AlertRule], frames: list[dict], state: dict | None = None) -> list[dict]:
    state = ar.new_state() if state is None else state
    out: list[dict] = []
    for f in frames:
        out += ar.apply_frame(state, rules, f, now_wall_us=0, state_tags=frozenset({"state"}))
        json.dumps(state)  # it must fit in a Faust table
    return out


def summary(alerts: list[dict]) -> list[tuple[str, float]]:
    return [(a["state"], (a["time"] - T0) / S) for a in alerts]


def test_threshold_hysteresis_gives_one_incident() -> None:
    r = rule(kind="threshold", tag="oil", above=75, hysteresis=2, severity="CRITICAL")
    temps = [70, 76, 74, 76.5, 73.5, 72.9, 80, 70]
    out = feed([r], [frame(i, oil=v) for i, v in enumerate(temps)])
    # 76 > 75 raises at 1 s; 74 and 73.5 stay above 75 - 2 = 73 (hysteresis); 72.9 clears at 5 s; 80 is a new incident
    assert summary(out) == [("RAISED", 1), ("CLEARED", 5), ("RAISED", 6), ("CLEARED", 7)]
    assert out[0]["alert_id"] == out[1]["alert_id"] != out[2]["alert_id"] == out[3]["alert_id"]
    assert out[0]["alert_id"] == ar.alert_id("r", ASSET, T0 + 1 * S)
    assert out[0]["severity"] == "CRITICAL" and out[0]["kind"] == "threshold" and out[0]["value"] == 76.0
    assert out[0]["tags"] == ["oil"] and "above 75" in out[0]["message"]


def test_threshold_min_duration_and_below() -> None:
    r = rule(kind="threshold", tag="p", below=2.0, min_duration_s=3)
    # below 2 from 1 s; a blip back to 2.5 at 3 s resets the clock; 4..7 s holds: raised at 4 + 3 = 7 s
    values = [3, 1, 1, 2.5, 1, 1, 1, 1, 1, 2.1]
    out = feed([r], [frame(i, p=v) for i, v in enumerate(values)])
    assert summary(out) == [("RAISED", 7), ("CLEARED", 9)]
    assert out[0]["alert_id"] == ar.alert_id("r", ASSET, T0 + 4 * S)  # the incident began at 4 s


def test_bad_samples_and_repeats_do_not_duplicate() -> None:
    r = rule(kind="threshold", tag="oil", above=75)
    frames = [frame(0, oil=80), frame(1, oil=81), frame(2, "BAD", oil=None), frame(3, oil=90), frame(4, oil=60)]
    out = feed([r], frames)
    assert summary(out) == [("RAISED", 0), ("CLEARED", 4)]


def test_rate_of_change() -> None:
    r = rule(kind="rate_of_change", tag="vib", rate_per_s=1.0, span_s=2, hysteresis=0.2)
    # rate over the last 2 s: at 3 s (10 - 1) / 2 = 4.5/s > 1 raises; later flat values bring it to 0
    values = [1, 1, 1, 10, 10, 10, 10]
    out = feed([r], [frame(i, vib=v) for i, v in enumerate(values)])
    assert summary(out) == [("RAISED", 2 + 1), ("CLEARED", 5)]
    assert out[0]["value"] == pytest.approx(4.5)


def test_stale_on_event_time_and_wall_clock() -> None:
    r = rule(kind="stale", tag="oil", stale_after_s=5)
    st = ar.new_state()
    out = feed([r], [frame(0, oil=1), frame(3, other=1), frame(5, other=1)], st)
    assert out == []
    # 6 s after the last GOOD sample (at 0): stale since 0 + 5 s
    out = feed([r], [frame(6, "BAD", oil=None), frame(7, other=1)], st)
    assert summary(out) == [("RAISED", 5)]
    out = feed([r], [frame(8, oil=2)], st)
    assert summary(out) == [("CLEARED", 8)]
    # wall clock: nothing arrives at all; the processor's timer calls tick
    assert ar.tick(st, [r], ASSET, now_wall_us=4 * S) == []
    ticked = ar.tick(st, [r], ASSET, now_wall_us=6 * S)
    assert summary(ticked) == [("RAISED", 13)]  # event time: last GOOD (8 s) + 5 s
    assert ar.tick(st, [r], ASSET, now_wall_us=7 * S) == []  # raised once
    # the same incident seen on event time later yields no second RAISED
    assert feed([r], [frame(20, other=1)], st) == []
    out = feed([r], [frame(21, oil=3)], st)
    assert summary(out) == [("CLEARED", 21)] and out[0]["alert_id"] == ticked[0]["alert_id"]


def test_stale_when_the_tag_never_arrives() -> None:
    r = rule(kind="stale", tag="oil", stale_after_s=5)
    out = feed([r], [frame(i, other=1) for i in range(8)])
    assert summary(out) == [("RAISED", 5)]


def test_state_rule_unplanned_stop_longer_than() -> None:
    r = rule(kind="state", stop_longer_than_min=1, severity="WARNING")
    # a 30 s stop (4 at 10..40) stays silent; a stop from 100 s raises at 160 s and clears at 200 s
    states = {0: 1, 10: 4, 20: 4, 40: 1, 100: 4, 130: 3, 140: 4, 160: 4, 170: 4, 200: 2}
    out = feed([r], [frame(t, state=v) for t, v in states.items()])
    # the planned stop at 130 s ends the unplanned run; the next one starts at 140 s and would reach
    # 1 min at 200 s, but by then the machine is idle: nothing raised
    assert out == []
    states = {0: 1, 100: 4, 130: 4, 160: 4, 170: 4, 200: 2}
    out = feed([r], [frame(t, state=v) for t, v in states.items()])
    assert summary(out) == [("RAISED", 160), ("CLEARED", 200)]
    assert out[0]["alert_id"] == ar.alert_id("r", ASSET, T0 + 100 * S) and out[0]["tags"] == ["state"]


def test_anomaly_scores() -> None:
    r = rule(kind="anomaly", score_above=10, hysteresis=2)

    def score(t: int, s: float, warm: bool = False) -> dict:
        return {
            "asset": ASSET,
            "time": T0 + t * S,
            "model": "hotelling-t2/1",
            "score": s,
            "threshold": 10.0,
            "is_anomaly": s > 10,
            "warming_up": warm,
            "contributions": {"vib": 0.7, "temp": 0.3},
        }

    st = ar.new_state()
    out: list[dict] = []
    for t, s, w in [(0, 50, True), (1, 5, False), (2, 12, False), (3, 9, False), (4, 7.5, False), (5, 11, False)]:
        out += ar.apply_anomaly(st, [r], score(t, s, w))
    # warm-up ignored; 12 raises; 9 is inside the hysteresis band (> 8); 7.5 clears; 11 raises again
    assert summary(out) == [("RAISED", 2), ("CLEARED", 4), ("RAISED", 5)]
    assert out[0]["tags"] == ["vib", "temp"] and out[0]["kind"] == "anomaly"


def test_rules_match_assets_by_glob_and_config_is_checked() -> None:
    rules = [
        rule(kind="threshold", tag="x", above=1, asset="demo.*.*.*.press*"),
        rule(kind="stale", tag="y", stale_after_s=1, asset="other.a.b.c.d"),
    ]
    assert [r.kind.value for r in ar.rules_for(rules, ASSET)] == ["threshold"]
    with pytest.raises(ValidationError, match="needs above"):
        rule(kind="threshold", tag="x")
    with pytest.raises(ValidationError, match="needs tag"):
        rule(kind="stale", stale_after_s=3)
    with pytest.raises(ValidationError, match="stop_longer_than_min"):
        rule(kind="state")


def test_config_rejects_duplicate_names_and_unmatched_assets(clean_env: None) -> None:
    import yaml

    from plantstream.core.config import DEMO_CONFIG, Settings

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    r = {"name": "x", "asset": "demo.*", "kind": "threshold", "tag": "t", "above": 1}
    raw["pipeline"]["alerts"] = [r, r]
    with pytest.raises(ValidationError, match="used twice"):
        Settings(**raw)
    raw["pipeline"]["alerts"] = [{**r, "asset": "nowhere.*"}]
    with pytest.raises(ValidationError, match="matches no asset"):
        Settings(**raw)
    raw["plant"]["shifts"] = [{"name": "a", "start": 360, "end": "14:00"}]
    with pytest.raises(ValidationError, match="quoted"):
        Settings(**raw)
