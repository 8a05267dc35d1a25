"""Alert delivery over real sockets: an HTTP receiver, aiosmtpd (STARTTLS + AUTH), mosquitto, and the
real Kafka broker for the sink (`stack`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import EmailChannel, MqttChannel, Settings, WebhookChannel
from plantstream.core.runstats import RunStats
from sinks.alerts.channels import DeliveryError, EmailSender, MqttSender, WebhookSender
from sinks.alerts.delivery_log import DeliveryLog
from sinks.alerts.sink import ChannelWorker, delivery_log_path, run_alert_sink
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.helpers import prepare_topics, produce, spawn_cli, stop, wait_for
from tests.servers import HttpReceiver, MqttBroker, MqttRecorder, SmtpServer, retained, start_smtp

ASSET = "acme.springfield.stamping.line1.press1"
SECRET = "hook-secret-123"
T0 = 1_767_225_600_000_000


def alert(alert_id: str, state: str, severity: str = "CRITICAL", dt_s: float = 0.0) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "asset": ASSET,
        "rule": "temp_high",
        "kind": "threshold",
        "state": state,
        "severity": severity,
        "time": T0 + int(dt_s * 1e6),
        "message": "die temperature above 80 C",
        "tags": ["die_temp"],
        "value": 84.25 if state == "RAISED" else 71.0,
    }


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    (tmp_path / "tls").mkdir()
    s = start_smtp(tmp_path / "tls")
    yield s
    s.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MqttBroker]:
    (tmp_path / "mqtt").mkdir()
    b = MqttBroker(tmp_path / "mqtt")
    yield b
    b.close()


@pytest.fixture
def mqtt_rec(broker: MqttBroker) -> Iterator[MqttRecorder]:
    r = MqttRecorder(broker.port, "plant/alerts/#")
    yield r
    r.close()


def email_cfg(smtp: SmtpServer, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "email",
        "name": "mail",
        "host": "127.0.0.1",
        "port": smtp.port,
        "starttls": True,
        "cafile": str(smtp.cafile),
        "username": smtp.username,
        "password": smtp.password,
        "sender": "plantstream@plant.example",
        "recipients": ["shift-lead@plant.example", "maint@plant.example"],
        **kw,
    }


def mqtt_cfg(broker: MqttBroker) -> dict[str, Any]:
    return {"kind": "mqtt", "name": "andon", "host": "127.0.0.1", "port": broker.port, "timeout_s": 3}


# --- channels on their own -------------------------------------------------------------------------


def test_webhook_signs_and_shapes_slack_and_teams(http: HttpReceiver) -> None:
    WebhookSender(WebhookChannel(name="g", url=http.url("g"), hmac_secret=SECRET)).send([alert("a1", "RAISED")])  # type: ignore[arg-type]
    WebhookSender(WebhookChannel(name="s", url=http.url("s"), format="slack")).send([alert("a1", "RAISED")])
    WebhookSender(WebhookChannel(name="t", url=http.url("t"), format="teams")).send([alert("a1", "CLEARED")])
    (g,) = http.got("g")
    expected = "sha256=" + hmac.new(SECRET.encode(), g.body, hashlib.sha256).hexdigest()
    assert g.headers["x-plantstream-signature"] == expected
    assert g.headers["x-plantstream-delivery"] == "a1:RAISED"
    assert g.json()["asset"] == ASSET and g.json()["severity"] == "CRITICAL"
    (s,) = http.got("s")
    assert "x-plantstream-signature" not in s.headers
    assert "CRITICAL RAISED" in s.json()["text"] and s.json()["blocks"][0]["text"]["type"] == "mrkdwn"
    (t,) = http.got("t")
    att = t.json()["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att["content"]["body"][0]["text"].startswith("CRITICAL CLEARED")
    http.plan["bad"] = [500]
    with pytest.raises(DeliveryError, match="HTTP 500"):
        WebhookSender(WebhookChannel(name="b", url=http.url("bad"))).send([alert("a1", "RAISED")])
    http.hang["slow"] = 2.0
    t0 = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out"):
        WebhookSender(WebhookChannel(name="h", url=http.url("slow"), timeout_s=0.3)).send([alert("a1", "RAISED")])
    assert time.monotonic() - t0 < 1.5


def test_email_over_starttls_with_auth(smtp: SmtpServer) -> None:
    EmailSender(EmailChannel.model_validate(email_cfg(smtp))).send([alert("a1", "RAISED")])
    wait_for(lambda: len(smtp.messages) == 1, 5, 0.05, "the e-mail")
    m = smtp.messages[0]
    assert m["Subject"] == f"[plantstream] CRITICAL RAISED {ASSET} temp_high"
    assert m["X-Test-TLS"] == "yes" and m["X-Test-Auth"] == "True"
    assert m["X-Test-Rcpt"] == "shift-lead@plant.example,maint@plant.example"
    bad = EmailChannel.model_validate(email_cfg(smtp, password="wrong"))
    with pytest.raises(DeliveryError, match="login refused") as e:
        EmailSender(bad).send([alert("a1", "RAISED")])
    assert "wrong" not in str(e.value)
    plain = EmailChannel.model_validate(email_cfg(smtp, starttls=False))
    with pytest.raises(DeliveryError):  # the server insists on TLS before AUTH
        EmailSender(plain).send([alert("a1", "RAISED")])


def test_mqtt_raised_is_retained_and_cleared_removes_it(broker: MqttBroker, mqtt_rec: MqttRecorder) -> None:
    sender = MqttSender(MqttChannel.model_validate(mqtt_cfg(broker)))
    sender.send([alert("a1", "RAISED")])
    topic = f"plant/alerts/{ASSET}/CRITICAL/temp_high"
    assert [(m.topic, m.retain) for m in retained(broker.port, "plant/alerts/#", 0.5)] == [(topic, True)]
    sender.send([alert("a1", "CLEARED")])
    wait_for(lambda: len(mqtt_rec.payloads()) == 2, 5, 0.05, "RAISED and CLEARED on MQTT")
    assert [json.loads(m.payload)["state"] for m in mqtt_rec.payloads()] == ["RAISED", "CLEARED"]
    assert retained(broker.port, "plant/alerts/#", 0.5) == []  # the board shows nothing raised now
    down = MqttChannel.model_validate({**mqtt_cfg(broker), "port": free_port(), "timeout_s": 1})
    with pytest.raises(DeliveryError, match="unreachable"):
        MqttSender(down).send([alert("a1", "RAISED")])


def test_a_flood_is_rate_limited_into_one_digest(tmp_path: Path, http: HttpReceiver) -> None:
    cfg = WebhookChannel(name="chat", url=http.url("chat"), rate_limit_per_min=120, burst=1)  # one per 0.5 s
    settings = Settings(**plant_raw(tmp_path, alerting={"channels": [cfg.model_dump()]}))
    dlog = DeliveryLog(tmp_path / "d.db")
    stats = RunStats("t")
    stop_event = threading.Event()
    worker = ChannelWorker(cfg, WebhookSender(cfg), dlog, settings.pipeline.alerting, stats, stop_event)
    worker.start()
    try:
        dlog.record([alert("f0", "RAISED")], [cfg], time.time())
        worker.wake.set()
        wait_for(lambda: len(http.got("chat")) == 1, 5, 0.02, "the first alert")
        flood = [alert(f"f{i}", "RAISED", dt_s=i) for i in range(1, 9)]
        dlog.record(flood, [cfg], time.time())
        worker.wake.set()
        wait_for(lambda: len(http.got("chat")) == 2, 5, 0.02, "the digest")
        time.sleep(0.7)  # nothing else may follow
    finally:
        stop_event.set()
        worker.wake.set()
        worker.join(5)
        dlog.close()
    first, digest = http.got("chat")
    assert first.json()["alert_id"] == "f0"
    assert digest.json()["digest"] is True and [a["alert_id"] for a in digest.json()["alerts"]] == [
        f"f{i}" for i in range(1, 9)
    ]
    assert digest.at - first.at >= 0.4  # waited for the rate limit
    assert len(http.requests) == 2 and stats.get("deliveries_sent") == 9 and stats.get("digests_sent") == 1


# --- the sink over the real broker -----------------------------------------------------------------


def sink_settings(tmp_path: Path, stack: Stack, channels: list[dict[str, Any]]) -> tuple[Settings, dict[str, Any]]:
    raw = plant_raw(
        tmp_path, stack, alerting={"channels": channels, "retry": {"initial_s": 0.2, "max_s": 1.0, "max_attempts": 10}}
    )
    s = Settings(**raw)
    prepare_topics(s)
    return s, raw


def produce_alerts(settings: Settings, *alerts: dict[str, Any]) -> None:
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.ALERTS), schemas.ALERT)
    produce(settings, settings.topic(topics.ALERTS), [(a["asset"].encode(), codec.encode(a)) for a in alerts])


def statuses(settings: Settings) -> dict[tuple[str, str, str], str]:
    log = DeliveryLog(delivery_log_path(settings))
    try:
        return {(r["alert_id"], r["state"], r["channel"]): r["status"] for r in log.rows()}
    finally:
        log.close()


def _states(http: HttpReceiver, smtp: SmtpServer, mq: MqttRecorder, hook: str = "ops") -> dict[str, list[str]]:
    return {
        "webhook": [r.json()["state"] for r in http.got(hook)],
        "email": [str(m["Subject"]).split()[2] for m in smtp.messages],
        "mqtt": [json.loads(m.payload)["state"] for m in mq.payloads()],
    }


@pytest.mark.integration
def test_raised_then_cleared_exactly_once_across_a_kill(
    tmp_path: Path, stack: Stack, clean_env: None, http: HttpReceiver, smtp: SmtpServer, broker: MqttBroker,
    mqtt_rec: MqttRecorder,
) -> None:  # fmt: skip
    hook = {"kind": "webhook", "name": "ops", "url": http.url("ops"), "hmac_secret": SECRET}
    settings, raw = sink_settings(tmp_path, stack, [hook, email_cfg(smtp), mqtt_cfg(broker)])
    config = write_config(tmp_path, raw)
    produce_alerts(settings, alert("inc-1", "RAISED"))
    proc = spawn_cli(config, "sink", "alerts", log=tmp_path / "sink1.log")
    try:
        want = {"webhook": ["RAISED"], "email": ["RAISED"], "mqtt": ["RAISED"]}
        wait_for(lambda: _states(http, smtp, mqtt_rec) == want, 60, 0.1, "RAISED on every channel")
        # all three rows marked sent, so the kill lands after delivery is recorded
        wait_for(lambda: set(statuses(settings).values()) == {"sent"}, 10, 0.1, "RAISED marked sent")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    # a producer retry may write a state change twice: the repeat RAISED must not go out again
    produce_alerts(settings, alert("inc-1", "RAISED"), alert("inc-1", "CLEARED", dt_s=42))
    proc = spawn_cli(config, "sink", "alerts", log=tmp_path / "sink2.log")
    try:
        want = {"webhook": ["RAISED", "CLEARED"], "email": ["RAISED", "CLEARED"], "mqtt": ["RAISED", "CLEARED"]}
        # the killed member holds its partitions until its session times out (10 s)
        wait_for(lambda: _states(http, smtp, mqtt_rec) == want, 60, 0.2, "CLEARED on every channel")
        time.sleep(1.5)  # room for a duplicate to show up
        assert _states(http, smtp, mqtt_rec) == want
        assert stop(proc) == 0  # SIGTERM: a clean exit
    finally:
        stop(proc)
    assert set(statuses(settings).values()) == {"sent"} and len(statuses(settings)) == 6
    assert retained(broker.port, "plant/alerts/#", 0.5) == []
    logs = (tmp_path / "sink1.log").read_text() + (tmp_path / "sink2.log").read_text()
    assert SECRET not in logs and smtp.password not in logs and "hook-secret" not in logs
    counts = json.loads((tmp_path / "state" / "run" / "sink-alerts.json").read_text())["counts"]
    assert counts["alerts_in"] == 2 and counts["deliveries_sent"] == 3  # the second run's figures


@pytest.mark.integration
def test_failing_and_hanging_webhooks_do_not_hold_up_other_channels(
    tmp_path: Path, stack: Stack, clean_env: None, http: HttpReceiver, smtp: SmtpServer, broker: MqttBroker,
    mqtt_rec: MqttRecorder,
) -> None:  # fmt: skip
    http.plan["flaky"] = [500, 500, 500]
    http.hang["hang"] = 30.0
    channels = [
        {"kind": "webhook", "name": "flaky", "url": http.url("flaky"), "timeout_s": 2},
        {"kind": "webhook", "name": "hang", "url": http.url("hang"), "timeout_s": 1},
        email_cfg(smtp),
        mqtt_cfg(broker),
    ]
    settings, _ = sink_settings(tmp_path, stack, channels)
    produce_alerts(settings, alert("inc-7", "RAISED", severity="WARNING"))
    stop_event = threading.Event()
    t = threading.Thread(target=run_alert_sink, args=(settings, stop_event), daemon=True)
    t0 = time.time()
    t.start()
    try:
        wait_for(lambda: len(smtp.messages) == 1 and len(mqtt_rec.payloads()) == 1, 60, 0.05, "mail and MQTT")
        others_at = time.time()
        wait_for(lambda: len(http.got("flaky")) == 1, 30, 0.05, "the flaky webhook after retries")
        flaky_at = http.got("flaky")[0].at
        wait_for(lambda: len([r for r in http.requests if r.path == "/hang"]) >= 2, 30, 0.1, "a hang retry")
    finally:
        stop_event.set()
        t.join(15)
    assert not t.is_alive()
    flaky_requests = [r for r in http.requests if r.path == "/flaky"]
    assert len(flaky_requests) == 4 and len(http.got("flaky")) == 1  # 3 x 500, then one accepted
    # backoff 0.2 + 0.4 + 0.8 s between tries: mail and MQTT were out before the webhook got through
    assert others_at < flaky_at
    assert others_at - t0 < 20
    st = statuses(settings)
    assert st[("inc-7", "RAISED", "flaky")] == "sent" and st[("inc-7", "RAISED", "mail")] == "sent"
    assert st[("inc-7", "RAISED", "hang")] == "pending"  # still retrying: never lost
    log = DeliveryLog(delivery_log_path(settings))
    hang_row = next(r for r in log.rows() if r["channel"] == "hang")
    log.close()
    assert "timed out" in hang_row["last_error"] and hang_row["attempts"] >= 1
