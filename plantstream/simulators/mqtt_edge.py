"""The MQTT side of the demo plant: a JSON/plain publisher for `mqtt` devices and a Sparkplug B edge
node per configured edge node for `sparkplug_b` devices, with values from the Modbus simulator's
machine model (state, load, counters, process profiles).

The edge node publishes NBIRTH (bdSeq, Node Control/Rebirth, node metrics with aliases and
engineering units) and a DBIRTH per device, then NDATA/DDATA by alias with `seq`, answers a
Rebirth command with new births, and has its NDEATH as MQTT will. Seeded fault: once per
`pipeline.simulator.seed`-derived interval (first after 3-6 min, then every 8-15 min of simulated
time) an edge node drops its connection without DISCONNECT for 10-20 s, so the broker publishes its
NDEATH: the host marks its tags BAD and raises device-down until the node is born again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import paho.mqtt.client as mqtt

from plantstream.core import logs
from plantstream.core.config import (
    ModbusTag,
    MqttDevice,
    MqttPayloadKind,
    Settings,
    SparkplugDevice,
    TagRole,
    TagType,
)
from plantstream.simulators.modbus import Machine, MachineState, profile_for
from producers.readers import sparkplug_codec as codec
from producers.readers.sparkplug_b_pb2 import DataType, Payload

log = logs.get(__name__)

_DATATYPES = {
    TagType.BOOL: DataType.Boolean,
    TagType.INT16: DataType.Int16,
    TagType.UINT16: DataType.UInt16,
    TagType.INT32: DataType.Int32,
    TagType.UINT32: DataType.UInt32,
    TagType.INT64: DataType.Int64,
    TagType.UINT64: DataType.UInt64,
    TagType.FLOAT32: DataType.Float,
    TagType.FLOAT64: DataType.Double,
    TagType.STRING: DataType.String,
}


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)


def tag_value(tag: Any, machine: Machine, t: float, phase: float, rng: np.random.Generator) -> bool | int | float:
    """One tag's value from the machine model, in its configured type."""
    if tag.role in (TagRole.COUNTER_TOTAL, TagRole.COUNTER_GOOD, TagRole.COUNTER_SCRAP):
        return {TagRole.COUNTER_TOTAL: machine.total, TagRole.COUNTER_GOOD: machine.good}.get(tag.role, machine.scrap)
    if tag.role is TagRole.MACHINE_STATE:
        return int(machine.state)
    if tag.role is TagRole.STATUS or tag.type is TagType.BOOL:
        return machine.running
    p = profile_for(cast(ModbusTag, tag))
    level = p.stopped + (p.running - p.stopped) * machine.load
    wave = p.wave * (0.2 + 0.8 * machine.load) * np.sin(2 * np.pi * t / p.period_s + phase)
    value = max(p.floor, level + wave + p.noise * float(rng.standard_normal()))
    if tag.type is not None and tag.type not in (TagType.FLOAT32, TagType.FLOAT64):
        return round(value)
    return round(value, 4)


@dataclass
class _Edge:
    group: str
    node: str
    devices: list[SparkplugDevice]  # device_id None = the node's own metrics
    port: int
    host: str
    client: mqtt.Client | None = None
    seq: int = 0
    bd_seq: int = 0
    aliases: dict[tuple[str | None, str], int] = field(default_factory=dict)
    rebirths: int = 0
    down_until: float = 0.0
    next_fault: float = 0.0
    want_birth: bool = False


class MqttPlantSimulator:
    """Serves every configured mqtt and sparkplug_b device; `run(stop)`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sim = settings.pipeline.simulator
        self._interval = sim.update_interval_s
        self._speed = sim.speed
        self._rng = np.random.default_rng(sim.seed + 11)
        self._faults = random.Random(sim.seed + 12)
        mq = settings.pipeline.mqtt
        self._json = [d for d in settings.devices if isinstance(d, MqttDevice)]
        spb = [d for d in settings.devices if isinstance(d, SparkplugDevice)]
        names = {d.name for d in self._json} | {d.name for d in spb}
        seeds = np.random.SeedSequence(sim.seed + 10).spawn(len(names) + 1)
        self._machines = {
            n: Machine(np.random.default_rng(s), None) for n, s in zip(sorted(names), seeds, strict=False)
        }
        self._phase = {n: float(self._rng.uniform(0, 2 * np.pi)) for n in names}
        self._edges: dict[tuple[str, str, str], _Edge] = {}
        for d in spb:
            b = mq.brokers[d.broker]
            key = (d.broker, d.group_id, d.edge_node_id)
            e = self._edges.setdefault(
                key, _Edge(d.group_id, d.edge_node_id, [], b.effective_port(mq.local_port), b.host or "127.0.0.1")
            )
            e.devices.append(d)
        for e in self._edges.values():
            e.next_fault = self._faults.uniform(180, 360)
        self._json_clients: dict[str, mqtt.Client] = {}
        self.t = 0.0  # simulated seconds
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            self._stop()

    def _start(self) -> None:
        mq = self.settings.pipeline.mqtt
        for broker in {d.broker for d in self._json}:
            b = mq.brokers[broker]
            c = _client(f"plantstream-sim-{broker}-{int(time.time())}")
            c.connect_async(b.host or "127.0.0.1", b.effective_port(mq.local_port))
            c.loop_start()
            self._json_clients[broker] = c
        for e in self._edges.values():
            self._connect(e)

    def _stop(self) -> None:
        for c in self._json_clients.values():
            c.disconnect()
            c.loop_stop()
        for e in self._edges.values():
            if e.client is not None:
                e.client.publish(codec.topic_of("NDEATH", e.group, e.node), self._death(e), qos=1)
                e.client.disconnect()
                e.client.loop_stop()

    def step(self) -> None:
        dt = self._interval * self._speed
        self.t += dt
        for m in self._machines.values():
            m.step(dt)
        now_ms = int(time.time() * 1000)
        for d in self._json:
            self._publish_json(d, now_ms)
        for e in self._edges.values():
            self._edge_step(e, now_ms)

    # --- plain / JSON / UMH ---------------------------------------------------------------------------

    def _values(self, d: MqttDevice | SparkplugDevice) -> list[tuple[Any, bool | int | float]]:
        m = self._machines[d.name]
        return [(t, tag_value(t, m, self.t, self._phase[d.name], self._rng)) for t in d.tags]

    def _publish_json(self, d: MqttDevice, now_ms: int) -> None:
        c = self._json_clients[d.broker]
        if not c.is_connected():
            return
        values = self._values(d)
        if d.payload is MqttPayloadKind.UMH_HISTORIAN:
            doc: dict[str, Any] = {"timestamp_ms": now_ms}
            for t, v in values:
                _put(doc, (t.key or t.name).split("."), v)
            c.publish(d.topic, json.dumps(doc), qos=d.qos)
            self.published += 1
            return
        shared: dict[str, Any] = {}
        for t, v in values:
            key = t.key or t.name
            topic = t.topic or d.topic.replace("{tag}", key)
            if d.payload is MqttPayloadKind.PLAIN:
                c.publish(topic, str(v).lower() if isinstance(v, bool) else str(v), qos=d.qos)
                self.published += 1
                continue
            body = shared if topic == d.topic else {}
            path = t.value_path or (key if topic == d.topic and "{tag}" not in d.topic else d.value_path)
            _put(body, path.removeprefix("$.").split("."), v)
            if d.timestamp_path:
                _put(body, d.timestamp_path.removeprefix("$.").split("."), _stamp(now_ms, d.timestamp_format))
            if body is not shared:
                c.publish(topic, json.dumps(body), qos=d.qos)
                self.published += 1
        if shared:
            c.publish(d.topic, json.dumps(shared), qos=d.qos)
            self.published += 1

    # --- Sparkplug B edge node -------------------------------------------------------------------------

    def _connect(self, e: _Edge) -> None:
        c = _client(f"plantstream-sim-edge-{e.group}-{e.node}")
        c.will_set(codec.topic_of("NDEATH", e.group, e.node), self._death(e), qos=1)

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            client.subscribe(codec.topic_of("NCMD", e.group, e.node), qos=1)
            e.want_birth = True

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with contextlib.suppress(Exception):
                if codec.is_rebirth_request(codec.decode(bytes(msg.payload))):
                    e.rebirths += 1
                    e.want_birth = True

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect_async(e.host, e.port)
        c.loop_start()
        e.client = c

    def _death(self, e: _Edge) -> bytes:
        p = Payload(timestamp=int(time.time() * 1000))
        codec.set_value(_named(p, codec.BD_SEQ), DataType.Int64, e.bd_seq)
        return bytes(p.SerializeToString())

    def _edge_step(self, e: _Edge, now_ms: int) -> None:
        if e.client is None:
            if self.t >= e.down_until:
                e.bd_seq = (e.bd_seq + 1) % 256
                self._connect(e)
                log.info("simulated edge node %s/%s is back", e.group, e.node)
            return
        if self.t >= e.next_fault:  # the seeded fault: the node drops off without DISCONNECT
            e.next_fault = self.t + self._faults.uniform(480, 900)
            e.down_until = self.t + self._faults.uniform(10, 20)
            sock = e.client.socket()
            e.client.loop_stop()
            if sock is not None:
                sock.close()
            e.client = None
            log.info("simulated edge node %s/%s drops off (seeded fault)", e.group, e.node)
            return
        if not e.client.is_connected():
            return
        if e.want_birth:
            e.want_birth = False
            self._births(e, now_ms)
            return
        for d in e.devices:
            p = Payload(timestamp=now_ms, seq=self._seq(e))
            for t, v in self._values(d):
                m = p.metrics.add()
                m.alias = e.aliases[(d.device_id, t.metric or t.name)]
                m.timestamp = now_ms
                codec.set_value(m, _DATATYPES[t.type or TagType.FLOAT64], v)
            kind = "DDATA" if d.device_id else "NDATA"
            e.client.publish(codec.topic_of(kind, e.group, e.node, d.device_id), p.SerializeToString(), qos=0)
            self.published += 1

    def _births(self, e: _Edge, now_ms: int) -> None:
        assert e.client is not None
        e.seq = 0
        e.aliases = {}
        node = Payload(timestamp=now_ms, seq=self._seq(e))
        codec.set_value(_named(node, codec.BD_SEQ), DataType.Int64, e.bd_seq)
        codec.set_value(_named(node, codec.REBIRTH), DataType.Boolean, False)
        births: list[tuple[str | None, Payload]] = [(None, node)]
        for d in e.devices:
            p = node if d.device_id is None else Payload(timestamp=now_ms, seq=0)
            if d.device_id is not None:
                births.append((d.device_id, p))
            for t, v in self._values(d):
                name = t.metric or t.name
                m = _named(p, name)
                m.alias = e.aliases[(d.device_id, name)] = len(e.aliases) + 1
                m.timestamp = now_ms
                codec.set_value(m, _DATATYPES[t.type or TagType.FLOAT64], v)
                if t.unit:
                    m.properties.keys.append("engUnit")
                    pv = m.properties.values.add()
                    pv.type = DataType.String
                    pv.string_value = t.unit
        for device, p in births:
            if device is not None:
                p.seq = self._seq(e)
            kind = "DBIRTH" if device else "NBIRTH"
            e.client.publish(codec.topic_of(kind, e.group, e.node, device), p.SerializeToString(), qos=0)
            self.published += 1

    @staticmethod
    def _seq(e: _Edge) -> int:
        s = e.seq
        e.seq = (e.seq + 1) % 256
        return s


def _named(p: Payload, name: str) -> Payload.Metric:
    m = p.metrics.add()
    m.name = name
    return m


def _put(doc: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


def _stamp(now_ms: int, fmt: str) -> Any:
    if fmt == "epoch_s":
        return now_ms / 1000
    if fmt == "epoch_us":
        return now_ms * 1000
    if fmt == "epoch_ns":
        return now_ms * 1_000_000
    if fmt == "epoch_ms":
        return now_ms
    import datetime as dt

    t = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return t.isoformat() if fmt == "iso8601" else t.strftime(fmt)


__all__ = ["MachineState", "MqttPlantSimulator", "tag_value"]
