"""Pure rules of alert delivery: routing, backoff, rate limiting, batching, formats, config errors."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantstream.core.config import (
    DEMO_CONFIG,
    AlertingSettings,
    AlertRetrySettings,
    ConfigError,
    WebhookChannel,
    load_config,
)
from sinks.alerts import formatting as fmt
from sinks.alerts.delivery_log import DeliveryLog
from sinks.alerts.routing import TokenBucket, backoff_s, plan_batch, routes_to

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


def alert(alert_id: str = "a1", state: str = "RAISED", severity: str = "WARNING", **kw: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "asset": kw.get("asset", "acme.spr.stamping.line1.press1"),
        "rule": kw.get("rule", "temp_high"),
        "kind": "threshold",
        "state": state,
        "severity": severity,
        "time": kw.get("time", T0),
        "message": "temperature above 80 C",
        "tags": ["temp"],
        "value": kw.get("value", 81.5),
    }


def hook(**kw: Any) -> WebhookChannel:
    return WebhookChannel(name=kw.pop("name", "w"), url="http://127.0.0.1:1/x", **kw)


def test_routing_by_severity_and_asset_glob() -> None:
    ch = hook(min_severity="WARNING", assets=["acme.spr.stamping.*", "acme.*.paint.line2.*"])
    assert routes_to(ch, alert(severity="WARNING"))
    assert routes_to(ch, alert(severity="CRITICAL"))
    assert not routes_to(ch, alert(severity="INFO"))
    assert routes_to(ch, alert(asset="acme.x.paint.line2.robot"))
    assert not routes_to(ch, alert(asset="acme.x.paint.line1.robot"))
    assert routes_to(hook(), alert(severity="INFO", asset="any.thing.at.all.here"))


def test_backoff_doubles_and_caps() -> None:
    r = AlertRetrySettings(initial_s=0.5, max_s=3.0, max_attempts=9)
    assert [backoff_s(n, r) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_token_bucket_limits_and_refills() -> None:
    b = TokenBucket(rate_per_min=60, burst=2)  # one a second
    assert b.available(100.0) == 2
    b.take(100.0)
    b.take(100.0)
    assert b.available(100.0) == 0
    assert b.wait_s(100.0) == pytest.approx(1.0)
    assert b.available(100.5) == 0
    assert b.available(101.0) == 1
    assert b.available(1000.0) == 2  # never above the burst
    unlimited = TokenBucket(None, 1)
    unlimited.take(0.0, 50)
    assert unlimited.available(0.0) > 1000 and unlimited.wait_s(0.0) == 0


def test_plan_batch_coalesces_a_flood() -> None:
    assert plan_batch(3, 5, True) == "each"
    assert plan_batch(30, 5, True) == "digest"
    assert plan_batch(30, 5, False) == "each"
    assert plan_batch(3, 0, True) == "wait"


def test_generic_slack_teams_bodies() -> None:
    a = alert()
    g = fmt.webhook_body("generic", [a])
    assert g["alert_id"] == "a1" and g["time"] == "2026-01-01T00:00:00+00:00" and g["time_us"] == T0
    s = fmt.webhook_body("slack", [a])
    assert "WARNING RAISED" in s["text"] and s["blocks"][0]["type"] == "section"
    assert "81.5" in s["blocks"][1]["text"]["text"]
    t = fmt.webhook_body("teams", [alert(state="CLEARED", severity="CRITICAL")])
    card = t["attachments"][0]
    assert t["type"] == "message" and card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["body"][0]["color"] == "Good"
    digest = fmt.webhook_body("generic", [a, alert("a2", severity="CRITICAL")])
    assert digest["digest"] is True and digest["count"] == 2
    assert "2 alert state changes" in fmt.webhook_body("slack", [a, alert("a2", severity="CRITICAL")])["text"]


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = fmt.encode_body(fmt.webhook_body("generic", [alert()]))
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert fmt.sign(body, "k3y") == f"sha256={expected}"
    assert fmt.sign(body + b" ", "k3y") != fmt.sign(body, "k3y")


def test_email_subject_and_mqtt_topic() -> None:
    m = fmt.email_message([alert(severity="CRITICAL")], "p@x.io", ["a@x.io", "b@x.io"])
    assert m["Subject"] == "[plantstream] CRITICAL RAISED acme.spr.stamping.line1.press1 temp_high"
    assert m["To"] == "a@x.io, b@x.io" and "81.5" in m.get_content()
    digest = fmt.email_message([alert(), alert("a2", severity="CRITICAL")], "p@x.io", ["a@x.io"])
    assert digest["Subject"] == "[plantstream] CRITICAL 2 alert state changes"
    topic = fmt.mqtt_topic("plant/alerts/{asset}/{severity}/{rule}", alert(rule="a/b#"))
    assert topic == "plant/alerts/acme.spr.stamping.line1.press1/WARNING/a_b_"
    assert json.loads(fmt.mqtt_payload(alert()))["state"] == "RAISED"


def test_delivery_log_records_once_and_orders_raise_before_clear(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "d.db")
    chans = [hook(name="w1"), hook(name="crit", min_severity="CRITICAL")]
    assert log.record([alert(), alert(state="CLEARED", time=T0 + 5)], chans, 0.0) == 2
    assert log.record([alert(), alert(state="CLEARED", time=T0 + 5)], chans, 0.0) == 0  # redelivery: no-op
    due = log.due("w1", 1.0)
    assert [d.state for d in due] == ["RAISED"]  # the clear waits for its raise
    log.mark_attempt_failed(due[0].key, "HTTP 500", next_at=10.0)
    assert log.due("w1", 5.0) == [] and log.next_due_at("w1") == 10.0
    log.mark_sent([due[0].key], 11.0)
    assert [d.state for d in log.due("w1", 11.0)] == ["CLEARED"]
    assert log.due("crit", 11.0) == []
    log.mark_attempt_failed(("a1", "CLEARED", "w1"), "HTTP 500", None)
    assert log.due("w1", 99.0) == [] and log.requeue_failed(100.0) == 1
    rows = {(r["state"], r["status"], r["attempts"]) for r in log.rows()}
    assert rows == {("RAISED", "sent", 2), ("CLEARED", "pending", 0)}
    log.close()


def test_silence_period_suppresses_a_repeat_and_its_clear(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "d.db")
    ch = [hook(name="w", silence_s=60)]
    log.record([alert("a1")], ch, 0.0)
    log.record([alert("a2", time=T0 + 30_000_000)], ch, 0.0)  # same asset+rule 30 s later: silenced
    log.record([alert("a2", state="CLEARED", time=T0 + 31_000_000)], ch, 0.0)
    log.record([alert("a3", time=T0 + 120_000_000)], ch, 0.0)  # after the silence period
    status = {(r["alert_id"], r["state"]): r["status"] for r in log.rows()}
    assert status == {
        ("a1", "RAISED"): "pending",
        ("a2", "RAISED"): "silenced",
        ("a2", "CLEARED"): "silenced",
        ("a3", "RAISED"): "pending",
    }
    log.close()


def test_bad_channel_config_names_the_field(tmp_path: Path, clean_env: None) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["pipeline"]["alerting"] = {
        "channels": [
            {"kind": "webhook", "name": "ops", "url": "ftp://x", "hmac_secret": "topsecret"},
            {"kind": "email", "name": "mail", "host": "h", "sender": "a@b.c", "recipients": []},
            {"kind": "pager", "name": "p"},
        ]
    }
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert "pipeline.alerting.channels[0](ops).url" in text
    assert "pipeline.alerting.channels[1](mail).recipients" in text
    assert "channels[2](p)" in text and "kind" in text
    assert "topsecret" not in text
    with pytest.raises(ValueError, match="used twice"):
        AlertingSettings(channels=[hook(name="x"), hook(name="x")])
    with pytest.raises(ValueError, match="topic_template"):
        AlertingSettings.model_validate(
            {"channels": [{"kind": "mqtt", "name": "m", "host": "h", "topic_template": "a/{x}"}]}
        )
    assert "topsecret" not in repr(hook(hmac_secret="topsecret"))
