"""Avro serde: golden bytes of the Confluent wire format, cross-checked with confluent_kafka's own deserializer."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from plantstream.core.serde import Codec, DecodeError, Decoder, split_header

T = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z

FRAME = {
    "asset": "a.b.c.d.e",
    "device": "plc1",
    "seq": 3,
    "producer_id": "p",
    "scan_time": T,
    "historical": False,
    "buffered": True,
    "samples": [
        {"tag": "t1", "source_time": T, "value": 1.5, "quality": "GOOD", "unit": "bar"},
        {"tag": "n", "source_time": T + 1, "value": None, "quality": "BAD", "unit": ""},
        {"tag": "s", "source_time": T + 2, "value": "ok", "quality": "UNCERTAIN", "unit": ""},
        {"tag": "b", "source_time": T + 3, "value": True, "quality": "GOOD", "unit": ""},
        {"tag": "i", "source_time": T + 4, "value": -2, "quality": "GOOD", "unit": ""},
    ],
}

# Frozen: a change here breaks every consumer already reading the topic.
GOLDEN = bytes.fromhex(
    "0000000007"  # magic 0, schema id 7
    "12612e622e632e642e65"  # asset
    "08706c6331"  # device
    "06"  # seq 3
    "0270"  # producer_id
    "808082e288d2a306"  # scan_time
    "00"
    "01"  # historical false, buffered true
    "0a"  # 5 samples
    "047431808082e288d2a30604000000000000f83f0006626172"  # t1 = double 1.5, GOOD, bar
    "026e828082e288d2a306000400"  # n = null, BAD
    "0273848082e288d2a30608046f6b0200"  # s = string ok, UNCERTAIN
    "0262868082e288d2a30606010000"  # b = boolean true
    "0269888082e288d2a30602030000"  # i = long -2
    "00"  # end of array
)


def test_golden_bytes() -> None:
    assert Codec(schemas.READING_FRAME, 7).encode(FRAME) == GOLDEN


def test_round_trip_keeps_types() -> None:
    data = Codec(schemas.READING_FRAME, 7).encode(FRAME)
    got = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME)).decode(data)
    assert got == FRAME
    assert isinstance(got["samples"][4]["value"], int) and not isinstance(got["samples"][4]["value"], bool)
    assert got["samples"][3]["value"] is True


def test_confluent_deserializer_reads_our_bytes() -> None:
    """What an IT system does: confluent_kafka's AvroDeserializer with the registered schema."""
    client = SchemaRegistryClient.new_client({"url": "mock://golden"})
    sid = client.register_schema("plant.readings.v1-value", Schema(schemas.schema_text(schemas.READING_FRAME), "AVRO"))
    data = Codec(schemas.READING_FRAME, sid).encode(FRAME)
    rec = AvroDeserializer(client)(data, SerializationContext("plant.readings.v1", MessageField.VALUE))
    assert rec["asset"] == FRAME["asset"]
    assert rec["scan_time"].timestamp() == T / 1e6  # logical type seen as a datetime by other clients
    assert [s["value"] for s in rec["samples"]] == [1.5, None, "ok", True, -2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "empty message"),
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x00\x00\x07abc", "magic byte 1"),
        (GOLDEN[:12], "does not match schema id 7"),
        (b"\x00\x00\x00\x00\x07" + b"\xff" * 30, "does not match schema id 7"),
    ],
)
def test_bad_input_names_the_problem(data: bytes | None, reason: str) -> None:
    dec = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME))
    with pytest.raises(DecodeError, match=reason):
        dec.decode(data)


def test_unknown_schema_id_is_a_decode_error() -> None:
    def fetch(schema_id: int) -> str:
        raise LookupError(f"schema {schema_id} not found")

    with pytest.raises(DecodeError, match="schema id 7 cannot be fetched"):
        Decoder(fetch).decode(GOLDEN)


def test_split_header() -> None:
    sid, body = split_header(GOLDEN)
    assert sid == 7 and bytes(body) == GOLDEN[5:]


@pytest.mark.parametrize("name", schemas.ALL)
def test_every_field_is_documented(name: str) -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record":
                assert node.get("doc"), f"{path}: record without doc"
                for f in node["fields"]:
                    assert f.get("doc"), f"{name}: field {path}.{f['name']} has no doc"
                    walk(f["type"], f"{path}.{f['name']}")
            elif node.get("type") == "array":
                walk(node["items"], path)
        elif isinstance(node, list):
            for n in node:
                walk(n, path)

    walk(json.loads(schemas.schema_text(name)), name)
