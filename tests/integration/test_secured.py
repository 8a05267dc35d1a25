"""The secured stack: the launcher's broker with TLS and SASL/SCRAM, and the whole demo pipeline over it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantstream.core.config import Settings
from plantstream.stack import kafka
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw, write_config

pytestmark = pytest.mark.integration

PASSWORD = "Sx-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def secured(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A secured broker of its own (the session registry is reused: schemas travel over loopback HTTP)."""
    tmp = tmp_path_factory.mktemp("secured")
    raw = plant_raw(tmp, stack, windows={"kpi_window_s": 5, "grace_s": 1}, metrics={"enabled": False})
    k = raw["pipeline"]["kafka"]
    k.pop("bootstrap")  # the launcher's broker, found through the state folder
    k.update(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="plantstream",
        broker_port=free_port(),
        controller_port=free_port(),
    )
    os.environ["PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD"] = PASSWORD
    settings = Settings(**raw)
    kafka.start(settings)
    try:
        yield raw
    finally:
        kafka.stop(settings)
        os.environ.pop("PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD", None)


def cli(config: Path, *args: str, password: str = PASSWORD, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")}
    env["PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_demo_pipeline_over_tls_and_scram(secured: dict, tmp_path: Path) -> None:
    raw = json.loads(json.dumps(secured))
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    config = write_config(tmp_path, raw)
    home = Path(raw["pipeline"]["state_dir"]) / "kafka"
    props = (home / "server.properties").read_text()
    assert "listeners=SASL_SSL://127.0.0.1:" in props and "PLAINTEXT://" not in props.split("listeners=")[1][:40]
    proc = cli(config, "up", "--duration", "25")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["frames_acked"] > 50 and summary["frames_failed"] == 0
    assert summary["frames_stored"] == summary["frames_acked"]
    assert summary["kpi_windows"] > 0
    with sqlite3.connect(sqlite_path(Settings(**raw))) as db:
        assert db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == summary["frames_acked"]
    assert PASSWORD not in proc.stderr and PASSWORD not in proc.stdout  # secrets are never printed


def test_wrong_password_is_named_as_such(secured: dict, tmp_path: Path) -> None:
    config = write_config(tmp_path, secured)
    proc = cli(config, "topics", "apply", password="not-the-password", timeout=90)
    assert proc.returncode == 1
    assert "SASL authentication error" in proc.stderr and "Fix: check pipeline.kafka.sasl_username" in proc.stderr
    assert "not-the-password" not in proc.stderr
