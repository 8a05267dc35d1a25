"""MQTT topic and payload mapping: topic-per-tag, JSON paths, timestamp formats, UMH _historian, bad input."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from plantstream.core.config import MqttDevice, TagType
from producers.readers.mqtt_mapping import MqttMapping, filter_covers, minimal_filters
from producers.readers.mqtt_payload import BadInput, parse_time_us, plain_value, quality_of, typed_value

ASSET = "demo.springfield.packaging.line5.labeler1"
T0 = 1_700_000_000_000_000  # us


def device(**kw: Any) -> MqttDevice:
    base: dict[str, Any] = {"name": "labeler1", "asset": ASSET, "topic": "acme/spr/pack/line5/labeler1/{tag}"}
    tags = [{"name": "speed", "type": "float64", "unit": "m/min"}, {"name": "count", "type": "uint32"}]
    base.setdefault("tags", tags)
    base.update(kw)
    return MqttDevice.model_validate(base)


def test_topic_per_tag_plain_values_keep_arrival_time() -> None:
    m = MqttMapping([device()])
    di, samples, problems = m.decode("acme/spr/pack/line5/labeler1/speed", b"12.5", T0)
    assert (di, problems) == (0, [])
    assert samples == [{"tag": "speed", "source_time": T0, "value": 12.5, "quality": "GOOD", "unit": "m/min"}]
    _, samples, _ = m.decode("acme/spr/pack/line5/labeler1/count", b" 42\n", T0)
    assert samples[0]["value"] == 42 and isinstance(samples[0]["value"], int)
    assert m.filters == ["acme/spr/pack/line5/labeler1/+"]


def test_json_paths_timestamp_and_quality() -> None:
    d = device(
        payload="json",
        value_path="data.v",
        timestamp_path="$.ts",
        timestamp_format="iso8601",
        quality_path="q",
    )
    m = MqttMapping([d])
    body = b'{"data": {"v": 3}, "ts": "2024-01-02T03:04:05.25+01:00", "q": "uncertain"}'
    _, samples, _ = m.decode("acme/spr/pack/line5/labeler1/speed", body, T0)
    want_t = int(dt.datetime(2024, 1, 2, 2, 4, 5, 250000, tzinfo=dt.UTC).timestamp() * 1e6)
    assert samples == [{"tag": "speed", "source_time": want_t, "value": 3, "quality": "UNCERTAIN", "unit": "m/min"}]


def test_shared_json_topic_reads_each_tag_at_its_key() -> None:
    d = device(
        topic="acme/spr/pack/line5/labeler1/telemetry",
        payload="json",
        timestamp_path="t",
        tags=[{"name": "speed", "type": "float64"}, {"name": "count", "key": "cnt.total", "type": "int32"}],
    )
    m = MqttMapping([d])
    _, samples, problems = m.decode(d.topic, b'{"t": 1700000000123, "speed": 1.5, "cnt": {"total": 7}}', T0)
    assert [(s["tag"], s["value"], s["source_time"]) for s in samples] == [
        ("speed", 1.5, 1_700_000_000_123_000),
        ("count", 7, 1_700_000_000_123_000),
    ]
    assert problems == []


def test_umh_historian_shape_with_tag_groups_and_unconfigured_keys() -> None:
    d = device(
        topic="umh/v1/acme/spr/pack/line5/labeler1/_historian",
        payload="umh_historian",
        tags=[{"name": "temperature", "type": "float64"}, {"name": "head.pos", "type": "int32"}],
    )
    m = MqttMapping([d])
    assert m.filters == [d.topic + "/#"]  # "x/#" matches "x" too
    _, samples, problems = m.decode(d.topic, b'{"timestamp_ms": 1700000000500, "temperature": 21.5, "extra": 1}', T0)
    assert samples == [
        {"tag": "temperature", "source_time": 1_700_000_000_500_000, "value": 21.5, "quality": "GOOD", "unit": ""}
    ]
    assert [p.kind for p in problems] == ["unconfigured_tag"]
    _, samples, _ = m.decode(d.topic + "/head", b'{"timestamp_ms": 1700000000600, "pos": 4}', T0)
    assert [(s["tag"], s["value"]) for s in samples] == [("head.pos", 4)]


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        ("acme/spr/pack/line5/labeler1/nope", b"1", "unconfigured_topic"),
        ("acme/spr/pack/line5/labeler1/count", b"abc", "wrong_datatype"),
        ("acme/spr/pack/line5/labeler1/count", b"-1", "wrong_datatype"),  # uint32
        ("acme/spr/pack/line5/labeler1/speed", b"\xff\xfe", "malformed_payload"),
    ],
)
def test_bad_plain_input(topic: str, payload: bytes, kind: str) -> None:
    with pytest.raises(BadInput) as e:
        MqttMapping([device()]).decode(topic, payload, T0)
    assert e.value.kind == kind


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"value": ', "malformed_json"),
        (b'{"other": 1}', "missing_field"),
        (b'{"value": {"a": 1}, "ts": "2024-01-01T00:00:00"}', "wrong_datatype"),
        (b'{"value": 1, "ts": "yesterday"}', "bad_timestamp"),
    ],
)
def test_bad_json_input(payload: bytes, kind: str) -> None:
    m = MqttMapping([device(payload="json", timestamp_path="ts", timestamp_format="iso8601", tags=[{"name": "speed"}])])
    with pytest.raises(BadInput) as e:
        m.decode("acme/spr/pack/line5/labeler1/speed", payload, T0)
    assert e.value.kind == kind


def test_timestamp_formats() -> None:
    utc = ZoneInfo("UTC")
    assert parse_time_us(1700000000, "epoch_s", utc) == T0
    assert parse_time_us(1700000000.5, "epoch_s", utc) == T0 + 500_000
    assert parse_time_us("1700000000000", "epoch_ms", utc) == T0
    assert parse_time_us(T0, "epoch_us", utc) == T0
    assert parse_time_us(T0 * 1000 + 999, "epoch_ns", utc) == T0
    assert parse_time_us("2023-11-14T22:13:20Z", "iso8601", utc) == T0
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_time_us("14.11.2023 23:13:20", "%d.%m.%Y %H:%M:%S", berlin) == T0  # CET = UTC+1
    with pytest.raises(BadInput):
        parse_time_us(True, "epoch_ms", utc)


def test_values_quality_and_scaling() -> None:
    assert plain_value(b"true") is True and plain_value(b"off") == "off" and plain_value(b"") is None
    assert typed_value("1", TagType.BOOL) is True
    assert typed_value(3.0, TagType.INT16) == 3
    assert typed_value(10, TagType.FLOAT32, scale=0.1, offset=1) == pytest.approx(2.0)
    assert typed_value(2**64 - 1, TagType.UINT64) == float(2**64 - 1)  # beyond Avro long
    assert typed_value(5, TagType.STRING) == "5"
    with pytest.raises(BadInput):
        typed_value(40000, TagType.INT16)
    assert [quality_of(q) for q in ("good", 192, 500, 0, 0x80000000, False)] == [
        "GOOD",
        "GOOD",
        "UNCERTAIN",
        "GOOD",
        "BAD",
        "BAD",
    ]


def test_filters_are_minimal_and_topics_unique() -> None:
    assert filter_covers("a/#", "a/b/+") and filter_covers("a/+/c", "a/b/c") and not filter_covers("a/+", "a/b/c")
    assert minimal_filters(["a/b/c", "a/+/c", "x/#", "x/y", "a/+/c"]) == ["a/+/c", "x/#"]
    other = device(name="other")
    with pytest.raises(ValueError, match="claimed by devices"):
        MqttMapping([device(), other])
