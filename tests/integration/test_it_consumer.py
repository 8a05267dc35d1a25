"""What an IT system does: read plant.readings.v1 with nothing but confluent_kafka's
DeserializingConsumer + AvroDeserializer against the registry, and get exactly what the producer read."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.simulators.modbus import PlantSimulator
from producers.publisher import Publisher
from producers.readers.modbus import run_modbus_producer
from tests.conftest import Stack, free_port, plant_raw
from tests.helpers import prepare_topics

pytestmark = pytest.mark.integration


async def produce_from_simulator(settings: Settings, seconds: float) -> tuple[list[dict[str, Any]], RunStats]:
    stats = RunStats("producer-modbus")
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    sink = Publisher(settings, codec, stats)
    sent: list[dict[str, Any]] = []

    def emit(frame: dict[str, Any]) -> None:
        sent.append(frame)
        sink.emit(frame)

    stop = asyncio.Event()
    async with PlantSimulator(settings):
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await run_modbus_producer(settings, emit, stop, stats)
    assert sink.close(30) == 0
    return sent, stats


def test_independent_consumer_reads_producer_frames(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.2)
    settings = Settings(**raw)
    prepare_topics(settings)
    sent, stats = asyncio.run(produce_from_simulator(settings, 3.0))
    assert len(sent) >= 4 * 10 and stats.get("frames_acked") == len(sent)
    assert all(s["quality"] == "GOOD" for f in sent for s in f["samples"])

    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": f"it-system-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url})),
        }
    )
    consumer.subscribe([settings.topic(topics.READINGS)])
    got: dict[tuple[str, int], Any] = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            value = msg.value()
            assert msg.key() == value["asset"]
            got[(value["device"], value["seq"])] = value
    finally:
        consumer.close()

    assert len(got) == len(sent)
    for frame in sent:
        other = got[(frame["device"], frame["seq"])]
        # timestamps arrive as timezone-aware datetimes, values with their Avro types
        assert other["scan_time"].tzinfo is not None
        assert int(other["scan_time"].astimezone(UTC).timestamp() * 1e6) == pytest.approx(frame["scan_time"], abs=1)
        assert [(s["tag"], s["value"], s["quality"], s["unit"]) for s in other["samples"]] == [
            (s["tag"], s["value"], s["quality"], s["unit"]) for s in frame["samples"]
        ]
    # per asset, frames arrive in scan order (one partition per asset key)
    by_device: dict[str, list[int]] = {}
    for dev, seq in got:
        by_device.setdefault(dev, []).append(seq)
    assert all(seqs == list(range(len(seqs))) for seqs in by_device.values())
