"""The local broker's listener lines in server.properties, with and without an external listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from plantstream.core.config import Settings
from plantstream.stack import kafka
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


def cluster_props(tmp_path: Path, node_id: int, **kafka_: Any) -> dict[str, str]:
    raw: dict[str, Any] = {
        **PLANT,
        "pipeline": {
            "state_dir": str(tmp_path),
            "kafka": {"broker_port": 19092, "controller_port": 19093, "brokers": 3, **kafka_},
        },
    }
    s = Settings(**raw)
    node = kafka.nodes(s)[node_id - 1]
    return dict(line.partition("=")[::2] for line in _properties(s, node.data, node, 3).splitlines())


def test_three_nodes_are_voters_on_their_own_ports_and_replicate_internal_topics(
    tmp_path: Path, clean_env: None
) -> None:
    single = props(tmp_path)
    assert single["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert single["offsets.topic.replication.factor"] == "1" and single["min.insync.replicas"] == "1"
    assert "num.io.threads" not in single  # the single broker keeps Kafka's defaults
    nodes = [cluster_props(tmp_path, n) for n in (1, 2, 3)]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"
    for n, p in enumerate(nodes, 1):
        assert p["node.id"] == str(n)
        assert p["controller.quorum.voters"] == voters
        assert (
            p["listeners"]
            == f"PLAINTEXT://127.0.0.1:{19092 + 100 * (n - 1)},CONTROLLER://127.0.0.1:{19093 + 100 * (n - 1)}"
        )
        assert p["log.dirs"].endswith(f"cluster-3/node-{n}/data")
        for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic", "default"):
            assert p[f"{key}.replication.factor"] == "3"
        assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
        assert p["num.io.threads"] == "2" and p["log.cleaner.dedupe.buffer.size"] == str(16 * 2**20)
    assert len({p["log.dirs"] for p in nodes}) == 3


def test_external_listener_is_for_a_single_broker(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(StackError, match=r"one local broker only.*Fix"):
        cluster_props(tmp_path, 1, external_listener=EXTERNAL)


def test_each_topology_has_its_own_storage_and_heap(tmp_path: Path, clean_env: None) -> None:
    raw: dict[str, Any] = {**PLANT, "pipeline": {"state_dir": str(tmp_path)}}
    s = Settings(**raw)
    one, three = kafka.nodes(s, 1), kafka.nodes(s, 3)
    assert one[0].data == tmp_path.resolve() / "kafka" / "data"
    assert {n.home.parent for n in three} == {tmp_path.resolve() / "kafka" / "cluster-3"}
    assert kafka.heap_mb(s, 1) == 768 and kafka.heap_mb(s, 3) == 384
    assert kafka.replication_defaults(1) == (1, 1) and kafka.replication_defaults(3) == (3, 2)
