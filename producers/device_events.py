"""Device-down / device-up events: one Alert record RAISED per outage, one CLEARED on recovery.

A producer already marks an unreachable device's samples BAD; these records tell operators and
the alert sinks once, without a rule in the processor. They go to `plant.alerts.v1` with the Alert
contract: rule `device-down:<device>`, kind `device_down`, and an `alert_id` shared by the RAISED
and CLEARED record of one outage (hash of rule, asset and outage start, as processors/alert_rules.py does).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

import schemas
from plantstream.core import kafka_clients, logs, records, topics
from plantstream.core.config import Settings
from plantstream.core.records import Alert, AlertState
from plantstream.core.serde import Codec

log = logs.get(__name__)

KIND = "device_down"
RAISED: AlertState = "RAISED"
CLEARED: AlertState = "CLEARED"

EventEmit = Callable[[Alert], None]


def rule_name(device: str) -> str:
    return f"device-down:{device}"


def outage_id(device: str, asset: str, start_us: int) -> str:
    return hashlib.sha256(f"{rule_name(device)}|{asset}|{start_us}".encode()).hexdigest()[:24]


@dataclass
class OutageTracker:
    """Turns per-scan up/down observations of one device into RAISED/CLEARED alert records (pure)."""

    device: str
    asset: str
    tags: Sequence[str] = ()
    down_since_us: int | None = field(default=None, init=False)

    def observe(self, reachable: bool, time_us: int, cause: str = "") -> Alert | None:
        """The record to publish after this scan, or None when nothing changed."""
        if not reachable and self.down_since_us is None:
            self.down_since_us = time_us
            return self._record(RAISED, time_us, f"device {self.device} stopped answering: {cause}")
        if reachable and self.down_since_us is not None:
            since, self.down_since_us = self.down_since_us, None
            seconds = (time_us - since) / 1e6
            return self._record(CLEARED, time_us, f"device {self.device} answers again after {seconds:.1f} s", since)
        return None

    def _record(self, state: AlertState, time_us: int, message: str, since_us: int | None = None) -> Alert:
        start = since_us if since_us is not None else time_us
        return records.alert(
            alert_id=outage_id(self.device, self.asset, start),
            asset=self.asset,
            rule=rule_name(self.device),
            kind=KIND,
            state=state,
            severity="WARNING",
            time=time_us,
            message=message,
            tags=self.tags,
        )


class AlertSink:
    """Produces Alert records to `plant.alerts.v1`, keyed by asset; a failed delivery is logged as an ERROR."""

    def __init__(self, settings: Settings, codec: Codec, *, producer: Producer | None = None) -> None:
        self.topic = settings.topic(topics.ALERTS)
        self._codec = codec
        self._producer = producer or Producer(kafka_clients.producer_config(settings, "producer-device-events"))
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._serve_callbacks, name="alert-sink-callbacks", daemon=True)
        self._poller.start()
        self.failed = 0

    @classmethod
    def for_settings(cls, settings: Settings) -> AlertSink:
        codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.ALERTS), schemas.ALERT)
        return cls(settings, codec)

    def emit(self, alert: Alert) -> None:
        what = f"{alert['state']} {alert['rule']} ({alert['alert_id']})"

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.failed += 1
                log.error("device event %s was not delivered to %s: %s", what, self.topic, err)

        log.log(logging.WARNING if alert["state"] == RAISED else logging.INFO, "device event: %s", alert["message"])
        self._producer.produce(
            self.topic, value=self._codec.encode(alert), key=alert["asset"].encode(), on_delivery=delivered
        )

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued; returns how many records were still undelivered."""
        self._closing.set()
        self._poller.join()
        left = self._producer.flush(timeout)
        if left:
            log.error("%d device event(s) not delivered to %s before shutdown", left, self.topic)
        return int(left)

    def _serve_callbacks(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.2)
