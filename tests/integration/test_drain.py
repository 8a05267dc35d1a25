"""`up`'s drain check (plantstream/up.py `Orchestrator.drain`) against the real broker: it says "drained"
only once the worker's and the storage sink's groups committed everything - for the topics and groups
it is told, not the orchestrator's own (`bench pipeline` runs its own: the drain once reported a worker
68,000 frames behind as drained)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.up import Orchestrator
from tests.conftest import Stack, plant_raw
from tests.helpers import prepare_topics, produce

pytestmark = pytest.mark.integration


def consume_and_commit(settings: Settings, group: str, logical: list[str], expect: int) -> None:
    c = Consumer({**kafka_clients.consumer_config(settings, group, "test"), "enable.auto.commit": False})
    try:
        c.subscribe([settings.topic(t) for t in logical])
        got = 0
        for _ in range(300):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got += 1
                if got >= expect:
                    break
        assert got == expect
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_drain_waits_for_the_groups_of_the_settings_it_is_given(stack: Stack, tmp_path: Path) -> None:
    run = Settings(**plant_raw(tmp_path / "run", stack))
    prepare_topics(run)
    produce(run, run.topic(topics.READINGS), [(f"a{i}".encode(), b"frame") for i in range(12)])
    produce(run, run.topic(topics.KPI), [(b"a", b"window")])
    other = Settings(**plant_raw(tmp_path / "plant", stack))  # another prefix and group: nothing to drain
    orch = Orchestrator(other, None)

    assert orch.drain(timeout=1.0) is True  # its own topics: empty
    assert orch.drain(timeout=2.0, settings=run) is False  # the run's: never consumed

    group = run.pipeline.group_id
    consume_and_commit(run, f"{group}-processor", [topics.READINGS], 12)
    assert orch.drain(timeout=2.0, settings=run) is False  # the sink has not stored them yet
    consume_and_commit(run, f"{group}-sink-storage", [topics.READINGS, topics.KPI], 13)
    assert orch.drain(timeout=10.0, settings=run) is True
