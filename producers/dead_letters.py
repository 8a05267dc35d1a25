"""Input a producer cannot use, kept: the raw bytes to `plant.deadletter.v1` with the reason in headers.

Headers as the processor's dead letters (docs/topics.md): `ps-error`, `ps-error-class` (the kind of
problem, e.g. malformed_json, unknown_alias), `ps-source-topic` (here the MQTT topic), `ps-stage`,
plus `ps-source` (the broker) and `ps-device` when the message belongs to a configured device.
A failed delivery is logged; dead letters do not go through the store-and-forward buffer.
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, Message, Producer

from plantstream.core import kafka_clients, logs, topics
from plantstream.core.config import Settings

log = logs.get(__name__)


class DeadLetterPublisher:
    def __init__(self, settings: Settings, stage: str, *, producer: Producer | None = None) -> None:
        self.topic = settings.topic(topics.DEADLETTER)
        self.stage = stage
        self._producer = producer or Producer(kafka_clients.producer_config(settings, f"{stage}-deadletters"))
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="dead-letter-callbacks", daemon=True)
        self._poller.start()
        self.sent = 0
        self.failed = 0

    def emit(
        self,
        key: bytes | None,
        value: bytes,
        *,
        reason: str,
        kind: str,
        source_topic: str,
        source: str,
        device: str | None = None,
    ) -> None:
        headers: dict[str, str | bytes | None] = {
            "ps-error": reason.encode()[:4000],
            "ps-error-class": kind.encode(),
            "ps-source-topic": source_topic.encode(),
            "ps-source": source.encode(),
            "ps-stage": self.stage.encode(),
        }
        if device is not None:
            headers["ps-device"] = device.encode()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.sent += 1
            else:
                self.failed += 1
                log.error("dead letter from %s not delivered to %s: %s", source_topic, self.topic, err)

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.2)

    def close(self, timeout: float = 10.0) -> int:
        self._closing.set()
        self._poller.join()
        left = int(self._producer.flush(timeout))
        if left:
            log.error("%d dead letter(s) not delivered to %s before shutdown", left, self.topic)
        return left

    def _serve(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.2)
