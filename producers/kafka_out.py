"""Frames to Kafka: Avro-encoded, keyed by asset, every delivery accounted for.

Keying by the asset path keeps one machine's frames in one partition, in scan order. Delivery
reports arrive on a background thread; each frame ends up counted as `frames_acked` or, with an
ERROR log naming it, as `frames_failed`. A full local queue (broker down for long) makes `emit`
wait for room rather than drop a frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from plantstream import kafka_clients, topics
from plantstream.config import Settings
from plantstream.runstats import RunStats
from plantstream.serde import Codec

log = logging.getLogger(__name__)

COMPONENT = "producer-modbus"
_CALLBACK_POLL_S = 0.2
_QUEUE_FULL_WAIT_S = 0.5
_QUEUE_FULL_LOG_INTERVAL_S = 30.0


class FrameSink:
    """Produces ReadingFrames to `plant.readings.v1` (with the configured topic prefix)."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        stats: RunStats | None = None,
        *,
        producer: Producer | None = None,
        config_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """`config_overrides`: librdkafka settings on top of the project's producer config."""
        self.topic = settings.topic(topics.READINGS)
        self._codec = codec
        self._stats = stats
        self._producer = producer or Producer(
            kafka_clients.producer_config(settings, COMPONENT, **(config_overrides or {}))
        )
        self._closing = threading.Event()
        self._last_full_log = 0.0
        self._callbacks = threading.Thread(target=self._serve_callbacks, name="frame-sink-callbacks", daemon=True)
        self._callbacks.start()

    def emit(self, frame: dict[str, Any]) -> None:
        """Queue one frame for delivery; blocks only while librdkafka's local queue is full."""
        if self._closing.is_set():
            raise RuntimeError("FrameSink is closed")
        value = self._codec.encode(frame)
        asset = frame["asset"]
        what = f"frame of {asset} (device {frame['device']}, seq {frame['seq']})"

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

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is queued, waiting up to `timeout` s; returns the number still undelivered.

        Frames still undelivered then are purged, so each is reported (counted and logged) as failed
        rather than vanishing with the process.
        """
        if self._closing.is_set():
            return 0
        self._closing.set()
        self._callbacks.join()
        remaining = int(self._producer.flush(timeout))
        if remaining:
            log.error("%d frame(s) not delivered to %s within %g s of shutdown", remaining, self.topic, timeout)
            self._producer.purge()
            self._producer.flush(0)  # serves the purged frames' delivery reports
        self._producer.close()
        return remaining

    def _serve_callbacks(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(_CALLBACK_POLL_S)

    def _wait_for_room(self, asset: str) -> None:
        now = time.monotonic()
        if now - self._last_full_log >= _QUEUE_FULL_LOG_INTERVAL_S:
            self._last_full_log = now
            log.warning(
                "the local Kafka queue is full (broker slow or unreachable): frames of %s and others "
                "wait for room; none are dropped",
                asset,
            )
        self._add_stat("queue_full_waits")
        self._producer.poll(_QUEUE_FULL_WAIT_S)

    def _delivered(self, what: str, err: KafkaError | None) -> None:
        if err is None:
            self._add_stat("frames_acked")
        else:
            self._failed(what, err)

    def _failed(self, what: str, err: object) -> None:
        self._add_stat("frames_failed")
        log.error("%s was not delivered to %s: %s", what, self.topic, err)

    def _add_stat(self, name: str) -> None:
        if self._stats is not None:
            self._stats.add(name)
