"""`plantstream topics apply` is idempotent and sets the declared configs; `plantstream tail` decodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import frame_codec, produce

pytestmark = pytest.mark.integration


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")}
    return subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_topics_apply_twice_and_configs(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    first = cli(config, "topics", "apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created ") == len(topics.TOPICS)
    second = cli(config, "topics", "apply")
    assert second.returncode == 0 and "topics: up to date" in second.stdout and "created" not in second.stdout
    # the same schema ids both times: registration is idempotent
    ids = [line for line in first.stdout.splitlines() if line.startswith("schema ")]
    assert ids == [line for line in second.stdout.splitlines() if line.startswith("schema ")]

    admin = AdminClient(kafka_clients.admin_config(settings))
    md = admin.list_topics(timeout=10).topics
    for spec in topics.TOPICS:
        name = settings.topic(spec.base)
        assert len(md[name].partitions) == 3
        described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)])
        conf = next(iter(described.values())).result()
        for key, value in spec.kafka_configs().items():  # retention, or compaction's settings
            assert conf[key].value == value, (name, key)
        assert conf["cleanup.policy"].value == spec.cleanup

    # a config drifted by hand is put back; partitions only grow
    drift = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.topic(topics.KPI), incremental_configs=[drift])
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result()
    raw["pipeline"]["kafka"]["partitions"] = 4
    config = write_config(tmp_path, raw)
    third = cli(config, "topics", "apply")
    assert third.returncode == 0 and f"grew {settings.topic(topics.KPI)} to 4 partitions" in third.stdout
    conf = next(
        iter(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, settings.topic(topics.KPI))]).values())
    ).result()
    assert conf["retention.ms"].value == topics.TopicSpec(topics.KPI, None, 90).kafka_configs()["retention.ms"]


def test_tail_decodes_frames_and_dead_letters(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    assert cli(config, "topics", "apply").returncode == 0
    codec = frame_codec(settings)
    t = 1_767_225_600_000_000
    frame = {
        "asset": "a.b.c.d.e",
        "device": "plc",
        "seq": 0,
        "producer_id": "p",
        "scan_time": t,
        "historical": True,
        "buffered": False,
        "samples": [{"tag": "temp", "source_time": t, "value": 21.5, "quality": "GOOD", "unit": "degC"}],
    }
    produce(settings, settings.topic(topics.READINGS), [(b"a.b.c.d.e", codec.encode(frame)), (b"a.b.c.d.e", b"junk")])
    produce(settings, settings.topic(topics.DEADLETTER), [(b"k", b"raw-bytes")])
    out = cli(config, "tail", "plant.readings.v1", "--max", "2", "--idle-timeout", "20")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert lines[0]["key"] == "a.b.c.d.e"
    assert lines[0]["value"]["samples"][0] == {
        "tag": "temp",
        "source_time": "2026-01-01T00:00:00+00:00",
        "value": 21.5,
        "quality": "GOOD",
        "unit": "degC",
    }
    assert "too short" in lines[1]["error"] or "magic" in lines[1]["error"]
    dead = cli(config, "tail", settings.topic(topics.DEADLETTER), "--max", "1", "--idle-timeout", "20")
    doc = json.loads(dead.stdout.splitlines()[0])
    assert doc["value_base64"] == "cmF3LWJ5dGVz"  # b"raw-bytes"
    missing = cli(config, "tail", "no.such.topic", "--max", "1", "--idle-timeout", "5")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
