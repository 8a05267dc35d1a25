"""Sparkplug B 3.0 topics and payloads (pure): parse topics, decode metrics with their birth's datatype,
build the host's own messages (STATE, NCMD Rebirth) and, for the simulator, an edge node's.

Values come out as the ReadingFrame union: signed integers are read back from the two's complement
the spec stores them in (uint32/uint64 fields), DateTime stays epoch milliseconds, UUID and Text are
strings. Arrays, DataSet, Template, Bytes, File and PropertySet values have no ReadingFrame type:
they are `unsupported_datatype`. A value field that does not match the datatype is `wrong_datatype`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from plantstream.core.records import Quality
from producers.readers.mqtt_payload import BadInput
from producers.readers.sparkplug_b_pb2 import DataType, Payload

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
UNIT_PROPERTIES = ("engUnit", "engUnits", "EngUnit", "units", "unit")
QUALITY_PROPERTY = "Quality"
_QUALITY_CODES: dict[int, Quality] = {0: "BAD", 192: "GOOD", 500: "UNCERTAIN"}

Value = bool | int | float | str | None

# datatype -> (value field, bits of a signed integer or 0)
_FIELD: dict[int, tuple[str, int]] = {
    DataType.Int8: ("int_value", 8),
    DataType.Int16: ("int_value", 16),
    DataType.Int32: ("int_value", 32),
    DataType.Int64: ("long_value", 64),
    DataType.UInt8: ("int_value", 0),
    DataType.UInt16: ("int_value", 0),
    DataType.UInt32: ("int_value", 0),
    DataType.UInt64: ("long_value", 0),
    DataType.Float: ("float_value", 0),
    DataType.Double: ("double_value", 0),
    DataType.Boolean: ("boolean_value", 0),
    DataType.String: ("string_value", 0),
    DataType.DateTime: ("long_value", 0),
    DataType.Text: ("string_value", 0),
    DataType.UUID: ("string_value", 0),
}
_AVRO_LONG_MAX = 2**63 - 1
MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD"})


def datatype_name(code: int) -> str:
    try:
        return str(DataType.Name(code))
    except ValueError:
        return f"datatype {code}"


def supported(datatype: int) -> bool:
    return datatype in _FIELD


# --- topics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """spBv1.0/<group>/<TYPE>/<edge node>[/<device>], or spBv1.0/STATE/<host id> (kind STATE, node = host id)."""

    kind: str
    group: str = ""
    node: str = ""
    device: str | None = None

    @property
    def node_key(self) -> tuple[str, str]:
        return (self.group, self.node)


def parse_topic(topic: str) -> Topic | None:
    """The Sparkplug topic's parts, or None when it is not a Sparkplug B topic."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != NAMESPACE:
        return None
    if parts[1] == "STATE" and len(parts) == 3:
        return Topic("STATE", node=parts[2])
    if len(parts) not in (4, 5) or parts[2] not in MESSAGE_TYPES:
        return None
    kind = parts[2]
    has_device = kind[0] == "D"
    if has_device != (len(parts) == 5):
        return None
    return Topic(kind, parts[1], parts[3], parts[4] if has_device else None)


def topic_of(kind: str, group: str, node: str, device: str | None = None) -> str:
    return f"{NAMESPACE}/{group}/{kind}/{node}" + (f"/{device}" if device else "")


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


# --- payloads -------------------------------------------------------------------------------------


def decode(payload: bytes) -> Payload:
    try:
        return Payload.FromString(payload)
    except DecodeError as e:
        raise BadInput("malformed_protobuf", f"payload is not a Sparkplug B protobuf ({e})") from e


def value_of(metric: Payload.Metric, datatype: int) -> Value:
    """The metric's value as its (birth) datatype says; BadInput for unsupported or mismatched ones."""
    if metric.is_null:
        return None
    spec = _FIELD.get(datatype)
    if spec is None:
        raise BadInput("unsupported_datatype", f"{datatype_name(datatype)} values have no ReadingFrame type")
    name, signed_bits = spec
    held = metric.WhichOneof("value")
    if held is None:
        return None  # no value given: the spec allows a metric with only a name/alias (treated as null)
    if held != name:
        raise BadInput(
            "wrong_datatype", f"{datatype_name(datatype)} metric carries a {held.removesuffix('_value')} value"
        )
    value: Any = getattr(metric, name)
    if signed_bits:
        value &= (1 << signed_bits) - 1  # some encoders sign-extend to 32/64 bits
        if value >= 1 << (signed_bits - 1):
            value -= 1 << signed_bits
    elif name == "long_value" and value > _AVRO_LONG_MAX:
        value = float(value)
    return value


def properties(metric: Payload.Metric) -> dict[str, Any]:
    """The metric's PropertySet as a dict of simple values (nested sets left out)."""
    if not metric.HasField("properties"):
        return {}
    out: dict[str, Any] = {}
    ps = metric.properties
    for key, pv in zip(ps.keys, ps.values, strict=False):
        held = pv.WhichOneof("value")
        if held in (None, "propertyset_value", "propertysets_value") or pv.is_null:
            continue
        v = getattr(pv, held)
        if held == "int_value" and pv.type in (DataType.Int8, DataType.Int16, DataType.Int32) and v >= 2**31:
            v -= 2**32
        out[key] = v
    return out


def unit_of(props: dict[str, Any]) -> str:
    for k in UNIT_PROPERTIES:
        v = props.get(k)
        if isinstance(v, str):
            return v
    return ""


def quality_of(props: dict[str, Any]) -> Quality:
    code = props.get(QUALITY_PROPERTY)
    return _QUALITY_CODES.get(code, "GOOD") if isinstance(code, int) else "GOOD"


def bd_seq_of(payload: Payload) -> int | None:
    for m in payload.metrics:
        if m.name == BD_SEQ:
            v = m.WhichOneof("value")
            return int(getattr(m, v)) if v in ("long_value", "int_value") else None
    return None


# --- messages the host sends ------------------------------------------------------------------------


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """Sparkplug 3.0 host STATE: retained JSON {online, timestamp} on spBv1.0/STATE/<host id>."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def rebirth_request(timestamp_ms: int) -> bytes:
    """NCMD payload asking an edge node to publish its NBIRTH and DBIRTHs again."""
    p = Payload(timestamp=timestamp_ms)
    m = p.metrics.add()
    m.name = REBIRTH
    m.timestamp = timestamp_ms
    m.datatype = DataType.Boolean
    m.boolean_value = True
    return p.SerializeToString()


def is_rebirth_request(payload: Payload) -> bool:
    return any(
        m.name == REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value for m in payload.metrics
    )


# --- messages an edge node sends (the simulator) -----------------------------------------------------


def set_value(metric: Payload.Metric, datatype: int, value: Value) -> None:
    """Store `value` in the field `datatype` uses (two's complement for negative signed integers)."""
    metric.datatype = datatype
    if value is None:
        metric.is_null = True
        return
    name, signed_bits = _FIELD[datatype]
    if signed_bits and isinstance(value, int) and value < 0:
        value += 1 << (32 if signed_bits < 64 else 64)
    setattr(metric, name, value)
