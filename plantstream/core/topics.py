"""The topics plantstream owns, declared in code and applied idempotently (`plantstream topics apply`)."""

from __future__ import annotations

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
from plantstream.core.config import Settings
from plantstream.core.serde import Registry

DAY_MS = 24 * 3600 * 1000

READINGS = "plant.readings.v1"
KPI = "plant.kpi.v1"
OEE = "plant.oee.v1"
ANOMALIES = "plant.anomalies.v1"
ALERTS = "plant.alerts.v1"
DEADLETTER = "plant.deadletter.v1"
LATE = "plant.readings.late.v1"


@dataclass(frozen=True)
class TopicSpec:
    base: str
    schema: str | None  # None: raw bytes (dead letters keep the original payload)
    retention_days: float
    cleanup: str = "delete"
    doc: str = ""
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self) -> dict[str, str]:
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
)


def spec_for(settings: Settings, topic: str) -> TopicSpec | None:
    for spec in TOPICS:
        if settings.topic(spec.base) == topic:
            return spec
    return None


def subject(settings: Settings, base: str) -> str:
    """TopicNameStrategy, so any Confluent-compatible client finds the value schema."""
    return f"{settings.topic(base)}-value"


def apply(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> list[str]:
    """Create missing topics, grow partitions, and set declared configs. Returns what changed."""
    partitions = settings.pipeline.kafka.partitions
    existing = admin.list_topics(timeout=timeout).topics
    changes: list[str] = []
    create = [
        NewTopic(
            settings.topic(s.base), partitions, settings.pipeline.kafka.replication_factor, config=s.kafka_configs()
        )
        for s in TOPICS
        if settings.topic(s.base) not in existing
    ]
    if create:
        for name, fut in admin.create_topics(create, request_timeout=timeout).items():
            try:
                fut.result()
                changes.append(f"created {name} ({partitions} partitions)")
            except Exception as e:  # a concurrent apply created it first
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
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
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in s.kafka_configs().items()
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
