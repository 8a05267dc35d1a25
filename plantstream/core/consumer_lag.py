"""Consumer lag of a running confluent_kafka Consumer, per topic, as a RunStats level for /metrics.

Lag of a partition = its high watermark - the consumer's position (the next offset it will hand to
the application), summed over the partitions assigned to this member. `plantstream status` shows the
same figure per consumer group from committed offsets; this one is live, from inside the consumer, so
it also counts what was read but not yet stored (a sink paused by a database outage).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from plantstream.core import kafka_clients, logs
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats

log = logs.get(__name__)

LEVEL = "consumer_lag_records"


def partition_lag(high: int, position: int, committed: int, low: int = 0) -> int | None:
    """Records behind on one partition; None when the high watermark is not known yet.

    Before the first fetch the position is unset (negative): the consumer then starts at the committed
    offset, or, without one, at the start of the log (the sinks read from the earliest offset). The
    start of the log is the low watermark: retention may have deleted what lay before it, and a
    committed offset below it resumes there too (auto.offset.reset=earliest).
    """
    if high < 0:
        return None
    start = position if position >= 0 else committed if committed >= 0 else low
    return max(0, high - max(start, low))


def lag_by_topic(rows: Iterable[tuple[str, int | None]], topics: Iterable[str]) -> dict[str, int]:
    """Sum of known partition lags per topic; every topic in `topics` appears (0 if none assigned here)."""
    out = dict.fromkeys(topics, 0)
    for topic, lag in rows:
        if lag is not None:
            out[topic] = out.get(topic, 0) + lag
    return out


def committed_lag(settings: Settings, group: str, logical: str) -> int:
    """Records of a topic past what `group` has committed (a partition it never committed counts whole).

    From outside the group (this consumer never joins it): 0 means the group has consumed and committed
    everything written so far. Raises KafkaException when the broker does not answer.
    """
    topic = settings.topic(logical)
    c = Consumer(kafka_clients.consumer_config(settings, group, "lag-check"))
    try:
        parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        done = c.committed(parts, timeout=10)
        marks = [c.get_watermark_offsets(tp, timeout=10) for tp in parts]
        return sum(partition_lag(high, -1, tp.offset, low) or 0 for tp, (low, high) in zip(done, marks, strict=True))
    finally:
        c.close()


class LagMeter:
    """Refreshes `consumer_lag_records{topic=...}` in a RunStats at most every `interval_s`."""

    def __init__(self, consumer: Consumer, topics: Iterable[str], stats: RunStats, interval_s: float = 1.0) -> None:
        self.consumer = consumer
        self.topics = list(topics)
        self.stats = stats
        self.interval_s = interval_s
        self._next = 0.0
        # committed offsets of assigned partitions not read from yet; valid until the assignment changes
        # (this member commits only what it has read, and then the position is known)
        self._committed: dict[tuple[str, int], int] = {}
        self._assigned: frozenset[tuple[str, int]] = frozenset()

    def maybe_refresh(self, cached: bool = True) -> dict[str, int] | None:
        """Refresh if due; `cached=False` asks the broker (paused partitions get no fetches, so no fresh
        cached watermarks: the backpressure loop passes False)."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        try:
            lags = self.measure(cached)
        except KafkaException as e:  # broker briefly away: keep the last figures, try again next interval
            log.debug("consumer lag not measured: %s", e)
            return None
        for topic, lag in lags.items():
            self.stats.put(LEVEL, lag, topic=topic)
        return lags

    def measure(self, cached: bool = True) -> dict[str, int]:
        assigned = self.consumer.assignment()
        if not assigned:
            return lag_by_topic([], self.topics)
        keys = frozenset((tp.topic, tp.partition) for tp in assigned)
        if keys != self._assigned:
            self._assigned, self._committed = keys, {}
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assigned)}
        highs = {k: self._high(TopicPartition(*k), cached) for k in keys}
        # a partition with records but no position yet starts at its committed offset: one round trip,
        # once per assignment (an empty partition needs none: its lag is 0)
        unknown = [TopicPartition(*k) for k in keys if positions.get(k, -1) < 0 < highs[k] and k not in self._committed]
        if unknown:
            for tp in self.consumer.committed(unknown, timeout=1.0):
                self._committed[(tp.topic, tp.partition)] = tp.offset
        rows = [(k[0], partition_lag(highs[k], positions.get(k, -1), self._committed.get(k, -1))) for k in keys]
        return lag_by_topic(rows, self.topics)

    def _high(self, tp: TopicPartition, cached: bool) -> int:
        if cached:
            marks = self.consumer.get_watermark_offsets(tp, cached=True)
            if marks is not None and marks[1] >= 0:
                return int(marks[1])
        marks = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
        return -1 if marks is None else int(marks[1])  # None: the broker did not answer in time
