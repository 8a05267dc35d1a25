"""`plantstream status`: topics, partitions, end offsets, message rates and lag per consumer group."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings


@dataclass
class TopicStatus:
    name: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)
    end_offsets: dict[int, int]
    rate_per_s: float = 0.0


@dataclass
class GroupStatus:
    group: str
    lag: dict[str, int] = field(default_factory=dict)  # topic -> total lag


def _watermarks(consumer: Consumer, topic: str, partitions: list[int]) -> tuple[dict[int, int], int]:
    ends, total = {}, 0
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
        ends[p] = high
        total += high - low
    return ends, total


def collect(settings: Settings, rate_window_s: float = 1.0) -> dict[str, Any]:
    """A snapshot of the pipeline's topics and consumer groups, as JSON-able dicts."""
    admin = AdminClient(kafka_clients.admin_config(settings))
    consumer = Consumer(kafka_clients.consumer_config(settings, "plantstream-status", "status"))
    try:
        md = admin.list_topics(timeout=10).topics
        names = [settings.topic(s.base) for s in topics.TOPICS if settings.topic(s.base) in md]
        first = {n: _watermarks(consumer, n, sorted(md[n].partitions)) for n in names}
        time.sleep(rate_window_s)
        out_topics = []
        for n in names:
            ends, total = _watermarks(consumer, n, sorted(md[n].partitions))
            produced = sum(ends.values()) - sum(first[n][0].values())
            out_topics.append(TopicStatus(n, len(ends), total, ends, produced / rate_window_s))
        groups = []
        listed = admin.list_consumer_groups(request_timeout=10).result()
        for g in sorted(x.group_id for x in listed.valid if x.group_id.startswith(settings.pipeline.group_id)):
            request = [ConsumerGroupTopicPartitions(g)]
            committed = admin.list_consumer_group_offsets(request)[g].result()
            status = GroupStatus(g)
            for tp in committed.topic_partitions or []:
                t = next((x for x in out_topics if x.name == tp.topic), None)
                if t is None or tp.offset < 0:
                    continue
                status.lag[tp.topic] = status.lag.get(tp.topic, 0) + max(
                    0, t.end_offsets.get(tp.partition, 0) - tp.offset
                )
            groups.append(status)
    finally:
        consumer.close()
    return {
        "bootstrap": kafka_clients.bootstrap(settings),
        "topics": [t.__dict__ for t in out_topics],
        "groups": [g.__dict__ for g in groups],
    }


def render(snapshot: dict[str, Any]) -> str:
    lines = [f"Kafka {snapshot['bootstrap']}", "", f"{'topic':<40} {'parts':>5} {'messages':>12} {'msg/s':>9}"]
    for t in snapshot["topics"]:
        lines.append(f"{t['name']:<40} {t['partitions']:>5} {t['messages']:>12} {t['rate_per_s']:>9.1f}")
    lines += ["", f"{'consumer group':<40} {'topic':<32} {'lag':>8}"]
    for g in snapshot["groups"]:
        for topic, lag in sorted(g["lag"].items()) or [("-", 0)]:
            lines.append(f"{g['group']:<40} {topic:<32} {lag:>8}")
    return "\n".join(lines)
