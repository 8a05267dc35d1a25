"""Our fast decode of MQTT 5 PUBLISH packets without properties gives what paho's own decoder gives; packets
with properties and MQTT 3.1.1 go through paho's path."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from producers.readers.mqtt_client import BufferedClient


def publish(topic: bytes, payload: bytes, qos: int, *, dup: bool, retain: bool, props: bytes) -> tuple[int, bytes]:
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = len(topic).to_bytes(2, "big") + topic + ((4242).to_bytes(2, "big") if qos else b"")
    return header, body + props + payload


def handled(protocol: MQTTProtocolVersion, header: int, packet: bytes) -> mqtt.MQTTMessage:
    c = BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    got: list[mqtt.MQTTMessage] = []
    c.on_message = lambda _c, _u, m: got.append(m)
    c._in_packet = {"command": header, "packet": packet}  # type: ignore[typeddict-item]
    assert c._handle_publish() == mqtt.MQTT_ERR_SUCCESS
    (msg,) = got
    return msg


def fields(m: Any) -> tuple[Any, ...]:
    return (m.topic, m.payload, m.qos, m.mid, m.dup, m.retain)


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("props", [b"\x00", b"\x05\x02\x00\x00\x00\x3c"])  # none / message expiry 60 s
@pytest.mark.parametrize(("dup", "retain"), [(False, False), (True, True)])
@pytest.mark.parametrize("payload", [b"", b'{"value": 12.5}'])
def test_same_message_as_paho(qos: int, props: bytes, dup: bool, retain: bool, payload: bytes) -> None:
    header, packet = publish(b"plant/line5/labeler1/speed", payload, qos, dup=dup, retain=retain, props=props)
    ours = handled(MQTTProtocolVersion.MQTTv5, header, packet)
    ref = _packet.decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
    assert fields(ours) == (ref.topic.decode(), ref.payload, ref.qos, ref.mid, ref.dup, ref.retain)
    assert fields(ours)[:2] == ("plant/line5/labeler1/speed", payload)
    if props != b"\x00":
        assert (
            ours.properties is not None and getattr(ours.properties, "MessageExpiryInterval", None) == 60
        )  # paho parsed them


def test_mqtt_311_is_paho_path() -> None:
    header, packet = publish(b"a/b", b"1", 1, dup=False, retain=False, props=b"")
    assert fields(handled(MQTTProtocolVersion.MQTTv311, header, packet)) == ("a/b", b"1", 1, 4242, False, False)
