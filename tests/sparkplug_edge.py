"""A Sparkplug B edge node for tests, independent of plantstream's codec: payloads are built by the
Eclipse Tahu reference Python encoder (PyPI sparkplug-b-packets), the session is a plain paho client.

It publishes NBIRTH/DBIRTH on connect (its NDEATH with bdSeq as the MQTT will), data by alias,
answers `Node Control/Rebirth` commands with new births, and can die without a DISCONNECT."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from sparkplub_b_packets.core import sparkplug_b as tahu

T = tahu.MetricDataType
Payload = tahu.sparkplug_b_pb2.Payload


@dataclass
class Metric:
    name: str
    alias: int
    datatype: int
    value: Any
    unit: str = ""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TahuEdge:
    port: int
    group: str
    node: str
    node_metrics: list[Metric]
    devices: dict[str, list[Metric]] = field(default_factory=dict)
    bd_seq: int = 0
    seq: int = 0
    rebirths: int = 0
    births: int = 0
    client: mqtt.Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{self.group}/{kind}/{self.node}" + (f"/{device}" if device else "")

    def connect(self) -> None:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{self.node}")
        death = Payload()
        tahu.addMetric(death, "bdSeq", None, T.Int64, self.bd_seq, now_ms())
        c.will_set(self.topic("NDEATH"), death.SerializeToString(), qos=1)
        ready = threading.Event()

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            client.subscribe(self.topic("NCMD"), qos=1)
            ready.set()

        c.on_connect = on_connect
        c.on_message = self._on_command
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("edge node could not connect")
        self.client = c
        self.publish_births()

    def publish_births(self) -> None:
        with self._lock:
            self.seq = 0
            t = now_ms()
            p = Payload()
            p.timestamp, p.seq = t, self._next_seq()
            tahu.addMetric(p, "bdSeq", None, T.Int64, self.bd_seq, t)
            tahu.addMetric(p, "Node Control/Rebirth", None, T.Boolean, False, t)
            for m in self.node_metrics:
                self._add(p, m, t)
            self._send(self.topic("NBIRTH"), p)
            for device, metrics in self.devices.items():
                d = Payload()
                d.timestamp, d.seq = t, self._next_seq()
                for m in metrics:
                    self._add(d, m, t)
                self._send(self.topic("DBIRTH", device), d)
            self.births += 1

    def data(
        self,
        device: str | None,
        values: list[tuple[int, int, Any]],
        *,
        historical_at: int | None = None,
        skip_seq: int = 0,
    ) -> None:
        """One NDATA/DDATA by alias: (alias, datatype, value); `skip_seq` loses that many seq numbers."""
        with self._lock:
            t = now_ms()
            p = Payload()
            self.seq = (self.seq + skip_seq) % 256
            p.timestamp, p.seq = t, self._next_seq()
            for alias, dtype, value in values:
                m = tahu.addMetric(p, None, alias, dtype, value, historical_at or t)
                m.is_historical = historical_at is not None
            self._send(self.topic("DDATA" if device else "NDATA", device), p)

    def raw(self, kind: str, device: str | None, payload: bytes) -> None:
        assert self.client is not None
        self.client.publish(self.topic(kind, device), payload, qos=0).wait_for_publish(5)

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes our NDEATH will."""
        assert self.client is not None
        sock = self.client.socket()
        self.client.loop_stop()
        if sock is not None:
            sock.close()
        self.client = None
        self.bd_seq += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _on_command(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        p = Payload.FromString(msg.payload)
        if any(m.name == "Node Control/Rebirth" and m.boolean_value for m in p.metrics):
            self.rebirths += 1
            self.publish_births()

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    @staticmethod
    def _add(p: Any, m: Metric, t: int) -> None:
        metric = tahu.addMetric(p, m.name, m.alias, m.datatype, m.value, t)
        if m.unit:
            metric.properties.keys.append("engUnit")
            pv = metric.properties.values.add()
            pv.type = T.String
            pv.string_value = m.unit

    def _send(self, topic: str, p: Any) -> None:
        assert self.client is not None
        self.client.publish(topic, p.SerializeToString(), qos=0)
