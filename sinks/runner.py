"""The sink runner: consume -> decode -> write -> commit, with backpressure, for every sink.

A sink is a Destination run by `SinkRunner.run(stop)`:

1. Wait for the broker; join the consumer group `<group_id>-<name>` on the sink's topics.
2. Until `stop`: `destination.maintain()` (periodic work such as retention); consume up to
   `batch_size` messages within `flush_interval_s`; decode each into a Batch (an undecodable one is
   counted as `undecodable` and skipped: the processor dead-letters it with the reason);
   `destination.write(batch)`; commit the offsets; `destination.account(...)`.
3. On `stop`: close the consumer, then the destination.

Offsets are committed only after the destination took the batch, so a crash replays at most the last
batch, and destinations write idempotently (natural keys), so a replay changes nothing. When the
destination raises Backpressure, every assigned partition is paused but the consumer keeps polling (to
stay in its group); a record that still arrives (a partition assigned meanwhile) joins the batch, and
the write is retried with backoff until it succeeds or the sink stops (then nothing is committed and the
batch is read again by the next run). Counters: `store_batch_ms`, `store_paused`, `store_outages`,
`messages_in`, `undecodable`, `consumer_lag_records`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

import schemas
from plantstream.core import kafka_clients, logs
from plantstream.core.config import Settings
from plantstream.core.consumer_lag import LagMeter
from plantstream.core.runstats import RunStats
from plantstream.core.serde import DecodeError, Decoder
from sinks.batch import Backpressure, Batch

log = logs.get(__name__)

MAX_BACKOFF_S = 30.0


class Destination(Protocol):
    """Where a sink writes. `write` raises Backpressure when it cannot take the batch now."""

    def write(self, batch: Batch) -> dict[str, int]:
        """Take the whole batch or nothing; what was written, by kind (for `account`)."""
        ...

    def maintain(self) -> None:
        """Periodic work between batches (retention); called before every consume."""
        ...

    def account(self, batch: Batch, written: dict[str, int], stats: RunStats) -> None:
        """After the offsets are committed: counters, log lines, waking up workers."""
        ...

    def close(self) -> None: ...


def commit(consumer: Consumer) -> None:
    """Commit what the destination took. A failed commit only means a redelivery, which it ignores."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        # e.g. the broker restarted and the group rebalanced: the partitions' new owner (maybe us,
        # after rejoining) re-reads from the last committed offset
        log.warning("offset commit failed (%s); those records will be redelivered and written once", e)


class SinkRunner:
    def __init__(
        self,
        settings: Settings,
        name: str,
        schemas_by_topic: Mapping[str, str],
        destination: Destination,
        stats: RunStats,
        *,
        batch_size: int,
        flush_interval_s: float,
        consumer_extra: Mapping[str, Any] | None = None,
    ) -> None:
        """`name`: the component ("sink-storage"), also the consumer group's suffix; `schemas_by_topic`: each
        topic's full name (with prefix) -> its schema name (schemas.READING_FRAME, ...)."""
        self.settings = settings
        self.name = name
        self.schemas_by_topic = dict(schemas_by_topic)
        self.destination = destination
        self.stats = stats
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.consumer_extra = dict(consumer_extra or {})  # librdkafka settings of this sink's consumer
        self._decoders: dict[str, Decoder] = {}

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop`, then close the consumer and the destination."""
        consumer: Consumer | None = None
        try:
            if not kafka_clients.wait_for_broker(self.settings, self.name, stop=stop):
                return
            registry = kafka_clients.registry(self.settings)
            self._decoders = {t: registry.decoder(s) for t, s in self.schemas_by_topic.items()}
            group = f"{self.settings.pipeline.group_id}-{self.name}"
            consumer = Consumer(kafka_clients.consumer_config(self.settings, group, self.name, **self.consumer_extra))
            consumer.subscribe(list(self.schemas_by_topic))
            self._loop(consumer, stop)
        finally:
            if consumer is not None:
                consumer.close()
            self.destination.close()
            self.stats.flush()

    def _loop(self, consumer: Consumer, stop: threading.Event) -> None:
        stats = self.stats
        lag = LagMeter(consumer, list(self.schemas_by_topic), stats)
        stats.put("store_paused", 0)

        def while_paused() -> None:
            # paused partitions fetch nothing, so ask the broker for their watermarks: the lag keeps growing
            if lag.maybe_refresh(cached=False) is not None:
                stats.flush()

        while not stop.is_set():
            self.destination.maintain()
            msgs = consumer.consume(num_messages=self.batch_size, timeout=self.flush_interval_s)
            batch = Batch()
            for m in msgs:
                self._take(m, batch)
            if msgs:
                written = self._write(consumer, batch, stop, while_paused)
                if written is None:
                    break  # stopping mid-outage: nothing committed, so the batch is read again next run
                commit(consumer)
                stats.add("messages_in", len(msgs))
                self.destination.account(batch, written, stats)
            lag.maybe_refresh()
            stats.flush()

    def _take(self, m: Message, batch: Batch) -> None:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        topic = m.topic() or ""
        schema = self.schemas_by_topic[topic]
        try:
            # ReadingFrames as columns where their layout allows (plantstream/core/frame_codec.py): the stores
            # make their rows without a Python step per sample
            decoder = self._decoders[topic]
            record = decoder.decode_frame(m.value()) if schema == schemas.READING_FRAME else decoder.decode(m.value())
        except DecodeError as e:
            # the processor routes the same message to the dead-letter topic with its reason
            self.stats.add("undecodable")
            log.warning("skipping undecodable message %s[%s]@%s: %s", topic, m.partition(), m.offset(), e)
            return
        batch.add(schema, record)

    def _write(
        self, consumer: Consumer, batch: Batch, stop: threading.Event, on_wait: Callable[[], object]
    ) -> dict[str, int] | None:
        """destination.write, retried until it takes the batch; None if stopped first (nothing committed).

        While it pushes back, every assigned partition is paused, so nothing more is read, but the
        consumer keeps polling: librdkafka needs poll() to stay in the group (else it is evicted after
        max.poll.interval.ms and the batch is redelivered to someone else)."""
        stats = self.stats
        backoff = 0.5
        paused_at: float | None = None
        try:
            while True:
                try:
                    t0 = time.perf_counter()
                    written = self.destination.write(batch)
                    stats.observe("store_batch_ms", (time.perf_counter() - t0) * 1000)
                    if paused_at is not None:
                        log.warning(
                            "%s: destination available again after %.1f s; batch stored, consuming resumed",
                            self.name,
                            time.monotonic() - paused_at,
                        )
                    return written
                except Backpressure as e:
                    if paused_at is None:
                        paused_at = time.monotonic()
                        stats.add("store_outages")
                        stats.put("store_paused", 1)
                        stats.flush()
                        log.error(
                            "%s. Consuming paused (backpressure); the batch is kept and retried, nothing is lost", e
                        )
                    else:
                        log.warning("still unreachable after %.0f s: %s", time.monotonic() - paused_at, e)
                    _pause_all(consumer)
                deadline = time.monotonic() + backoff
                while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    m = consumer.poll(min(left, 1.0))
                    if m is not None:
                        self._take(m, batch)
                        _pause_all(consumer)
                    on_wait()
                if stop.is_set():
                    return None
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            if paused_at is not None:
                stats.put("store_paused", 0)
                assigned = consumer.assignment()
                if assigned:
                    consumer.resume(assigned)


def _pause_all(consumer: Consumer) -> None:
    assigned = consumer.assignment()
    if assigned:
        consumer.pause(assigned)
