"""Broker or registry unreachable at start: a clear message naming the address and the fix,
retries with backoff, and no crash loop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plantstream.core.config import Settings
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.helpers import spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration


def test_sink_waits_for_an_unreachable_broker(tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    raw["pipeline"]["kafka"]["bootstrap"] = dead
    raw["pipeline"]["registry"]["url"] = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    config = write_config(tmp_path, raw)
    log = tmp_path / "sink.log"
    sink = spawn_cli(config, "sink", "storage", log=log)
    try:
        wait_for(lambda: log.read_text().count("is unreachable") >= 2, 20, what="two retry messages")
        assert sink.poll() is None, "the sink must keep waiting, not exit"
    finally:
        assert stop(sink) == 0
    text = log.read_text()
    assert f"Kafka at {dead} is unreachable" in text
    assert "Fix: start it (`plantstream kafka start`) or set KAFKA_BOOTSTRAP" in text
    assert "Traceback" not in text


def test_producer_waits_for_an_unreachable_registry(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    raw["pipeline"]["registry"]["url"] = url
    config = write_config(tmp_path, raw)
    Settings(**raw)
    log = tmp_path / "producer.log"
    producer = spawn_cli(config, "produce", "modbus", log=log)
    try:
        wait_for(lambda: log.read_text().count("is unreachable") >= 2, 20, what="two retry messages")
        time.sleep(0.5)
        assert producer.poll() is None
    finally:
        stop(producer)
    text = log.read_text()
    assert f"schema registry at {url} is unreachable" in text
    assert "Fix: start it with `plantstream kafka start`, or set pipeline.registry.url / SCHEMA_REGISTRY_URL" in text
    assert "retrying in 1s" in text and "retrying in 2s" in text  # backoff, not a tight loop


def test_topics_apply_gives_up_with_a_clear_error(tmp_path: Path, clean_env: None) -> None:
    import subprocess
    import sys

    raw = plant_raw(tmp_path)
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{free_port()}"
    raw["pipeline"]["registry"]["url"] = "http://127.0.0.1:1/apis/ccompat/v7"
    config = write_config(tmp_path, raw)
    env_cmd = [sys.executable, "-m", "plantstream", "--config", str(config), "topics", "apply"]
    # bounded: the command gives up after about 5 s of waiting
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 1
    assert "is unreachable" in proc.stderr and "gave up after 5s" in proc.stderr
