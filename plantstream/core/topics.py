"""The topics plantstream owns, declared in code and applied idempotently (`plantstream topics apply`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

import schemas
from plantstream.core import logs
from plantstream.core.config import Settings
from plantstream.core.errors import CoreError
from plantstream.core.serde import Registry

log = logs.get(__name__)

DAY_MS = 24 * 3600 * 1000

READINGS = "plant.readings.v1"
KPI = "plant.kpi.v1"
OEE = "plant.oee.v1"
ANOMALIES = "plant.anomalies.v1"
ALERTS = "plant.alerts.v1"
DEADLETTER = "plant.deadletter.v1"
LATE = "plant.readings.late.v1"
STATE = "plant.state.v1"
ALARM_COMMANDS = "plant.alarm-commands.v1"
ALARM_STATE = "plant.alarm-state.v1"
ALARM_EVENTS = "plant.alarm-events.v1"

# compacted topics keep the newest record per key: roll segments hourly so the cleaner can compact them
# (the active segment never is), and keep a tombstone a day so slow readers still see a deletion
COMPACTED = {"segment.ms": str(3600 * 1000), "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": str(DAY_MS)}


@dataclass(frozen=True)
class TopicSpec:
    base: str
    schema: str | None  # None: raw bytes (dead letters keep the original payload)
    retention_days: float
    cleanup: str = "delete"
    doc: str = ""
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self) -> dict[str, str]:
        if self.cleanup == "compact":  # the newest record per key stays, however old
            return {"cleanup.policy": "compact", **COMPACTED, **self.configs}
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(int(self.retention_days * DAY_MS)),
            **self.configs,
        }


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(READINGS, schemas.READING_FRAME, 7, doc="one ReadingFrame per device scan; key = asset path"),
    TopicSpec(KPI, schemas.KPI_WINDOW, 90, doc="per-tag window statistics; key = asset path"),
    TopicSpec(OEE, schemas.OEE_WINDOW, 365, doc="ISO 22400 OEE per window/shift; key = asset path"),
    TopicSpec(ANOMALIES, schemas.ANOMALY_SCORE, 30, doc="anomaly scores per frame; key = asset path"),
    TopicSpec(ALERTS, schemas.ALERT, 365, doc="alert state changes RAISED/CLEARED; key = asset path"),
    TopicSpec(DEADLETTER, None, 30, doc="undecodable or contract-breaking input, raw, reason in headers"),
    TopicSpec(LATE, schemas.READING_FRAME, 30, doc="samples that arrived after their KPI window closed; key = asset"),
    TopicSpec(STATE, schemas.ASSET_STATE, 0, "compact", doc="the latest state of every asset; key = asset path"),
    # co-partitioned with the readings (same partition count, same key, same partitioner): a command reaches
    # the worker that owns the asset (docs/topics.md)
    TopicSpec(ALARM_COMMANDS, schemas.ALARM_COMMAND, 30, doc="operator actions on alarms; key = asset path"),
    TopicSpec(ALARM_STATE, schemas.ALARM_STATE, 0, "compact", doc="lifecycle state of every alarm; key = asset/rule"),
    TopicSpec(ALARM_EVENTS, schemas.ALARM_EVENT, 365, doc="alarm transitions and refused commands; key = asset path"),
)


def key_partition(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (consistent_random: CRC-32 of the key) puts a keyed
    record in: every plantstream producer uses it, so the readings and the alarm commands of an asset are
    on the same partition number (the worker owning it gets both). Java clients default to murmur2: they
    must set the partition themselves (docs/topics.md)."""
    return zlib.crc32(key.encode()) % partitions


def spec_for(settings: Settings, topic: str) -> TopicSpec | None:
    for spec in TOPICS:
        if settings.topic(spec.base) == topic:
            return spec
    return None


def subject(settings: Settings, base: str) -> str:
    """TopicNameStrategy, so any Confluent-compatible client finds the value schema."""
    return f"{settings.topic(base)}-value"


class ReplicationError(CoreError, ValueError):
    pass


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int

    def configs(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


def replication(settings: Settings, brokers: int) -> Replication:
    """Replicas and min.insync.replicas of plantstream's topics on a cluster of `brokers` brokers.

    Defaults: one replica per broker up to three, and min.insync.replicas 2 from three replicas on, so with
    acks=all an acknowledged record is on two brokers and one broker may fail without stopping writes."""
    k = settings.pipeline.kafka
    factor = k.replication_factor or min(3, brokers)
    if factor > brokers:
        raise ReplicationError(
            f"pipeline.kafka.replication_factor {factor} is more than the {brokers} broker(s) the cluster has. "
            f"Fix: set it to at most {brokers}, or add brokers"
        )
    min_insync = k.min_insync_replicas or (factor // 2 + 1 if factor >= 3 else 1)
    if min_insync > factor:
        raise ReplicationError(
            f"pipeline.kafka.min_insync_replicas {min_insync} is more than the replication factor {factor}: no "
            "write would ever be acknowledged. Fix: lower it (a common choice: replication factor 3, min 2)"
        )
    return Replication(factor, min_insync)


def cluster_replication(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> Replication:
    """`replication` for the cluster `admin` is connected to."""
    return replication(settings, len(admin.list_topics(timeout=timeout).brokers))


def apply(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> list[str]:
    """Create missing topics, grow partitions, and set declared configs. Returns what changed."""
    partitions = settings.pipeline.kafka.partitions
    md = admin.list_topics(timeout=timeout)
    existing = md.topics
    rep = replication(settings, len(md.brokers))
    changes: list[str] = []
    create = [
        NewTopic(settings.topic(s.base), partitions, rep.factor, config={**s.kafka_configs(), **rep.configs()})
        for s in TOPICS
        if settings.topic(s.base) not in existing
    ]
    if create:
        for name, fut in admin.create_topics(create, request_timeout=timeout).items():
            try:
                fut.result()
                changes.append(f"created {name} ({partitions} partitions, {rep.factor} replicas)")
            except Exception as e:  # a concurrent apply created it first
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
    short: set[str] = set()  # existing topics with fewer replicas than wanted
    for s in TOPICS:
        name = settings.topic(s.base)
        t = existing.get(name)
        have = len(t.partitions[0].replicas) if t is not None and 0 in t.partitions else rep.factor
        if have < rep.factor:
            short.add(name)
            # Kafka changes a topic's replicas only by a reassignment, which moves data: an operator's call
            log.warning(
                "%s has %d replica(s), %d wanted: reassign its partitions (kafka-reassign-partitions.sh) to add "
                "replicas; its min.insync.replicas is left as it is",
                name,
                have,
                rep.factor,
            )
    grow = [
        NewPartitions(settings.topic(s.base), partitions)
        for s in TOPICS
        if settings.topic(s.base) in existing and len(existing[settings.topic(s.base)].partitions) < partitions
    ]
    if grow:
        for name, fut in admin.create_partitions(grow).items():
            fut.result()
            changes.append(f"grew {name} to {partitions} partitions")
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            settings.topic(s.base),
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in {**s.kafka_configs(), **({} if settings.topic(s.base) in short else rep.configs())}.items()
            ],
        )
        for s in TOPICS
        if settings.topic(s.base) in existing
    ]
    if resources:
        for fut in admin.incremental_alter_configs(resources).values():
            fut.result()
    return changes


def register_schemas(settings: Settings, registry: Registry, attempts: int | None = None) -> dict[str, int]:
    """Register every topic's value schema (idempotent) and enforce BACKWARD evolution on its subject."""
    ids: dict[str, int] = {}
    for spec in TOPICS:
        if spec.schema is None:
            continue
        subj = subject(settings, spec.base)
        ids[subj] = registry.register(subj, spec.schema, attempts=attempts)
        registry.set_backward(subj)
    return ids
