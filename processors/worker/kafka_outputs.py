"""The worker's records to Kafka through librdkafka, each tracked until Kafka confirms it.

Contract:
- Every record sent (output, dead letter, changelog entry) gets the next sequence number. `mark()` is
  the number the next record will get; `confirmed(mark)` returns once Kafka has acknowledged every
  record numbered below it - exactly those, whatever order delivery reports come in (librdkafka
  orders them only within a partition) - and raises `DeliveryFailed` if Kafka refused any record or
  the wait timed out: the checkpoint in progress must then not commit.
- Sending never blocks the event loop. When librdkafka's queue is full, records wait in order in a
  queue of ours; `backlogged` says so, and the agent awaits `drain()` before it takes the next frame.
  The condition is logged once per minute with a count, not per record.
- Delivery callbacks run only on the event loop's thread (every poll is made there), so the
  bookkeeping needs no lock.

librdkafka rather than Faust's own producer: Faust's costs tens of microseconds of Python per record;
with an anomaly score per frame that was the largest cost after the models.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from plantstream.core import logs
from plantstream.core.errors import ProcessorError
from plantstream.core.outage_log import OutageLog
from processors.worker.outputs import Headers
from processors.worker.stage import Kind

log = logs.get(__name__)

POLL_EVERY = 1000  # records between serving delivery callbacks while sending
WAIT_STEP_S = 0.005  # how often a waiting checkpoint serves callbacks
UNCONFIRMED_WARN_S = 10.0  # a checkpoint waiting longer says so (once a minute)


class DeliveryFailed(ProcessorError, RuntimeError):
    """Kafka did not take a record: the checkpoint that covers it must not commit."""


_Queued = tuple[int, str, bytes | None, bytes | None, Headers | None, int]


class KafkaOutputs:
    """`Outputs` to Kafka, plus changelog writes, with per-record confirmation (see the module doc)."""

    def __init__(
        self,
        producer: Producer,
        topics: Mapping[Kind, str],
        encoders: Mapping[Kind, Any],
        deadletter_topic: str,
    ) -> None:
        self._producer = producer
        self._produce = producer.produce
        self._topics = dict(topics)
        self._encode = {kind: enc.encode for kind, enc in encoders.items()}
        self._deadletter_topic = deadletter_topic
        self._next = 0  # sequence number of the next record
        self._low = 0  # every record numbered below is settled (confirmed, or failed and noted)
        self._pending: set[int] = set()  # sent, not yet reported
        self._failure: str | None = None
        self._overflow: deque[_Queued] = deque()  # records librdkafka's full queue did not take yet
        self._since_poll = 0
        self._outage = OutageLog(log)

    # -- sending -----------------------------------------------------------------------------

    def emit(self, key: bytes, kind: Kind, record: Mapping[str, Any]) -> None:
        self._send(self._topics[kind], key, self._encode[kind](record), None, -1)

    def dead_letter(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self._send(self._deadletter_topic, key, value, headers, -1)

    def changelog(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        self._send(topic, key, value, None, partition)

    def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None, partition: int
    ) -> None:
        seq = self._next
        self._next = seq + 1
        self._pending.add(seq)
        if self._overflow:  # keep the order: nothing overtakes what waits
            self._overflow.append((seq, topic, key, value, headers, partition))
            return
        try:
            self._produce(
                topic, value, key, partition=partition, headers=headers, on_delivery=partial(self._delivered, seq)
            )
        except BufferError:
            self._overflow.append((seq, topic, key, value, headers, partition))
            self._note_full()
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._producer.poll(0)

    def _delivered(self, seq: int, err: KafkaError | None, msg: Message) -> None:
        self._pending.discard(seq)
        if err is not None and self._failure is None:
            self._failure = f"{msg.topic()}: {err}"

    def _note_full(self) -> None:
        self._outage.report(
            "queue-full",
            "librdkafka's send queue is full (%d records in it): the worker holds its next records and waits "
            "for Kafka to take them (is the broker slow or down?)",
            len(self._producer),
        )

    def _push_overflow(self) -> bool:
        """Hand waiting records to librdkafka in order; True when none wait any more."""
        overflow = self._overflow
        while overflow:
            seq, topic, key, value, headers, partition = overflow[0]
            try:
                self._produce(
                    topic, value, key, partition=partition, headers=headers, on_delivery=partial(self._delivered, seq)
                )
            except BufferError:
                return False
            overflow.popleft()
        self._outage.resolved("queue-full", "librdkafka's send queue takes records again")
        return True

    @property
    def backlogged(self) -> bool:
        """Records wait for room in librdkafka's queue: await `drain()` before sending more."""
        return bool(self._overflow)

    async def drain(self) -> None:
        """Wait (without blocking the loop) until librdkafka has taken every waiting record."""
        while True:
            self._producer.poll(0)
            if self._push_overflow():
                return
            await asyncio.sleep(0.01)

    def poll(self) -> None:
        """Serve delivery callbacks (and push waiting records); cheap, call it often when idle."""
        self._producer.poll(0)
        if self._overflow:
            self._push_overflow()

    # -- confirming ----------------------------------------------------------------------------

    def mark(self) -> int:
        """The sequence number of the next record: `confirmed(mark)` covers everything sent before."""
        return self._next

    def settled_below(self) -> int:
        """Every record numbered below this has been reported (its lowest unconfirmed record's number)."""
        low, pending, nxt = self._low, self._pending, self._next
        while low < nxt and low not in pending:
            low += 1
        self._low = low
        return low

    def unconfirmed(self) -> int:
        return len(self._pending)

    async def confirmed(self, mark: int, timeout_s: float | None = None) -> None:
        """Return once Kafka has acknowledged every record numbered below `mark` (see the module doc).

        Without a timeout it waits as long as librdkafka retries (`message.timeout.ms`, after which the
        records fail), logging once a minute while it waits: a broker outage is waited out."""
        started = time.monotonic()
        deadline = None if timeout_s is None else started + timeout_s
        while True:
            self.poll()
            self._raise_failure()
            if self.settled_below() >= mark:
                if self._outage.active("unconfirmed"):
                    self._outage.resolved("unconfirmed", "Kafka acknowledges the worker's records again")
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                left = sum(1 for s in self._pending if s < mark)
                raise DeliveryFailed(
                    f"{left} records were not acknowledged by Kafka within {timeout_s:.0f} s; is the broker "
                    "reachable? the checkpoint is not committed: its frames will be processed again"
                )
            if now - started > UNCONFIRMED_WARN_S:
                self._outage.report(
                    "unconfirmed",
                    "Kafka has not acknowledged %d of the worker's records for %.0f s (is the broker reachable?); "
                    "the checkpoint waits, nothing is committed meanwhile",
                    sum(1 for s in self._pending if s < mark),
                    now - started,
                )
            await asyncio.sleep(WAIT_STEP_S)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise DeliveryFailed(f"Kafka refused a record ({failure}); the checkpoint is not committed")

    def __len__(self) -> int:
        """Records handed to librdkafka and not yet reported, plus those waiting for room."""
        return len(self._pending)
