"""The dashboard's live feed: the result topics, read from their end, decoded, handed to the event loop.

It joins no group rebalance: it assigns every partition at its current end offset (no commits, so a
restarted dashboard again starts at "now"; the page gets older data from the store). The group id
`<group_id>-dashboard` only names its clients on the broker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import schemas
from plantstream.core import kafka_clients, logs, topics
from plantstream.core.config import Settings
from plantstream.core.serde import DecodeError

log = logs.get(__name__)

# topic base -> (record kind the page knows, reader schema)
FEEDS = {
    topics.READINGS: ("frame", schemas.READING_FRAME),
    topics.OEE: ("oee", schemas.OEE_WINDOW),
    topics.ANOMALIES: ("anomaly", schemas.ANOMALY_SCORE),
    topics.ALERTS: ("alert", schemas.ALERT),
    topics.KPI: ("kpi", schemas.KPI_WINDOW),
}

Deliver = Callable[[str, dict[str, Any]], None]


class LiveFeed:
    def __init__(self, settings: Settings, deliver: Deliver) -> None:
        self.settings = settings
        self.deliver = deliver
        self.stop = threading.Event()
        self.ready = threading.Event()  # set once every partition is assigned at its end offset
        self.counts = {kind: 0 for kind, _ in FEEDS.values()}
        self.undecodable = 0
        # what the page's header says: connecting, waiting (for topics), live, or broker (unreachable)
        self.state = "connecting"
        self.detail = "connecting to Kafka"
        self.last_message = 0.0  # time.monotonic() of the newest record
        self._checked = 0.0
        self.thread = threading.Thread(target=self._run, name="dashboard-live", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's client-wide errors (not tied to a message): all brokers down, authentication."""
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._AUTHENTICATION):
            self.state, self.detail = "broker", f"Kafka unreachable: {err.str()}"
            self._checked = time.monotonic()

    def _unreachable(self, message: str) -> None:
        """Kafka does not answer at start: the page's header says so, with the fix, not "connecting"."""
        self.state, self.detail = "broker", message

    def view(self) -> dict[str, Any]:
        age = None if not self.last_message else round(time.monotonic() - self.last_message, 1)
        return {
            "state": self.state,
            "detail": self.detail,
            "received": dict(self.counts),
            "undecodable": self.undecodable,
            "last_record_age_s": age,
        }

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)

    def _assign(self, consumer: Consumer) -> dict[str, str]:
        """Assign the partitions of the topics that exist; returns topic -> kind of those assigned."""
        names = {self.settings.topic(base): base for base in FEEDS}
        md = consumer.list_topics(timeout=10).topics
        assigned: list[TopicPartition] = []
        kinds: dict[str, str] = {}
        for name, base in names.items():
            if name not in md or md[name].error is not None:
                continue
            kinds[name] = FEEDS[base][0]
            for p in sorted(md[name].partitions):
                _low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                assigned.append(TopicPartition(name, p, high))
        consumer.assign(assigned)
        return kinds

    def _run(self) -> None:
        s = self.settings
        if not kafka_clients.wait_for_broker(s, "dashboard", stop=self.stop, on_wait=self._unreachable):
            return
        self.state, self.detail = "connecting", f"Kafka at {kafka_clients.bootstrap(s)} answers; finding the topics"
        registry = kafka_clients.registry(s)
        decoders = {s.topic(base): registry.decoder(schema) for base, (_k, schema) in FEEDS.items()}
        consumer = Consumer(
            kafka_clients.consumer_config(
                s,
                f"{s.pipeline.group_id}-dashboard",
                "dashboard",
                **{"auto.offset.reset": "latest", "error_cb": self._on_error},
            )
        )
        try:
            kinds: dict[str, str] = {}
            while not self.stop.is_set() and len(kinds) < len(FEEDS):
                kinds = self._assign(consumer)
                if len(kinds) < len(FEEDS):
                    missing = sorted(set(decoders) - set(kinds))
                    log.info("waiting for topic(s) %s (created by `plantstream topics apply` or `up`)", missing)
                    self.state, self.detail = "waiting", f"waiting for topic(s) {', '.join(missing)}"
                    if kinds:
                        self.ready.set()  # live for what exists; the rest is picked up once created
                    self.stop.wait(5.0)
            self.ready.set()
            self.state, self.detail = "live", "reading " + ", ".join(sorted(kinds))
            log.info("live feed reading %s from their end", sorted(kinds))
            while not self.stop.is_set():
                for m in consumer.consume(num_messages=500, timeout=0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", err)
                        continue
                    self.last_message = time.monotonic()
                    if self.state != "live":
                        self.state, self.detail = "live", "reading " + ", ".join(sorted(kinds))
                    topic = m.topic() or ""
                    try:
                        record = decoders[topic].decode(m.value())
                    except DecodeError as e:
                        self.undecodable += 1
                        log.debug("skipping undecodable message on %s: %s", topic, e)
                        continue
                    kind = kinds[topic]
                    self.counts[kind] += 1
                    self.deliver(kind, record)
                if self.state == "broker" and time.monotonic() - self._checked > 5.0:
                    self._checked = time.monotonic()
                    with contextlib.suppress(KafkaException):
                        consumer.list_topics(timeout=2)  # answers again: the broker is back
                        self.state, self.detail = "live", "reading " + ", ".join(sorted(kinds))
        finally:
            consumer.close()
