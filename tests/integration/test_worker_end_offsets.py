"""The worker's own end-offset query (processors/worker/timers.py `EndOffsets`) against the real broker:
the silence clock and the watchdog judge "read to the end" by it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.error import KafkaException

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from processors.worker.timers import EndOffsets
from tests.conftest import Stack, plant_raw
from tests.helpers import prepare_topics, produce

pytestmark = pytest.mark.integration


class TP(NamedTuple):  # Faust's TP has the same shape
    topic: str
    partition: int


def wait_for_answer(ends: EndOffsets, owned: list[TP]) -> dict[TP, int]:
    """Just after the topic is made its leaders may not be known yet: the worker then asks again next tick."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return asyncio.run(ends(owned))
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_end_offsets_are_the_broker_s_and_keyed_as_asked(stack: Stack, tmp_path: Path) -> None:
    settings = Settings(**plant_raw(tmp_path, stack))
    prepare_topics(settings)
    topic = settings.topic(topics.READINGS)
    produce(settings, topic, [(f"asset-{i % 7}".encode(), b"x") for i in range(50)])
    ends = EndOffsets(AdminClient(kafka_clients.admin_config(settings)))
    owned = [TP(topic, p) for p in range(settings.pipeline.kafka.partitions)]

    got = wait_for_answer(ends, owned)

    assert set(got) == set(owned)
    assert sum(got.values()) == 50 and all(v >= 0 for v in got.values())
    assert asyncio.run(ends([])) == {}


def test_an_unknown_partition_is_an_error_not_an_end(stack: Stack, tmp_path: Path) -> None:
    settings = Settings(**plant_raw(tmp_path, stack))
    prepare_topics(settings)
    ends = EndOffsets(AdminClient(kafka_clients.admin_config(settings)), timeout_s=2.0)
    with pytest.raises(KafkaException):
        asyncio.run(ends([TP(settings.topic(topics.READINGS), 999)]))
