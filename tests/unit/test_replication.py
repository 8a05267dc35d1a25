"""Replication of plantstream's topics, several workers and sinks: the defaults and the clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from plantstream.core import metrics, runstats
from plantstream.core.config import Settings
from plantstream.core.topics import Replication, ReplicationError, replication

PLANT: dict[str, Any] = {"plant": {"assets": [{"path": "a.b.c.d.e"}]}, "devices": []}


def settings(**pipeline: Any) -> Settings:
    return Settings(**{**PLANT, "pipeline": pipeline})


@pytest.mark.parametrize(
    ("brokers", "want"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)), (5, Replication(3, 2))],
)
def test_defaults_follow_the_cluster(brokers: int, want: Replication, clean_env: None) -> None:
    assert replication(settings(), brokers) == want
    assert want.configs() == {"min.insync.replicas": str(want.min_insync)}


def test_configured_values_win_and_five_replicas_need_three_in_sync(clean_env: None) -> None:
    assert replication(settings(kafka={"replication_factor": 5}), 5) == Replication(5, 3)
    assert replication(settings(kafka={"replication_factor": 3, "min_insync_replicas": 3}), 3) == Replication(3, 3)


def test_more_replicas_than_brokers_is_refused_with_the_fix(clean_env: None) -> None:
    with pytest.raises(ReplicationError, match=r"replication_factor 3 is more than the 1 broker\(s\).*Fix"):
        replication(settings(kafka={"replication_factor": 3}), 1)
    with pytest.raises(ReplicationError, match=r"min_insync_replicas 3 is more than the replication factor 2.*Fix"):
        replication(settings(kafka={"replication_factor": 2, "min_insync_replicas": 3}), 3)


def test_several_sinks_need_postgres(clean_env: None) -> None:
    with pytest.raises(
        ValidationError, match=r"2 storage sinks need a store they share.*Fix: set pipeline.storage.kind"
    ):
        settings(storage={"sinks": 2})
    assert settings(storage={"sinks": 2, "kind": "postgres"}, workers=3).pipeline.workers == 3


def test_instances_have_their_own_counters_and_metrics_ports(clean_env: None) -> None:
    assert runstats.instance_name("processor", 1) == "processor"
    assert runstats.instance_name("processor", 2) == "processor-2"
    assert runstats.base_component("processor-2") == "processor"
    assert runstats.base_component("sink-storage") == "sink-storage"
    assert runstats.base_component("producer-modbus") == "producer-modbus"
    s = settings(metrics={"enabled": True})
    first, second = metrics.metrics_port(s, "processor"), metrics.metrics_port(s, "processor-2")
    assert first is not None and second == first + metrics.INSTANCE_PORT_STEP
    assert second not in {metrics.metrics_port(s, c) for c in metrics.PORT_OFFSETS}
