"""`plantstream status` over the real broker: message counts and lag per consumer group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import prepare_topics, produce

pytestmark = pytest.mark.integration


def test_status_reports_counts_and_lag(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    readings = settings.topic(topics.READINGS)
    produce(settings, readings, [(f"k{i % 3}".encode(), b"x") for i in range(30)])
    group = f"{settings.pipeline.group_id}-sink-test"
    c = Consumer(kafka_clients.consumer_config(settings, group, "test"))
    c.subscribe([readings])
    got = 0
    while got < 12:
        got += len([m for m in c.consume(12 - got, timeout=5) if not m.error()])
    c.commit(asynchronous=False)
    c.close()
    # a group that has committed one partition only: the others count whole (it starts them from the earliest)
    one = f"{settings.pipeline.group_id}-sink-one"
    c = Consumer(kafka_clients.consumer_config(settings, one, "test"))
    _low, in_p0 = c.get_watermark_offsets(TopicPartition(readings, 0), timeout=10)
    c.commit(offsets=[TopicPartition(readings, 0, in_p0)], asynchronous=False)
    c.close()

    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")}
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    by_topic = {t["name"]: t for t in snap["topics"]}
    assert by_topic[readings]["messages"] == 30 and by_topic[readings]["partitions"] == 3
    assert {g["group"]: g["lag"] for g in snap["groups"]} == {group: {readings: 18}, one: {readings: 30 - in_p0}}
    text = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    assert readings in text and group in text
