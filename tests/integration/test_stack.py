"""The local stack launcher and the Apicurio registry through confluent_kafka's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from plantstream.stack import kafka, registry
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def launcher(stack: Stack):  # type: ignore[no-untyped-def]
    if stack.launcher_settings is None:
        pytest.skip("the tests run against an external stack (KAFKA_BOOTSTRAP set); launcher not in use")
    return stack.launcher_settings


def test_start_is_idempotent_and_status_reports(stack: Stack) -> None:
    s = launcher(stack)
    before = kafka.status(s)
    again = kafka.start(s)
    assert again.pid == before.pid and again.bootstrap == stack.bootstrap
    assert registry.start(s).url == stack.registry_url
    env = {
        **os.environ,
        "PLANTSTREAM_PIPELINE__STATE_DIR": s.pipeline.state_dir,
        "PLANTSTREAM_PIPELINE__KAFKA__BROKER_PORT": str(s.pipeline.kafka.broker_port),
    }
    env.pop("KAFKA_BOOTSTRAP", None)
    env.pop("SCHEMA_REGISTRY_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "kafka", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["running"] is True
    assert doc["bootstrap"] == stack.bootstrap and doc["registry_url"] == stack.registry_url


def test_status_says_down_for_an_empty_state_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")}
    env["PLANTSTREAM_PIPELINE__STATE_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "kafka", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc == {**doc, "running": False, "bootstrap": None, "registry_url": None}


def test_registry_speaks_confluent_and_survives_restart(stack: Stack) -> None:
    client = SchemaRegistryClient({"url": stack.registry_url})
    subject = f"it-{uuid.uuid4().hex[:8]}-value"
    v1 = '{"type":"record","name":"R","namespace":"it","fields":[{"name":"a","type":"long"}]}'
    v2 = (
        '{"type":"record","name":"R","namespace":"it","fields":[{"name":"a","type":"long"},'
        '{"name":"b","type":"string","default":""}]}'
    )
    bad = (
        '{"type":"record","name":"R","namespace":"it","fields":[{"name":"a","type":"long"},'
        '{"name":"c","type":"string"}]}'
    )
    id1 = client.register_schema(subject, Schema(v1, "AVRO"))
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    assert client.test_compatibility(subject, Schema(v2, "AVRO")) is True
    assert client.test_compatibility(subject, Schema(bad, "AVRO")) is False
    id2 = client.register_schema(subject, Schema(v2, "AVRO"))
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, Schema(bad, "AVRO"))
    assert client.lookup_schema(subject, Schema(v1, "AVRO")).schema_id == id1
    assert [v for v in client.get_versions(subject)] == [1, 2]

    s = stack.launcher_settings
    if s is None:
        return  # an external registry: its persistence is not ours to restart
    registry.stop(s)
    registry.start(s)
    fresh = SchemaRegistryClient({"url": stack.registry_url})
    assert fresh.get_latest_version(subject).schema_id == id2
    assert '"b"' in fresh.get_schema(id2).schema_str
    assert fresh.get_compatibility(subject) == "BACKWARD"
