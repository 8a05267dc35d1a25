"""The local broker's listener lines in server.properties, with and without an external listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from plantstream.core.config import Settings
from plantstream.stack.kafka import _properties
from plantstream.stack.process import StackError

PLANT: dict[str, Any] = {
    "plant": {"assets": [{"path": "a.b.c.d.e"}]},
    "devices": [],
}


def props(tmp_path: Path, **kafka: Any) -> dict[str, str]:
    raw: dict[str, Any] = {**PLANT, "pipeline": {"kafka": {"broker_port": 19092, "controller_port": 19093, **kafka}}}
    s = Settings(**raw)
    out: dict[str, str] = {}
    for line in _properties(s, tmp_path / "kafka" / "data").splitlines():
        key, _, value = line.partition("=")
        assert key not in out, f"{key} written twice"
        out[key] = value
    return out


SECURED = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_username": "ps",
    "sasl_password": "s3cret",
}
EXTERNAL = {"port": 19094, "advertised_port": 29094}


def test_plain_broker_without_external_listener_is_unchanged(tmp_path: Path, clean_env: None) -> None:
    p = props(tmp_path)
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"


def test_plain_broker_with_external_listener_advertises_the_forwarded_address(tmp_path: Path, clean_env: None) -> None:
    p = props(tmp_path, external_listener={**EXTERNAL, "advertised_host": "gateway.local"})
    assert p["listeners"] == ("PLAINTEXT://127.0.0.1:19092,EXTERNAL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19093")
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,EXTERNAL://gateway.local:29094"
    # the broker talks to itself on the main listener, never through the forwarder
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert p["controller.listener.names"] == "CONTROLLER"


def test_secured_broker_with_external_listener_uses_sasl_ssl_on_both(tmp_path: Path, clean_env: None) -> None:
    plain = props(tmp_path, **SECURED)
    assert "EXTERNAL" not in plain["listeners"]
    assert not any(k.startswith("listener.name.external.") for k in plain)
    p = props(tmp_path, **SECURED, external_listener=EXTERNAL)
    assert p["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092,EXTERNAL://127.0.0.1:29094"
    assert p["inter.broker.listener.name"] == "SASL_SSL"
    assert p["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT"
    jaas = p["listener.name.external.scram-sha-256.sasl.jaas.config"]
    assert jaas == p["listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config"]
    assert 'username="ps"' in jaas
    assert p["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"


def test_secured_broker_refuses_an_advertised_host_its_certificate_does_not_name(
    tmp_path: Path, clean_env: None
) -> None:
    with pytest.raises(StackError, match=r"advertised_host 'gateway.local'.*certificate.*Fix"):
        props(tmp_path, **SECURED, external_listener={**EXTERNAL, "advertised_host": "gateway.local"})


@pytest.mark.parametrize("port", [19092, 19093])
def test_external_port_must_differ_from_the_broker_and_controller_ports(
    tmp_path: Path, clean_env: None, port: int
) -> None:
    with pytest.raises(StackError, match=f"external_listener.port {port}.*Fix"):
        props(tmp_path, external_listener={"port": port, "advertised_port": 29094})


def test_external_listener_needs_both_ports(clean_env: None) -> None:
    with pytest.raises(ValidationError, match="advertised_port"):
        raw: dict[str, Any] = {**PLANT, "pipeline": {"kafka": {"external_listener": {"port": 19094}}}}
        Settings(**raw)


def test_external_listener_from_the_environment(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__KAFKA__EXTERNAL_LISTENER__PORT", "19094")
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__KAFKA__EXTERNAL_LISTENER__ADVERTISED_PORT", "29094")
    ext = Settings(**PLANT).pipeline.kafka.external_listener
    assert ext is not None and (ext.port, ext.advertised_host, ext.advertised_port) == (19094, "127.0.0.1", 29094)
