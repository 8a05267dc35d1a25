"""The worker's output records (KPI, OEE, anomaly, alert, dead-letter) go out through librdkafka.

Faust's own producer costs tens of microseconds of Python per record; with an anomaly score per
frame that was the largest cost after the models (`plantstream bench worker --profile`). librdkafka
does the same work in C. The guarantee stays: a batch of input frames is acknowledged to Faust
(and so committed) only after `flush` has confirmed every record produced for it, and a record
Kafka refuses stops the worker instead of being dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time

from confluent_kafka import KafkaError, Message, Producer

from plantstream.core import kafka_clients, logs
from plantstream.core.config import Settings
from plantstream.core.errors import ProcessorError

log = logs.get(__name__)


class DeliveryFailed(ProcessorError, RuntimeError):
    """Kafka did not take an output record; the batch it belongs to must not be committed."""


class Outputs:
    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(kafka_clients.producer_config(settings, "processor"))
        self._failure: str | None = None  # set by librdkafka's delivery callback
        self._sent = 0
        self._reported = 0  # delivery reports served, success or not
        # callbacks run in whichever thread polls: the event loop's and a flush's
        self._lock = threading.Lock()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            self._reported += 1
            if err is not None and self._failure is None:
                self._failure = f"{msg.topic()}: {err}"

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str | bytes | None] | None = None
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=self._delivered)
                break
            except BufferError:  # librdkafka's queue is full: let it drain a little
                self._producer.poll(0.05)
        self._sent += 1
        if self._sent % 1000 == 0:
            self._producer.poll(0)  # serve delivery callbacks

    def poll(self) -> None:
        self._producer.poll(0)

    async def flush(self, timeout_s: float = 120.0) -> None:
        """Wait (off the event loop) until Kafka has every record sent so far; raise if any failed.

        Records sent while it waits are not waited for: librdkafka's own flush waits for an empty
        queue, which under steady input may not come for a long time, and the commit waits on this."""
        mark = self._sent
        left = await asyncio.to_thread(self._wait_for, mark, timeout_s) if self._reported < mark else 0
        self._check(left, timeout_s)

    def _wait_for(self, mark: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._reported < mark and time.monotonic() < deadline:
            self._producer.poll(0.05)
        return max(0, mark - self._reported)

    def flush_sync(self, timeout_s: float = 30.0) -> None:
        self._check(self._producer.flush(timeout_s), timeout_s)

    def _check(self, left: int, timeout_s: float) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise DeliveryFailed(f"Kafka refused an output record ({failure}); the input batch is not committed")
        if left:
            raise DeliveryFailed(
                f"{left} output records were not acknowledged within {timeout_s:.0f}s; is the broker reachable? "
                "the input batch is not committed and will be processed again"
            )
