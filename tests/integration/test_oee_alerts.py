"""OEE windows and alert rules through the real worker, broker and registry (`plantstream process`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from processors import alert_rules, oee
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop

pytestmark = pytest.mark.integration

S = 1_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: replayed history
PRESS = "demo.springfield.stamping.line1.press1"
WINDOW_S = 60
END_S = 186  # watermark 185 s closes [0, 60), [60, 120), [120, 180)
ALERTS = [
    {"name": "oil-hot", "asset": PRESS, "kind": "threshold", "tag": "oil_temperature", "above": 75, "hysteresis": 2},
    {"name": "stop-long", "asset": "demo.springfield.*", "kind": "state", "stop_longer_than_min": 0.1},
]


def state_at(t: int) -> int:
    # running, unplanned stop 20-30 s, running, planned stop 45-50 s, running
    return 4 if 20 <= t < 30 else 3 if 45 <= t < 50 else 1


def oil_at(t: int) -> float:
    # one excursion 70-79 s; 74 at 80 s is inside the hysteresis band (> 73), 72 at 81 s clears
    return 77.0 if 70 <= t < 80 else 74.0 if t == 80 else 72.0 if t > 80 else 70.0


def make_frames() -> list[dict]:
    frames = []
    for t_s in range(END_S):
        t = T0 + t_s * S
        frames.append(
            {
                "asset": PRESS,
                "device": "press1-plc",
                "seq": t_s,
                "producer_id": "test",
                "scan_time": t,
                "historical": True,
                "buffered": False,
                "samples": [
                    {"tag": "state", "source_time": t, "value": state_at(t_s), "quality": "GOOD", "unit": ""},
                    # a uint32 stroke counter that rolls over at 18 s
                    {
                        "tag": "strokes_total",
                        "source_time": t,
                        "value": (4294967290 + t_s // 3) % 2**32,
                        "quality": "GOOD",
                        "unit": "",
                    },
                    {
                        "tag": "oil_temperature",
                        "source_time": t,
                        "value": oil_at(t_s),
                        "quality": "GOOD",
                        "unit": "degC",
                    },
                ],
            }
        )
    return frames


def recompute(settings: Settings, frames: list[dict]) -> tuple[list[dict], list[dict]]:
    profile = oee.profile_for(settings, PRESS)
    assert profile is not None
    rules = alert_rules.rules_for(settings.pipeline.alerts, PRESS)
    st, ast = oee.new_state(), alert_rules.new_state()
    windows: list[dict] = []
    alerts: list[dict] = []
    for f in frames:
        windows += oee.apply_frame(st, f, profile, WINDOW_S * S, 0)
        alerts += alert_rules.apply_frame(ast, rules, f, time.time_ns() // 1000, profile.state_tags, profile.codes)
    return windows, alerts


def test_oee_windows_and_alerts(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": WINDOW_S, "grace_s": 0}, alerts=ALERTS)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    frames = make_frames()
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in frames])
    want_windows, want_alerts = recompute(settings, frames)
    assert len(want_windows) == 3 and len(want_alerts) == 4

    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        oee_msgs = consume_all(settings, settings.topic(topics.OEE), len(want_windows), timeout=90)
        alert_msgs = consume_all(settings, settings.topic(topics.ALERTS), len(want_alerts), timeout=30)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    dec = decoder(settings, schemas.OEE_WINDOW)
    got = [dec.decode(m.value()) for m in oee_msgs]
    assert all(m.key().decode() == PRESS for m in oee_msgs)
    assert len(got) == len(want_windows), got  # each window exactly once
    by_start = {r["window_start"]: r for r in got}
    for want in want_windows:
        rec = dict(by_start[want["window_start"]])
        assert rec.pop("downtime_by_reason_s") == pytest.approx(want["downtime_by_reason_s"])
        assert rec == pytest.approx({k: v for k, v in want.items() if k != "downtime_by_reason_s"})

    # [0, 60) by hand: RUNNING 0-20, 30-45, 50-60 = 45 s; UNPLANNED 20-30 = 10 s; PLANNED 45-50 = 5 s
    # PBT = 60 - 5 = 55, APT = 45, A = 45/55; strokes: baseline 4294967290 at 0 s, (4294967290 + 19) mod 2^32
    # at 59 s = 13: PQ = 19 across the rollover; E = 2.0 s x 19 / 45; QR = 1 (total counter only)
    w0 = by_start[T0]
    assert w0["window_end"] == T0 + 60 * S and w0["shift"] == ""
    assert w0["planned_busy_time_s"] == 55 and w0["actual_production_time_s"] == 45
    assert w0["produced_quantity"] == 19 and w0["good_quantity"] == 19 and w0["scrap_quantity"] == 0
    assert w0["availability"] == pytest.approx(45 / 55)
    assert w0["effectiveness"] == pytest.approx(2.0 * 19 / 45)
    assert w0["quality_ratio"] == 1
    assert w0["oee"] == pytest.approx(45 / 55 * 38 / 45)
    assert w0["failures"] == 1 and w0["mtbf_s"] == 45 and w0["mttr_s"] == 10
    assert w0["downtime_by_reason_s"] == {"4": 10.0}
    # [60, 120): running throughout; strokes 59 // 3 = 19 -> 119 // 3 = 39: PQ = 20
    w1 = by_start[T0 + 60 * S]
    assert w1["availability"] == 1 and w1["failures"] == 0 and w1["produced_quantity"] == 20

    adec = decoder(settings, schemas.ALERT)
    alerts = [adec.decode(m.value()) for m in alert_msgs]
    assert len(alerts) == len(want_alerts), alerts
    assert sorted((a["alert_id"], a["state"], a["time"]) for a in alerts) == sorted(
        (a["alert_id"], a["state"], a["time"]) for a in want_alerts
    )
    oil = [a for a in alerts if a["rule"] == "oil-hot"]
    assert [(a["state"], a["time"]) for a in oil] == [("RAISED", T0 + 70 * S), ("CLEARED", T0 + 81 * S)]
    assert oil[0]["alert_id"] == oil[1]["alert_id"] and oil[0]["value"] == 77.0
    stop_alerts = [a for a in alerts if a["rule"] == "stop-long"]
    # the stop began at 20 s; 6 s later (26 s) it is longer than 0.1 min; it ends at 30 s
    assert [(a["state"], a["time"]) for a in stop_alerts] == [("RAISED", T0 + 26 * S), ("CLEARED", T0 + 30 * S)]
