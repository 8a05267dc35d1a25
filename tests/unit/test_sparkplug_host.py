"""The Sparkplug B host state machine on payloads built by the Eclipse Tahu reference encoder
(sparkplug-b-packets), decoded with our own .proto: births, aliases, data, deaths, seq, rebirth."""

from __future__ import annotations

from typing import Any

import pytest
from sparkplub_b_packets.core import sparkplug_b as tahu

from producers.readers import sparkplug_codec as codec
from producers.readers.sparkplug_host import SparkplugHost

T = tahu.MetricDataType
MS = 1_700_000_000_000


def birth(seq: int, metrics: list[tuple[str, int, int, Any]], bd_seq: int | None = 3, **props: str) -> bytes:
    p = tahu.sparkplug_b_pb2.Payload()
    p.timestamp, p.seq = MS, seq
    if bd_seq is not None:
        tahu.addMetric(p, "bdSeq", None, T.Int64, bd_seq, MS)
    for name, alias, dtype, value in metrics:
        m = tahu.addMetric(p, name, alias, dtype, value, MS)
        if name in props:
            m.properties.keys.append("engUnit")
            pv = m.properties.values.add()
            pv.type = T.String
            pv.string_value = props[name]
    return bytes(p.SerializeToString())


def data(seq: int, metrics: list[tuple[int, int, Any]], t: int = MS + 1000, historical: bool = False) -> bytes:
    p = tahu.sparkplug_b_pb2.Payload()
    p.timestamp, p.seq = t, seq
    for alias, dtype, value in metrics:
        m = tahu.addMetric(p, None, alias, dtype, value, t)
        m.is_historical = historical
    return bytes(p.SerializeToString())


def death(bd_seq: int) -> bytes:
    p = tahu.sparkplug_b_pb2.Payload()
    tahu.addMetric(p, "bdSeq", None, T.Int64, bd_seq, MS)
    return bytes(p.SerializeToString())


NODE_METRICS = [("Temp", 1, T.Double, 20.5), ("Count", 2, T.Int16, -3), ("Run", 3, T.Boolean, True)]


def feed(host: SparkplugHost, topic: str, payload: bytes, now: float = 0.0) -> Any:
    t = codec.parse_topic(topic)
    assert t is not None
    return host.on_message(t, codec.decode(payload), 1, now)


def test_birth_defines_aliases_units_and_values_then_data_by_alias() -> None:
    h = SparkplugHost()
    ev = feed(h, "spBv1.0/g/NBIRTH/n1", birth(0, NODE_METRICS, Temp="degC"))
    assert ev.online == [("g", "n1", None)] and ev.rebirth is None
    assert [(v.name, v.value, v.unit, v.time_us) for v in ev.values] == [
        ("Temp", 20.5, "degC", MS * 1000),
        ("Count", -3, "", MS * 1000),  # Int16 in two's complement (uint32 field)
        ("Run", True, "", MS * 1000),
    ]
    ev = feed(h, "spBv1.0/g/NDATA/n1", data(1, [(1, T.Double, 21.0), (2, T.Int16, -32768)]))
    assert [(v.name, v.value) for v in ev.values] == [("Temp", 21.0), ("Count", -32768)]
    assert ev.problems == [] and ev.rebirth is None


def test_data_before_birth_asks_rebirth_rate_limited() -> None:
    h = SparkplugHost(rebirth_min_interval_s=5)
    ev = feed(h, "spBv1.0/g/NDATA/n1", data(7, [(1, T.Double, 1.0)]), now=100)
    assert ev.values == [] and ev.rebirth is not None and "before" in ev.rebirth
    assert feed(h, "spBv1.0/g/NDATA/n1", data(8, [(1, T.Double, 1.0)]), now=101).rebirth is None
    assert feed(h, "spBv1.0/g/NDATA/n1", data(9, [(1, T.Double, 1.0)]), now=106).rebirth is not None


def test_seq_gap_asks_rebirth_and_duplicate_is_dropped() -> None:
    h = SparkplugHost()
    feed(h, "spBv1.0/g/NBIRTH/n1", birth(255, NODE_METRICS))
    ev = feed(h, "spBv1.0/g/NDATA/n1", data(0, [(1, T.Double, 1.0)]))  # 255 -> 0 wraps: no gap
    assert ev.rebirth is None and len(ev.values) == 1
    assert feed(h, "spBv1.0/g/NDATA/n1", data(0, [(1, T.Double, 1.0)])).duplicate
    ev = feed(h, "spBv1.0/g/NDATA/n1", data(3, [(1, T.Double, 2.0)]), now=10)
    assert ev.rebirth is not None and "seq 3 where 1" in ev.rebirth
    assert [v.value for v in ev.values] == [2.0]  # the values are still used


def test_unknown_alias_and_wrong_datatype_are_bad_metrics_not_bad_messages() -> None:
    h = SparkplugHost()
    feed(h, "spBv1.0/g/NBIRTH/n1", birth(0, NODE_METRICS))
    p = tahu.sparkplug_b_pb2.Payload()
    p.timestamp, p.seq = MS, 1
    tahu.addMetric(p, None, 1, T.Double, 5.0, MS)
    tahu.addMetric(p, None, 99, T.Double, 5.0, MS)
    tahu.addMetric(p, None, 3, T.String, "yes", MS)  # Run is Boolean in the birth
    ev = feed(h, "spBv1.0/g/NDATA/n1", bytes(p.SerializeToString()))
    assert [v.value for v in ev.values] == [5.0]
    assert sorted(e.kind for e in ev.problems) == ["unknown_alias", "wrong_datatype"]
    assert ev.rebirth is not None and "alias 99" in ev.rebirth


def test_devices_deaths_and_stale_ndeath() -> None:
    h = SparkplugHost()
    feed(h, "spBv1.0/g/NBIRTH/n1", birth(0, NODE_METRICS, bd_seq=4))
    ev = feed(h, "spBv1.0/g/DDATA/n1/d1", data(1, [(10, T.Float, 1.0)]))
    assert ev.rebirth is not None  # device data before its DBIRTH
    ev = feed(h, "spBv1.0/g/DBIRTH/n1/d1", birth(2, [("Level", 10, T.Float, 0.5)], bd_seq=None))
    assert ev.online == [("g", "n1", "d1")] and ev.values[0].value == 0.5
    ev = feed(h, "spBv1.0/g/DDATA/n1/d1", data(3, [(10, T.Float, 0.75)], historical=True))
    assert ev.values[0].historical and ev.values[0].value == 0.75
    assert feed(h, "spBv1.0/g/NDEATH/n1", death(3)).ignored is not None  # stale session
    ev = feed(h, "spBv1.0/g/NDEATH/n1", death(4))
    assert [k for k, _ in ev.offline] == [("g", "n1", None), ("g", "n1", "d1")]
    ev = feed(h, "spBv1.0/g/NDATA/n1", data(4, [(1, T.Double, 1.0)]), now=100)
    assert ev.values == [] and ev.rebirth is not None


def test_ddeath_and_connection_lost() -> None:
    h = SparkplugHost()
    feed(h, "spBv1.0/g/NBIRTH/n1", birth(0, NODE_METRICS))
    feed(h, "spBv1.0/g/DBIRTH/n1/d1", birth(1, [("Level", 10, T.Float, 0.5)], bd_seq=None))
    p = tahu.sparkplug_b_pb2.Payload()
    p.timestamp, p.seq = MS, 2
    ev = feed(h, "spBv1.0/g/DDEATH/n1/d1", bytes(p.SerializeToString()))
    assert [k for k, _ in ev.offline] == [("g", "n1", "d1")]
    assert h.connection_lost() == [("g", "n1", None)]
    assert feed(h, "spBv1.0/g/NDATA/n1", data(3, [(1, T.Double, 1.0)])).rebirth is not None


def test_topics_and_host_messages() -> None:
    assert codec.parse_topic("spBv1.0/G/DDATA/N/D") == codec.Topic("DDATA", "G", "N", "D")
    assert codec.parse_topic("spBv1.0/STATE/host") == codec.Topic("STATE", node="host")
    assert codec.parse_topic("spBv1.0/G/NDATA/N/extra") is None
    assert codec.parse_topic("spAv1.0/G/NDATA/N") is None
    cmd = codec.decode(codec.rebirth_request(MS))
    assert codec.is_rebirth_request(cmd)
    # the reference implementation reads our request the same way
    ref = tahu.sparkplug_b_pb2.Payload.FromString(codec.rebirth_request(MS))
    assert ref.metrics[0].name == "Node Control/Rebirth" and ref.metrics[0].boolean_value is True
    with pytest.raises(codec.BadInput):
        codec.decode(b"\xff\xff\xff")
