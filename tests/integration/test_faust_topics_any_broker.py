"""faust_compat.create_topics_through_any_broker against the real broker: a broker the client knows but
cannot reach (a cluster node SIGKILLed and not yet fenced) no longer stops Faust from declaring its topics;
the topic is created through a broker that answers."""

from __future__ import annotations

import socket
import uuid

import faust
import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import NodeNotReadyError
from aiokafka.structs import BrokerMetadata
from confluent_kafka.admin import AdminClient
from mode import Service

from processors.worker import faust_compat
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


async def test_topics_are_declared_through_a_broker_that_answers(stack: Stack) -> None:
    app = faust.App(f"anybroker-{uuid.uuid4().hex[:8]}", broker=f"kafka://{stack.bootstrap}", web_enabled=False)
    faust_compat.create_topics_through_any_broker(app)
    faust_compat.create_topics_through_any_broker(app)  # idempotent
    client = AIOKafkaClient(bootstrap_servers=stack.bootstrap)
    await client.bootstrap()
    try:
        live = {b.nodeId for b in client.cluster.brokers()}
        dead = min(live) - 1  # asked first: the lowest id, like node 1 of a cluster with node 1 down
        known = [BrokerMetadata(dead, "127.0.0.1", closed_port(), None), *client.cluster.brokers()]
        client.cluster._brokers[dead] = known[0]
        client.cluster.brokers = lambda: known  # the dead one listed first (a set's order is arbitrary)

        owner = Service()
        unpatched = faust.App(f"anybroker-{uuid.uuid4().hex[:8]}", broker=f"kafka://{stack.bootstrap}")
        with pytest.raises(NodeNotReadyError):  # Faust's own lookup asks the first broker only
            await unpatched.transport._get_controller_node(owner, client)
        for transport in (app.transport, app.producer_transport):
            assert await transport._get_controller_node(owner, client) in live

        topic = f"anybroker-{uuid.uuid4().hex[:8]}"
        await app.producer_transport._really_create_topic(owner, client, topic, 2, 1)
        meta = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(topic, timeout=10)
        assert len(meta.topics[topic].partitions) == 2
    finally:
        await client.close()
