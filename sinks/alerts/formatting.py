"""Pure formatting of alerts for each channel: webhook bodies (generic, Slack, Teams), e-mail, MQTT."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sinks.alerts.routing import SEVERITY_RANK

SIGNATURE_HEADER = "X-Plantstream-Signature"
DELIVERY_HEADER = "X-Plantstream-Delivery"

_SLACK_ICON = {"INFO": ":information_source:", "WARNING": ":warning:", "CRITICAL": ":rotating_light:"}
_TEAMS_COLOR = {"INFO": "Accent", "WARNING": "Warning", "CRITICAL": "Attention"}


def iso_time(alert: dict[str, Any]) -> str:
    """The record's event time (int microseconds inside plantstream) as ISO 8601 UTC."""
    t = alert["time"]
    if isinstance(t, datetime):
        return t.astimezone(UTC).isoformat()
    return datetime.fromtimestamp(int(t) / 1e6, UTC).isoformat()


def public_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as plain JSON for receivers: time as ISO text plus the raw microseconds."""
    out = {k: alert.get(k) for k in ("alert_id", "asset", "rule", "kind", "state", "severity", "message", "value")}
    out["tags"] = list(alert.get("tags") or [])
    out["time"] = iso_time(alert)
    out["time_us"] = int(alert["time"]) if not isinstance(alert["time"], datetime) else None
    return out


def delivery_id(alert: dict[str, Any]) -> str:
    """Stable per state change, so a receiver can drop a repeat after a crash at the wrong moment."""
    return f"{alert['alert_id']}:{alert['state']}"


def headline(alert: dict[str, Any]) -> str:
    return f"{alert['severity']} {alert['state']}: {alert['asset']} {alert['rule']}"


def _value_text(alert: dict[str, Any]) -> str:
    return "" if alert.get("value") is None else f" (value {alert['value']:g})"


def max_severity(alerts: list[dict[str, Any]]) -> str:
    return max((str(a["severity"]) for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 0))


def webhook_body(fmt: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """One alert, or a digest when a flood is coalesced (len > 1)."""
    if fmt == "slack":
        return _slack(alerts)
    if fmt == "teams":
        return _teams(alerts)
    if len(alerts) == 1:
        return public_alert(alerts[0])
    return {"digest": True, "count": len(alerts), "alerts": [public_alert(a) for a in alerts]}


def _line(a: dict[str, Any]) -> str:
    return f"{headline(a)} at {iso_time(a)}: {a['message']}{_value_text(a)}"


def _slack(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(alerts) == 1:
        a = alerts[0]
        icon = ":white_check_mark:" if a["state"] == "CLEARED" else _SLACK_ICON.get(str(a["severity"]), "")
        text = f"{icon} *{headline(a)}*"
        detail = f"{a['message']}{_value_text(a)}"
        context = f"{a['kind']} rule | {iso_time(a)} | id {a['alert_id']}"
    else:
        text = f"*{len(alerts)} alert state changes* (worst {max_severity(alerts)})"
        detail = "\n".join(f"• {_line(a)}" for a in alerts[:50])
        context = "coalesced by the rate limit"
    return {
        "text": text.replace("*", ""),  # notification fallback
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def _teams(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    body: list[dict[str, Any]]
    if len(alerts) == 1:
        a = alerts[0]
        color = "Good" if a["state"] == "CLEARED" else _TEAMS_COLOR.get(str(a["severity"]), "Default")
        body = [
            {"type": "TextBlock", "text": headline(a), "weight": "Bolder", "size": "Medium", "color": color},
            {"type": "TextBlock", "text": f"{a['message']}{_value_text(a)}", "wrap": True},
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Asset", "value": str(a["asset"])},
                    {"title": "Rule", "value": f"{a['rule']} ({a['kind']})"},
                    {"title": "Time", "value": iso_time(a)},
                    {"title": "Alert id", "value": str(a["alert_id"])},
                ],
            },
        ]
    else:
        color = _TEAMS_COLOR.get(max_severity(alerts), "Default")
        body = [
            {"type": "TextBlock", "text": f"{len(alerts)} alert state changes", "weight": "Bolder", "color": color},
            *({"type": "TextBlock", "text": _line(a), "wrap": True} for a in alerts[:50]),
        ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def encode_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """Header value: `sha256=<hex HMAC-SHA256 of the exact body bytes>` (the GitHub convention)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def email_message(
    alerts: list[dict[str, Any]], sender: str, recipients: list[str], prefix: str = "[plantstream]"
) -> EmailMessage:
    msg = EmailMessage()
    if len(alerts) == 1:
        a = alerts[0]
        msg["Subject"] = f"{prefix} {a['severity']} {a['state']} {a['asset']} {a['rule']}".strip()
        text = (
            f"{headline(a)}\n\n{a['message']}{_value_text(a)}\n\n"
            f"Asset:    {a['asset']}\nRule:     {a['rule']} ({a['kind']})\nTime:     {iso_time(a)}\n"
            f"Tags:     {', '.join(a.get('tags') or []) or '-'}\nAlert id: {a['alert_id']}\n"
        )
    else:
        msg["Subject"] = f"{prefix} {max_severity(alerts)} {len(alerts)} alert state changes".strip()
        text = "Coalesced by the rate limit:\n\n" + "\n".join(f"- {_line(a)}" for a in alerts) + "\n"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["X-Plantstream-Delivery"] = ",".join(delivery_id(a) for a in alerts[:20])
    msg.set_content(text)
    return msg


def mqtt_topic(template: str, alert: dict[str, Any]) -> str:
    fields = {k: str(alert[k]) for k in ("asset", "severity", "rule", "alert_id", "state", "kind")}
    # '+', '#' and '/' inside a value would change the topic's levels
    safe = {k: v.replace("/", "_").replace("+", "_").replace("#", "_") for k, v in fields.items()}
    return template.format(**safe)


def mqtt_payload(alert: dict[str, Any]) -> bytes:
    return encode_body(public_alert(alert))
