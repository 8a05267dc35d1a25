"""The Sparkplug B 3.0 host application's view of its edge nodes (pure state machine).

Per edge node it keeps the session of its last NBIRTH (bdSeq, the alias tables of the node and of
each device from their births, the last `seq`) and turns each message into events:
- NBIRTH / DBIRTH: the scope's metrics (name, alias, datatype, engineering unit) and values; it is online.
- NDATA / DDATA: values by alias (or name), typed by the birth; `is_historical` metrics flagged.
- NDEATH whose bdSeq matches the birth's: the node and all its devices go offline (a stale NDEATH of
  an earlier session is ignored); DDEATH: that device goes offline.
- A message from a node or device without a current birth, a gap in `seq` (0..255, wrapping) or an
  unknown alias asks for a Rebirth (NCMD `Node Control/Rebirth`), at most once per interval per node.
  A message repeating the last `seq` is a QoS 1 redelivery and is dropped.
Bad metrics (unknown alias, wrong or unsupported datatype) are reported one by one; the rest of the
message is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from plantstream.core.records import Quality
from producers.readers import sparkplug_codec as codec
from producers.readers.mqtt_payload import BadInput
from producers.readers.sparkplug_b_pb2 import DataType, Payload

ScopeKey = tuple[str, str, str | None]  # (group, edge node, device or None for the node itself)


@dataclass(frozen=True)
class MetricDef:
    name: str
    datatype: int
    unit: str


class MetricValue(NamedTuple):  # a tuple: one is made per metric, so it must be cheap
    name: str
    time_us: int
    value: bool | int | float | str | None
    quality: Quality
    unit: str
    historical: bool


@dataclass
class HostEvents:
    """What one message means; `scope` is the node or device the values belong to."""

    scope: ScopeKey | None = None
    values: list[MetricValue] = field(default_factory=list)
    online: list[ScopeKey] = field(default_factory=list)
    offline: list[tuple[ScopeKey, str]] = field(default_factory=list)
    rebirth: str | None = None  # why a Rebirth request goes to this message's edge node now
    problems: list[BadInput] = field(default_factory=list)
    duplicate: bool = False
    ignored: str | None = None  # why the message was not used (no problem with its content)


@dataclass
class _Scope:
    aliases: dict[int, MetricDef] = field(default_factory=dict)
    names: dict[str, MetricDef] = field(default_factory=dict)
    online: bool = False


@dataclass
class _Node:
    bd_seq: int | None = None
    seq: int | None = None
    born: bool = False
    scope: _Scope = field(default_factory=_Scope)
    devices: dict[str, _Scope] = field(default_factory=dict)
    rebirth_asked_at: float = -math.inf


class SparkplugHost:
    def __init__(self, rebirth_min_interval_s: float = 5.0) -> None:
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._rebirth_interval = rebirth_min_interval_s

    def on_message(self, topic: codec.Topic, payload: Payload, arrival_us: int, now: float) -> HostEvents:
        """`now`: monotonic seconds (rate limit of Rebirth requests)."""
        kind = topic.kind
        if kind in ("STATE", "NCMD", "DCMD"):
            return HostEvents(ignored=f"{kind} is not edge node data")
        node = self._nodes.setdefault(topic.node_key, _Node())
        scope_key: ScopeKey = (topic.group, topic.node, topic.device)
        ev = HostEvents(scope=scope_key)
        if kind == "NBIRTH":
            self._nbirth(node, payload, scope_key, arrival_us, ev)
        elif kind == "NDEATH":
            self._ndeath(node, payload, topic, ev)
        elif not node.born:
            what = f"{kind} from {'device ' + topic.device if topic.device else 'the edge node'}"
            ev.ignored = f"{what} before the edge node's NBIRTH"
            self._ask_rebirth(node, now, ev, ev.ignored)
        elif self._seq_duplicate(node, payload, kind, now, ev):
            ev.duplicate = True
        elif kind == "DBIRTH":
            assert topic.device is not None
            scope = node.devices[topic.device] = self._birth_scope(payload, arrival_us, ev)
            scope.online = True
            ev.online.append(scope_key)
        elif kind == "DDEATH":
            assert topic.device is not None
            dev = node.devices.get(topic.device)
            if dev is not None and dev.online:
                dev.online = False
                ev.offline.append((scope_key, f"DDEATH: device {topic.device} of edge node {topic.node} went offline"))
        else:  # NDATA, DDATA
            data_scope = node.scope if topic.device is None else node.devices.get(topic.device)
            if data_scope is None or not data_scope.online:
                ev.ignored = f"DDATA from device {topic.device} before its DBIRTH"
                self._ask_rebirth(node, now, ev, ev.ignored)
            else:
                self._data(node, data_scope, payload, arrival_us, now, ev)
        return ev

    def connection_lost(self) -> list[ScopeKey]:
        """Our broker connection dropped: every session is unknown until the next births; the scopes online till now."""
        out: list[ScopeKey] = []
        for (group, name), node in self._nodes.items():
            if node.born and node.scope.online:
                out.append((group, name, None))
            out += [(group, name, d) for d, s in node.devices.items() if s.online and node.born]
        self._nodes.clear()
        return out

    def known(self, key: ScopeKey) -> MetricDefs:
        """The metrics the last birth of this node or device defined (for --discover)."""
        node = self._nodes.get((key[0], key[1]))
        if node is None:
            return {}
        scope = node.scope if key[2] is None else node.devices.get(key[2])
        return dict(scope.names) if scope is not None else {}

    # --- message kinds -----------------------------------------------------------------------------

    def _nbirth(self, node: _Node, payload: Payload, key: ScopeKey, arrival_us: int, ev: HostEvents) -> None:
        node.bd_seq = codec.bd_seq_of(payload)
        node.seq = payload.seq if payload.HasField("seq") else 0
        node.born = True
        node.devices = {}  # a new session: every device must be born again
        node.scope = self._birth_scope(payload, arrival_us, ev)
        node.scope.online = True
        ev.online.append(key)

    def _ndeath(self, node: _Node, payload: Payload, topic: codec.Topic, ev: HostEvents) -> None:
        bd = codec.bd_seq_of(payload)
        if not node.born:
            ev.ignored = "NDEATH of an edge node that is not online"
            return
        if bd is not None and node.bd_seq is not None and bd != node.bd_seq:
            ev.ignored = f"stale NDEATH (bdSeq {bd}, the current session's is {node.bd_seq})"
            return
        node.born = False
        cause = f"NDEATH: edge node {topic.node} went offline (bdSeq {bd})"
        if node.scope.online:
            ev.offline.append(((topic.group, topic.node, None), cause))
        for d, s in node.devices.items():
            if s.online:
                ev.offline.append(((topic.group, topic.node, d), cause))
                s.online = False
        node.scope.online = False

    def _birth_scope(self, payload: Payload, arrival_us: int, ev: HostEvents) -> _Scope:
        scope = _Scope()
        msg_time = _ms_to_us(payload.timestamp) if payload.HasField("timestamp") else arrival_us
        for m in payload.metrics:
            if not m.name or m.name == codec.BD_SEQ:
                continue
            props = codec.properties(m)
            d = MetricDef(m.name, m.datatype, codec.unit_of(props))
            scope.names[m.name] = d
            if m.HasField("alias"):
                scope.aliases[m.alias] = d
            if m.datatype == DataType.Unknown:
                ev.problems.append(BadInput("wrong_datatype", f"birth metric {m.name!r} has no datatype"))
                continue
            self._value(d, m, props, msg_time, ev)
        return scope

    def _data(self, node: _Node, scope: _Scope, payload: Payload, arrival_us: int, now: float, ev: HostEvents) -> None:
        msg_time = _ms_to_us(payload.timestamp) if payload.HasField("timestamp") else arrival_us
        unknown: list[str] = []
        for m in payload.metrics:
            if m.HasField("alias"):
                d = scope.aliases.get(m.alias)
                label = f"alias {m.alias}"
            else:
                d = scope.names.get(m.name)
                label = f"metric {m.name!r}"
            if d is None:
                unknown.append(label)
                continue
            if m.HasField("datatype") and m.datatype not in (d.datatype, DataType.Unknown):
                ev.problems.append(
                    BadInput(
                        "wrong_datatype",
                        f"metric {d.name!r} is {codec.datatype_name(m.datatype)} here but "
                        f"{codec.datatype_name(d.datatype)} in its birth",
                    )
                )
                continue
            self._value(d, m, codec.properties(m) if m.HasField("properties") else {}, msg_time, ev)
        if unknown:
            ev.problems.append(BadInput("unknown_alias", f"{', '.join(unknown)} not in the birth"))
            self._ask_rebirth(node, now, ev, f"{', '.join(unknown)} not in the birth")

    @staticmethod
    def _value(d: MetricDef, m: Payload.Metric, props: dict[str, object], msg_time: int, ev: HostEvents) -> None:
        try:
            value = codec.value_of(m, d.datatype)
        except BadInput as e:
            ev.problems.append(BadInput(e.kind, f"metric {d.name!r}: {e.reason}"))
            return
        t = _ms_to_us(m.timestamp) if m.HasField("timestamp") else msg_time
        quality = "BAD" if value is None else codec.quality_of(props)
        ev.values.append(MetricValue(d.name, t, value, quality, d.unit, m.is_historical))

    # --- seq and rebirth -----------------------------------------------------------------------------

    def _seq_duplicate(self, node: _Node, payload: Payload, kind: str, now: float, ev: HostEvents) -> bool:
        if not payload.HasField("seq"):
            return False
        seq = payload.seq
        last = node.seq
        node.seq = seq
        if last is None:
            return False
        if seq == last:
            return True
        expected = (last + 1) % 256
        if seq != expected:
            self._ask_rebirth(node, now, ev, f"{kind} seq {seq} where {expected} was due (messages lost)")
        return False

    def _ask_rebirth(self, node: _Node, now: float, ev: HostEvents, reason: str) -> None:
        if now - node.rebirth_asked_at >= self._rebirth_interval:
            node.rebirth_asked_at = now
            ev.rebirth = reason


MetricDefs = dict[str, MetricDef]


def _ms_to_us(ms: int) -> int:
    return int(ms) * 1000
