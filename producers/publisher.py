"""The one producer-side Kafka publisher: records Avro-encoded, keyed by asset, every delivery accounted for.

`Publisher` writes one topic's records (ReadingFrames to plant.readings.v1, device-down Alerts to
plant.alerts.v1). Keying by the asset path keeps one machine's records in one partition, in order.
Delivery reports arrive on a background thread; each record ends up acknowledged or, with an ERROR
log naming it, failed (counted as `frames_acked` / `frames_failed` when a RunStats is given). A full
local queue (broker down for long) makes `emit` wait for room rather than drop a record.

With a store-and-forward `DiskBuffer`, `emit` writes every record to disk first and deletes it when
Kafka acknowledges it: a broker outage or a `kill -9` loses nothing, the next start sends what is left,
oldest first (frames that waited are marked `buffered`). Lifecycle: construct (starts the delivery
thread, and the drain thread with a buffer), `emit` from any thread, `close(timeout)` once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

import schemas
from plantstream.core import kafka_clients, logs, topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from producers.store_forward import DiskBuffer

log = logs.get(__name__)

COMPONENT = "producer-modbus"
_CALLBACK_POLL_S = 0.2
_QUEUE_FULL_WAIT_S = 0.5
_QUEUE_FULL_LOG_INTERVAL_S = 30.0
# a stalled link (nothing forwarded, no connection closed) makes librdkafka report nothing until its
# request timeouts (30-60 s): say so ourselves once frames have waited this long without any ack
STALL_WARN_S = 10.0


Record = Mapping[str, Any]


def describe_frame(frame: Record) -> str:
    return f"frame of {frame['asset']} (device {frame['device']}, seq {frame['seq']})"


def describe_alert(alert: Record) -> str:
    return f"device event {alert['state']} {alert['rule']} ({alert['alert_id']})"


class Publisher:
    """Produces one topic's records (default: ReadingFrames to `plant.readings.v1`, with the topic prefix)."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        stats: RunStats | None = None,
        *,
        topic: str = topics.READINGS,
        describe: Callable[[Record], str] = describe_frame,
        producer: Producer | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        buffer: DiskBuffer | None = None,
        component: str = COMPONENT,
        alarm_fill: float = 0.8,
    ) -> None:
        """`codec`: the topic's value schema; `describe` names a record in log lines; `config_overrides`:
        librdkafka settings on top of the project's producer config."""
        self.topic = settings.topic(topic)
        self._codec = codec
        self._describe = describe
        self.noun = "frame" if codec.name == schemas.READING_FRAME else "record"  # in log lines
        self._decoder = Decoder(lambda _id: schemas.schema_text(codec.name), codec.name)
        # a record that waited on disk says so when its schema has the field (ReadingFrame does)
        self._marks_buffered = any(f["name"] == "buffered" for f in schemas.schema_json(codec.name)["fields"])
        self._stats = stats
        self._buffer = buffer
        self._alarm_fill = alarm_fill
        self._alarmed = False
        self._dropped_seen = 0
        self._up = threading.Event()
        self._up.set()
        self._hand_lock = threading.Lock()
        self._acked_ids: list[int] = []
        # frames left by an earlier run were not sent in time: they go out marked as buffered
        self._earlier_run_upto = buffer.last_id() if buffer is not None else 0
        self._handed = (buffer.first_id() - 1 if len(buffer) else buffer.last_assigned_id()) if buffer else 0
        extra = dict(config_overrides or {})
        if buffer is not None:
            extra["error_cb"] = self._on_error
        # `is None`, not `or`: a Producer with an empty queue has len() 0, so it is falsy
        self._producer = (
            producer if producer is not None else Producer(kafka_clients.producer_config(settings, component, **extra))
        )
        self._closing = threading.Event()
        self._last_full_log = 0.0
        self._progress_at = time.monotonic()  # last ack, or last moment nothing waited for one
        self._where = settings.pipeline.kafka.bootstrap or "the local broker"
        self._stalled_since: float | None = None  # set while a stall warning stands
        self._callbacks = threading.Thread(target=self._serve_callbacks, name="publisher-callbacks", daemon=True)
        self._callbacks.start()
        self._drainer: threading.Thread | None = None
        if buffer is not None:
            if len(buffer):
                log.warning(
                    "%d %s(s) from an earlier run wait in %s; sending them first", len(buffer), self.noun, buffer.path
                )
            self._drainer = threading.Thread(target=self._drain, name="publisher-drain", daemon=True)
            self._drainer.start()

    def emit(self, frame: Record) -> None:
        """Queue one record for delivery (on disk first with a buffer); blocks only while librdkafka's local
        queue is full."""
        if self._closing.is_set():
            raise RuntimeError(f"the publisher of {self.topic} is closed")
        if self._buffer is not None:
            self._emit_via_buffer(frame, self._buffer)
            return
        value = self._codec.encode(frame)
        asset = frame["asset"]
        what = self._describe(frame)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self._delivered(what, err)

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=asset.encode("utf-8"), on_delivery=delivered)
                return
            except BufferError:
                self._wait_for_room(asset)
            except KafkaException as e:
                # refused locally (e.g. larger than message.max.bytes): retrying cannot help
                self._failed(what, e.args[0] if e.args else e)
                return

    def unacknowledged(self) -> int:
        """Records Kafka has not acknowledged yet (on disk with a buffer, else in librdkafka's queue)."""
        return len(self._buffer) if self._buffer is not None else len(self._producer)

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is queued, waiting up to `timeout` s; returns the number still undelivered.

        Frames still undelivered then are purged, so each is reported (counted and logged) as failed
        rather than vanishing with the process.
        """
        if self._closing.is_set():
            return 0
        self._closing.set()
        self._callbacks.join()
        if self._drainer is not None:
            self._drainer.join()
        # with the disk log nothing is lost by not waiting long: what is unacknowledged goes out next start
        remaining = int(self._producer.flush(min(timeout, 10.0) if self._buffer is not None else timeout))
        if self._buffer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._delete_acked()
            self._producer.close()
            if len(self._buffer):
                log.warning(
                    "%d %s(s) not yet acknowledged stay in %s and go out on the next start",
                    len(self._buffer),
                    self.noun,
                    self._buffer.path,
                )
            self._update_buffer_stats()
            self._buffer.close()
            return 0  # nothing is lost: what Kafka has not acknowledged is on disk
        if remaining:
            log.error("%d %s(s) not delivered to %s within %g s of shutdown", remaining, self.noun, self.topic, timeout)
            self._producer.purge()
            self._producer.flush(0)  # serves the purged frames' delivery reports
        self._producer.close()
        return remaining

    def _serve_callbacks(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(_CALLBACK_POLL_S)
            self._check_stalled()
            if self._buffer is not None:
                self._delete_acked()
                self._update_buffer_stats()

    # --- store-and-forward ------------------------------------------------------------------------

    def _emit_via_buffer(self, frame: Record, buffer: DiskBuffer) -> None:
        down = not self._up.is_set()
        key = frame["asset"].encode("utf-8")
        value = self._codec.encode({**frame, "buffered": True} if down and self._marks_buffered else frame)
        with self._hand_lock:
            fid = buffer.append(key, value, down)
            # hand it over at once only when nothing older waits on disk: per-asset order is kept
            if not down and self._handed == fid - 1:
                self._hand(fid, key, value)
        if down:
            self._add_stat("frames_buffered")
        self._check_fill(buffer)

    def _hand(self, fid: int, key: bytes, value: bytes) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self._on_buffered_delivery(fid, err)

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
                self._handed = fid
                return
            except BufferError:
                self._wait_for_room(key.decode("utf-8", "replace"))

    def _check_stalled(self) -> None:
        now = time.monotonic()
        waiting = len(self._producer)  # queued in librdkafka or in flight
        if not waiting or not self._up.is_set():
            self._progress_at = now  # idle, or an outage _on_error reported: no stall to time
        elif self._stalled_since is None and now - self._progress_at >= STALL_WARN_S:
            self._stalled_since = self._progress_at
            self._add_stat("ack_stalls")
            kept = f" (and in the store-and-forward buffer {self._buffer.path})" if self._buffer else ""
            log.warning(
                "Kafka has acknowledged no %s for %.0f s while %d wait in the producer's queue%s: the broker "
                "is overloaded or the network to it stalls (connections open, no answers). Nothing is dropped; "
                "they go out in order when it answers. Fix: check the broker and the network path to %s",
                self.noun,
                now - self._progress_at,
                waiting,
                kept,
                self._where,
            )

    def _ack_seen(self) -> None:
        now = time.monotonic()
        self._progress_at = now
        if self._stalled_since is not None:
            log.info("Kafka acknowledges %ss again after %.0f s without an ack", self.noun, now - self._stalled_since)
            self._stalled_since = None

    def _on_buffered_delivery(self, fid: int, err: KafkaError | None) -> None:
        if err is None:
            self._ack_seen()
            self._add_stat("frames_acked")
            self._acked_ids.append(fid)
            return
        if err.code() == KafkaError._PURGE_QUEUE:
            return  # shutting down: the frame stays on disk for the next run
        # still on disk: send it again from there once Kafka answers
        self._add_stat("delivery_retries")
        log.warning(
            "%s %d not delivered (%s); it stays in the store-and-forward buffer and is retried", self.noun, fid, err
        )
        with self._hand_lock:
            self._handed = min(self._handed, fid - 1)
        self._up.clear()

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._up.is_set():
            self._up.clear()
            log.warning(
                "Kafka is unreachable (%s): %ss go to the store-and-forward buffer %s until it answers",
                err.str(),
                self.noun,
                self._buffer.path if self._buffer else "",
            )

    def _drain(self) -> None:
        """Send what waits on disk, oldest first, whenever Kafka answers."""
        assert self._buffer is not None
        buffer = self._buffer
        while not self._closing.is_set():
            if not self._up.is_set():
                if self._probe():
                    log.info("Kafka answers again: sending %d buffered %s(s) in order", len(buffer), self.noun)
                    self._up.set()
                else:
                    self._closing.wait(1.0)
                continue
            cursor = self._handed
            rows = buffer.after(cursor, 500)
            if not rows:
                self._closing.wait(0.1)
                continue
            for fid, key, value, was_buffered in rows:
                if self._closing.is_set() or not self._up.is_set():
                    break
                if fid <= self._earlier_run_upto and not was_buffered and self._marks_buffered:
                    value = self._mark_buffered(value)
                with self._hand_lock:
                    if self._handed != cursor:
                        break  # a failed delivery moved the cursor back, or emit handed it: re-read
                    self._hand(fid, key, value)
                    cursor = fid
            # bounded in-flight data: wait for librdkafka to catch up before reading more from disk
            while len(self._producer) > 5000 and not self._closing.is_set():
                self._closing.wait(0.05)

    def _probe(self) -> bool:
        try:
            md = self._producer.list_topics(self.topic, timeout=2)
        except KafkaException:
            return False
        t = md.topics.get(self.topic)
        return bool(md.brokers) and t is not None and t.error is None

    def _mark_buffered(self, value: bytes) -> bytes:
        record = self._decoder.decode(value)
        record["buffered"] = True
        return self._codec.encode(record)

    def _delete_acked(self) -> None:
        if self._buffer is None or not self._acked_ids:
            return
        ids, self._acked_ids = self._acked_ids, []
        self._buffer.delete(ids)

    def _check_fill(self, buffer: DiskBuffer) -> None:
        if buffer.dropped > self._dropped_seen:
            n = buffer.dropped - self._dropped_seen
            self._dropped_seen = buffer.dropped
            if self._stats is not None:
                self._stats.add("frames_dropped", n)
            log.error(
                "store-and-forward buffer %s is full (%d bytes): dropped the %d oldest record(s). Fix: restore "
                "Kafka, or raise pipeline.store_forward.max_mb",
                buffer.path,
                buffer.max_bytes,
                n,
            )
        if not self._alarmed and buffer.fill >= self._alarm_fill:
            self._alarmed = True
            self._add_stat("buffer_fill_alarms")
            log.error(
                "store-and-forward buffer %s is %.0f%% full (%d records); the oldest are dropped at 100%%",
                buffer.path,
                100 * buffer.fill,
                len(buffer),
            )
        elif self._alarmed and buffer.fill < self._alarm_fill * 0.9:
            self._alarmed = False
            log.info("store-and-forward buffer %s back below the alarm level", buffer.path)

    def _update_buffer_stats(self) -> None:
        if self._stats is not None and self._buffer is not None:
            self._stats.put("buffer_frames", len(self._buffer))
            self._stats.put("buffer_bytes", self._buffer.bytes)

    def _wait_for_room(self, asset: str) -> None:
        now = time.monotonic()
        if now - self._last_full_log >= _QUEUE_FULL_LOG_INTERVAL_S:
            self._last_full_log = now
            log.warning(
                "the local Kafka queue is full (broker slow or unreachable): records of %s and others "
                "wait for room; none are dropped",
                asset,
            )
        self._add_stat("queue_full_waits")
        self._producer.poll(_QUEUE_FULL_WAIT_S)

    def _delivered(self, what: str, err: KafkaError | None) -> None:
        if err is None:
            self._ack_seen()
            self._add_stat("frames_acked")
        else:
            self._failed(what, err)

    def _failed(self, what: str, err: object) -> None:
        self._add_stat("frames_failed")
        log.error("%s was not delivered to %s: %s", what, self.topic, err)

    def _add_stat(self, name: str) -> None:
        if self._stats is not None:
            self._stats.add(name)
