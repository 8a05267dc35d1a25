"""Alarm commands reach the worker that owns the asset: with two workers in one group, each holds the same
partition numbers of plant.readings.v1 and plant.alarm-commands.v1 (Faust's co-partitioned assignment, as
the broker reports the group), and an acknowledgement of an alarm on either worker's assets is applied to
that alarm's current incident (a command applied by the other worker would find no alarm to acknowledge)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.records import alarm_command
from tests.conftest import Stack, plant_raw
from tests.helpers import consume_all, decoder, prepare_topics, produce, stop, wait_for
from tests.integration.plant_history import partition_of, spawn_worker, worker_config
from tests.integration.test_plant_model import live_frame, send_frames

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

US = 1_000_000
ASSETS = [
    "demo.springfield.stamping.line1.press1",
    "demo.springfield.machining.line2.cnc1",
    "demo.springfield.utilities.water.pump1",
    "demo.springfield.packaging.line3.packer1",
]


def members(settings: Settings) -> list[tuple[set[int], set[int]]]:
    """Each member of the worker group: (readings partitions, alarm-commands partitions) it holds."""
    admin = AdminClient(kafka_clients.admin_config(settings))
    group = f"{settings.pipeline.group_id}-processor"
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return []
    out = []
    for m in desc.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        out.append(
            (
                {tp.partition for tp in tps if tp.topic == settings.topic(topics.READINGS)},
                {tp.partition for tp in tps if tp.topic == settings.topic(topics.ALARM_COMMANDS)},
            )
        )
    return out


def alarm_states(settings: Settings) -> dict[str, dict[str, Any]]:
    dec = decoder(settings, schemas.ALARM_STATE)
    latest: dict[str, dict[str, Any]] = {}
    for m in consume_all(settings, settings.topic(topics.ALARM_STATE), 10**6, timeout=1):
        rec = dec.decode(m.value())
        latest[rec["alarm"]] = rec
    return latest


def test_commands_follow_the_readings_partitions(stack: Stack, tmp_path: Path) -> None:
    rules = [
        {"name": "hot", "asset": a, "kind": "threshold", "tag": "oil_temperature", "above": 75.0, "suppressed_in": []}
        for a in ASSETS
    ]
    for i, r in enumerate(rules):
        r["name"] = f"hot-{i}"
    raw = plant_raw(tmp_path, stack, metrics={"enabled": False}, alerts=rules)
    raw["pipeline"]["kafka"]["partitions"] = 4
    base = Settings(**raw)
    spread = {partition_of(a, 4) for a in ASSETS}
    assert len(spread) >= 2, "the assets must lie on several partitions"
    prepare_topics(base)
    _, a_config = worker_config(tmp_path, raw, "a")
    _, b_config = worker_config(tmp_path, raw, "b")
    a = spawn_worker(tmp_path, a_config, "a")
    b = spawn_worker(tmp_path, b_config, "b")
    try:

        def split() -> bool:
            got = members(base)
            return len(got) == 2 and all(r for r, _ in got) and set().union(*(r for r, _ in got)) == set(range(4))

        wait_for(split, 90, 1.0, "two workers splitting the partitions")
        for readings, commands in members(base):
            assert readings == commands, "a worker must hold the same partitions of readings and commands"
        # an alarm on every asset, on both workers' partitions
        now = int(time.time()) * US
        send_frames(base, [live_frame(x, now - US, 1, oil_temperature=90.0) for x in ASSETS])
        alarms = {f"{x}/hot-{i}" for i, x in enumerate(ASSETS)}
        wait_for(
            lambda: all(alarm_states(base).get(k, {}).get("state") == "UNACK" for k in alarms),
            60,
            1.0,
            "every alarm UNACK",
        )
        incidents = {k: s["alert_id"] for k, s in alarm_states(base).items() if k in alarms}
        codec = kafka_clients.registry(base).codec(topics.subject(base, topics.ALARM_COMMANDS), schemas.ALARM_COMMAND)
        produce(
            base,
            base.topic(topics.ALARM_COMMANDS),
            [
                (
                    x.encode(),
                    codec.encode(
                        alarm_command(
                            command_id=uuid.uuid4().hex,
                            asset=x,
                            rule=f"hot-{i}",
                            action="ACKNOWLEDGE",
                            user="ann",
                            role="operator",
                            time=time.time_ns() // 1000,
                            alert_id=incidents[f"{x}/hot-{i}"],
                        )
                    ),
                )
                for i, x in enumerate(ASSETS)
            ],
        )
        wait_for(
            lambda: all(alarm_states(base).get(k, {}).get("state") == "ACKED" for k in alarms),
            60,
            1.0,
            "every alarm ACKED by the worker that owns it",
        )
        states = alarm_states(base)
        assert {k: states[k]["alert_id"] for k in alarms} == incidents
        assert all(states[k]["acked_by"] == "ann" for k in alarms)
    finally:
        assert stop(a) == 0, (tmp_path / "a" / "worker.log").read_text()[-3000:]
        assert stop(b) == 0, (tmp_path / "b" / "worker.log").read_text()[-3000:]
