"""Shared fixtures: one real Kafka broker + schema registry per test session, isolated topics per test.

With KAFKA_BOOTSTRAP and SCHEMA_REGISTRY_URL set, the tests use that stack. Otherwise, where a
Docker engine answers, testcontainers starts Kafka and Apicurio; else (as on our CI machines, which
have no engine) the project's own launcher starts them on free loopback ports under a temporary
state folder. PLANTSTREAM_TEST_STACK=local|docker forces the choice.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from plantstream.core.config import DEMO_CONFIG, Settings

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.pg"]  # the `pg` fixture: a real PostgreSQL server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_metrics_base() -> int:
    """A `metrics.base_port` whose every component port (base + offset + 10 per instance) is free now.

    Below the kernel's ephemeral range (32768-60999): a base from `free_port()` lies inside it, where
    the tests' own client connections take the ports next to it (two workers once found theirs taken)."""
    from plantstream.core.metrics import INSTANCE_PORT_STEP, PORT_OFFSETS

    wanted = [o + i * INSTANCE_PORT_STEP for o in PORT_OFFSETS.values() for i in range(3)]
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000)
        try:
            with contextlib.ExitStack() as held:
                for offset in wanted:
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of metrics ports below 32000")


@dataclass
class Stack:
    bootstrap: str
    registry_url: str
    state_dir: Path | None  # set when the tests started the stack themselves
    launcher_settings: Settings | None
    # the launcher's broker only: its external listener (real port) advertises proxy_port, where a test
    # may put a StallProxy forwarding to external_port; clients bootstrapping there stay on the proxy
    external_port: int | None = None
    proxy_port: int | None = None


def _launcher_settings(state_dir: Path) -> Settings:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["pipeline"]["state_dir"] = str(state_dir)
    raw["pipeline"]["kafka"].update(broker_port=free_port(), controller_port=free_port(), heap_mb=768)
    # nothing listens on the advertised port until a test starts a proxy there (tests/faults/proxy.py)
    raw["pipeline"]["kafka"]["external_listener"] = {"port": free_port(), "advertised_port": free_port()}
    raw["pipeline"]["registry"]["port"] = free_port()
    return Settings(**raw)


def _docker_engine_answers() -> bool:
    try:
        import docker

        return bool(docker.from_env(timeout=3).ping())
    except Exception:  # no client library, no socket, engine down: use the local launcher
        return False


def _docker_stack() -> Iterator[Stack]:
    import urllib.request

    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.core.container import DockerContainer

    from tests.helpers import wait_for

    with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka_c:
        registry_c = DockerContainer("apicurio/apicurio-registry:3.0.9").with_exposed_ports(8080)
        with registry_c:
            url = f"http://{registry_c.get_container_host_ip()}:{registry_c.get_exposed_port(8080)}/apis/ccompat/v7"

            def ready() -> bool:
                try:
                    with urllib.request.urlopen(f"{url}/subjects", timeout=2) as r:
                        return bool(r.status == 200)
                except OSError:
                    return False

            wait_for(ready, 120, what="the Apicurio container")
            yield Stack(kafka_c.get_bootstrap_server(), url, None, None)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    url = os.environ.get("SCHEMA_REGISTRY_URL")
    if bootstrap and url:
        yield Stack(bootstrap, url, None, None)
        return
    choice = os.environ.get("PLANTSTREAM_TEST_STACK", "auto")
    if choice == "docker" or (choice == "auto" and _docker_engine_answers()):
        yield from _docker_stack()
        return
    from plantstream.stack import kafka, registry

    state = tmp_path_factory.mktemp("stack")
    settings = _launcher_settings(state)
    k = kafka.start(settings)
    r = registry.start(settings)
    assert k.bootstrap and r.url
    try:
        ext = settings.pipeline.kafka.external_listener
        assert ext is not None
        yield Stack(k.bootstrap, r.url, state, settings, ext.port, ext.advertised_port)
    finally:
        registry.stop(settings)
        kafka.stop(settings)


def plant_raw(
    tmp_path: Path, stack: Stack | None = None, *, opcua: bool = False, mqtt: bool = False, **pipeline: Any
) -> dict[str, Any]:
    """The demo plant as a dict, with an isolated topic prefix, state folder and (optionally) the stack.

    Its OPC UA devices are left out unless `opcua` (most tests drive only the Modbus devices and give
    them all one port); with `opcua`, each OPC UA endpoint moves to its own free loopback port. Its
    MQTT and Sparkplug B devices are left out unless `mqtt`; then the local mosquitto gets a free port.
    """
    raw: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())
    if not opcua:
        raw["devices"] = [d for d in raw["devices"] if d["protocol"] != "opcua"]
    if mqtt:
        raw["pipeline"]["mqtt"]["local_port"] = free_port()
    else:
        raw["devices"] = [d for d in raw["devices"] if d["protocol"] not in ("mqtt", "sparkplug_b")]
    ports: dict[str, int] = {}
    for d in raw["devices"]:
        if d["protocol"] == "opcua":
            u = urlsplit(d["endpoint"])
            port = ports.setdefault(u.netloc, free_port())
            d["endpoint"] = urlunsplit(u._replace(netloc=f"127.0.0.1:{port}"))
    p = raw["pipeline"]
    p["state_dir"] = str(tmp_path / "state")
    p["group_id"] = f"ps-{uuid.uuid4().hex[:8]}"
    if stack is not None:
        p["kafka"]["bootstrap"] = stack.bootstrap
        p["kafka"]["topic_prefix"] = f"t{uuid.uuid4().hex[:8]}."
        p["kafka"]["partitions"] = 3
        p["registry"]["url"] = stack.registry_url
    for section, values in pipeline.items():
        if isinstance(values, dict):
            p.setdefault(section, {}).update(values)
        else:
            p[section] = values
    return raw


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that build Settings from files must not see the developer's deployment env."""
    for name in list(os.environ):
        if name.startswith("PLANTSTREAM_") or name in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL"):
            monkeypatch.delenv(name, raising=False)
