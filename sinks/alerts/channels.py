"""Senders that put alerts on the wire: webhook (httpx), e-mail (smtplib), MQTT (paho-mqtt).

Each send either returns (the receiver accepted) or raises DeliveryError with a reason that is
safe to log and store: no URLs (Slack/Teams webhook URLs carry their token), no passwords.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt

from plantstream.core.config import AlertRoute, EmailChannel, MqttChannel, WebhookChannel
from plantstream.core.errors import SinkError
from sinks.alerts import formatting as fmt


class DeliveryError(SinkError):
    """The receiver did not take the alert; the message is a reason without secrets."""


class Sender(Protocol):
    can_digest: bool

    def send(self, alerts: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class WebhookSender:
    can_digest = True

    def __init__(self, cfg: WebhookChannel) -> None:
        self.cfg = cfg
        self._client = httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)

    def send(self, alerts: list[dict[str, Any]]) -> None:
        body = fmt.encode_body(fmt.webhook_body(self.cfg.format, alerts))
        headers = {
            **self.cfg.headers,
            "Content-Type": "application/json",
            fmt.DELIVERY_HEADER: ",".join(fmt.delivery_id(a) for a in alerts[:20]),
        }
        if self.cfg.hmac_secret is not None:
            headers[fmt.SIGNATURE_HEADER] = fmt.sign(body, self.cfg.hmac_secret.get_secret_value())
        try:
            r = self._client.post(self.cfg.url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            raise DeliveryError(f"webhook timed out after {self.cfg.timeout_s:g}s ({type(e).__name__})") from None
        except httpx.HTTPError as e:
            raise DeliveryError(f"webhook unreachable: {type(e).__name__}: {e}") from None
        if r.status_code >= 300:
            raise DeliveryError(f"webhook answered HTTP {r.status_code}")

    def close(self) -> None:
        self._client.close()


class EmailSender:
    can_digest = True

    def __init__(self, cfg: EmailChannel) -> None:
        self.cfg = cfg

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cfg.cafile)

    def send(self, alerts: list[dict[str, Any]]) -> None:
        c = self.cfg
        msg = fmt.email_message(alerts, c.sender, c.recipients, c.subject_prefix)
        try:
            smtp: smtplib.SMTP
            if c.ssl:
                smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=self._tls())
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
            with smtp:
                if c.starttls:
                    smtp.starttls(context=self._tls())
                if c.username:
                    smtp.login(c.username, c.password.get_secret_value() if c.password else "")
                refused = smtp.send_message(msg)
            if refused:
                raise DeliveryError(f"SMTP server refused recipient(s) {sorted(refused)}")
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"SMTP login refused ({e.smtp_code}). Fix: check username/password") from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError("SMTP server does not offer STARTTLS/AUTH. Fix: set starttls: false or ssl") from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP {c.host}:{c.port} failed: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        pass


class MqttSender:
    """Connects per batch (alerts are rare; no reconnect state to get wrong). RAISED is published
    retained so a board subscribing later sees it; CLEARED is published, then the retained message
    is removed (an empty retained payload), so the broker holds exactly the current raised alerts."""

    can_digest = False

    def __init__(self, cfg: MqttChannel) -> None:
        self.cfg = cfg

    def send(self, alerts: list[dict[str, Any]]) -> None:
        c = self.cfg
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect_timeout = c.timeout_s
        if c.username:
            client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        if c.tls:
            client.tls_set_context(ssl.create_default_context(cafile=c.cafile))
        connected = threading.Event()
        result: list[Any] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            result.append(reason)
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(c.host, c.port, keepalive=max(5, int(c.timeout_s * 2)))
        except OSError as e:
            raise DeliveryError(f"MQTT {c.host}:{c.port} unreachable: {type(e).__name__}: {e}") from None
        client.loop_start()
        try:
            if not connected.wait(c.timeout_s):
                raise DeliveryError(f"MQTT {c.host}:{c.port} sent no CONNACK within {c.timeout_s:g}s")
            if result[0].is_failure:
                raise DeliveryError(f"MQTT broker refused the connection: {result[0]}")
            infos = []
            for a in alerts:
                topic = fmt.mqtt_topic(c.topic_template, a)
                raised = a["state"] == "RAISED"
                infos.append(client.publish(topic, fmt.mqtt_payload(a), qos=c.qos, retain=c.retain and raised))
                if c.retain and not raised:
                    infos.append(client.publish(topic, b"", qos=c.qos, retain=True))
            for info in infos:
                info.wait_for_publish(c.timeout_s)
                if not info.is_published():
                    raise DeliveryError(f"MQTT publish not acknowledged within {c.timeout_s:g}s")
        except (RuntimeError, ValueError) as e:
            raise DeliveryError(f"MQTT publish failed: {e}") from None
        finally:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        pass


def make_sender(cfg: AlertRoute) -> Sender:
    if isinstance(cfg, WebhookChannel):
        return WebhookSender(cfg)
    if isinstance(cfg, EmailChannel):
        return EmailSender(cfg)
    if isinstance(cfg, MqttChannel):
        return MqttSender(cfg)
    raise TypeError(f"no sender for channel kind {type(cfg).__name__}")
