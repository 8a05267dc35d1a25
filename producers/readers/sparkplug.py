"""The Sparkplug B 3.0 host application: `protocol: sparkplug_b` devices into ReadingFrames.

Per broker one connection subscribes to `spBv1.0/<group>/+/<edge node>/#` of every configured edge
node, with a retained `spBv1.0/STATE/<host id>` {online: false} as its will, then publishes
{online: true} (retained, QoS 1). producers/readers/sparkplug_host.py tracks births, aliases, bdSeq
and seq; this module maps metric names onto the configured tags, sends Rebirth requests (NCMD),
turns NDEATH/DDEATH into BAD tags and device-down alerts (CLEARED by the next birth), and puts
`is_historical` metrics into historical frames. Metrics in a birth that no tag maps are counted
and logged once; messages of an unconfigured device are bad input (dead letters).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any, cast

import paho.mqtt.client as mqtt
import yaml

from plantstream.core import logs
from plantstream.core.config import Settings, SparkplugDevice, SparkplugMetric, TagType
from plantstream.core.records import Sample, sample
from plantstream.core.runstats import RunStats
from producers.device_events import EventEmit
from producers.readers import sparkplug_codec as codec
from producers.readers.base import Emit, default_producer_id, now_us, run_readers, wait_stop
from producers.readers.broker_reader import BrokerReader, DeadLetters, group_by_broker
from producers.readers.mqtt_client import MqttConnection, Will
from producers.readers.mqtt_payload import BadInput, typed_value
from producers.readers.sparkplug_b_pb2 import DataType
from producers.readers.sparkplug_host import HostEvents, MetricValue, ScopeKey, SparkplugHost

log = logs.get(__name__)

# Sparkplug datatypes -> the config's tag types (--discover)
TAG_TYPES: dict[int, TagType] = {
    DataType.Int8: TagType.INT16,
    DataType.Int16: TagType.INT16,
    DataType.Int32: TagType.INT32,
    DataType.Int64: TagType.INT64,
    DataType.UInt8: TagType.UINT16,
    DataType.UInt16: TagType.UINT16,
    DataType.UInt32: TagType.UINT32,
    DataType.UInt64: TagType.UINT64,
    DataType.Float: TagType.FLOAT32,
    DataType.Double: TagType.FLOAT64,
    DataType.Boolean: TagType.BOOL,
    DataType.String: TagType.STRING,
    DataType.Text: TagType.STRING,
    DataType.UUID: TagType.STRING,
    DataType.DateTime: TagType.INT64,
}


class SparkplugReader(BrokerReader):
    protocol = "sparkplug"

    def __init__(
        self,
        settings: Settings,
        broker_name: str,
        devices: Sequence[SparkplugDevice],
        emit: Emit,
        *,
        producer_id: str,
        stats: RunStats | None = None,
        on_event: EventEmit | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.host = SparkplugHost(settings.pipeline.mqtt.rebirth_min_interval_s)
        self.host_id = settings.pipeline.mqtt.sparkplug_host_id
        self._by_scope: dict[ScopeKey, int] = {
            (d.group_id, d.edge_node_id, d.device_id): i for i, d in enumerate(devices)
        }
        self._tags: list[dict[str, tuple[SparkplugMetric, TagType | None]]] = [
            {(t.metric or t.name): (t, t.type) for t in d.tags} for d in devices
        ]
        self._unmapped_logged: set[tuple[int, str]] = set()
        self._state_ts = 0
        self.rebirths_sent = 0
        super().__init__(
            settings,
            broker_name,
            devices,
            emit,
            producer_id=producer_id,
            stats=stats,
            on_event=on_event,
            dead_letters=dead_letters,
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        nodes = dict.fromkeys((d.group_id, d.edge_node_id) for d in cast(list[SparkplugDevice], self.devices))
        return [(f"{codec.NAMESPACE}/{g}/+/{n}/#", 1) for g, n in nodes]

    def will(self) -> Will:
        self._state_ts = int(time.time() * 1000)
        return Will(codec.state_topic(self.host_id), codec.state_payload(False, self._state_ts), qos=1, retain=True)

    def connected(self, session_present: bool) -> None:
        # births come when edge nodes see us online, or when they answer a Rebirth request
        self.connection.publish(
            codec.state_topic(self.host_id), codec.state_payload(True, self._state_ts), qos=1, retain=True
        )

    def disconnected(self) -> None:
        self.host.connection_lost()  # every session is unknown now: data needs new births

    async def announce_offline(self) -> None:
        """A clean shutdown: the retained STATE says offline (the will covers an unclean one)."""
        await self.connection.publish_confirmed(
            codec.state_topic(self.host_id), codec.state_payload(False, self._state_ts), retain=True
        )

    async def run(self, stop: asyncio.Event) -> None:
        inner = asyncio.Event()

        async def relay() -> None:
            await stop.wait()
            if self.connection.connected.is_set():
                await self.announce_offline()
            inner.set()

        relay_task = asyncio.ensure_future(relay())
        try:
            await super().run(inner)
        finally:
            relay_task.cancel()

    # --- messages ----------------------------------------------------------------------------------------

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        topic_text = msg.topic
        payload = cast(bytes, msg.payload)
        mid = msg.mid if msg.qos else None
        self.add_stat("messages")
        topic = codec.parse_topic(topic_text)
        if topic is None or topic.kind in ("NCMD", "DCMD", "STATE"):
            self.ack_now(mid)
            return
        di = self._by_scope.get((topic.group, topic.node, topic.device))
        try:
            decoded = codec.decode(payload)
        except BadInput as e:
            self.bad_input(topic_text, payload, [e], di)
            self.ack_now(mid)
            return
        ev = self.host.on_message(topic, decoded, now_us(), time.monotonic())
        self._apply(topic, topic_text, payload, ev, di, mid)

    def _apply(
        self, topic: codec.Topic, topic_text: str, payload: bytes, ev: HostEvents, di: int | None, mid: int | None
    ) -> None:
        if ev.rebirth is not None:
            self._ask_rebirth(topic, ev.rebirth)
        if ev.duplicate:
            self.add_stat("messages_duplicate")
        problems = list(ev.problems)
        for key in ev.online:
            if (i := self._by_scope.get(key)) is not None:
                self.device_up(i)
        for key, cause in ev.offline:
            if (i := self._by_scope.get(key)) is not None:
                self.mark_down(i, cause)
        if di is None and topic.kind in ("NDATA", "DDATA"):
            problems.insert(0, BadInput("unconfigured_topic", "no configured device maps this node/device"))
        elif ev.values and di is not None:
            live, history = self._samples(di, ev.values, problems)
            if history:
                self.add_samples(di, history, historical=True)
            self.add_samples(di, live, mid=mid)
            mid = None
        if problems:
            self.bad_input(topic_text, payload, problems, di)
        self.ack_now(mid)

    def _samples(
        self, di: int, values: list[MetricValue], problems: list[BadInput]
    ) -> tuple[list[Sample], list[Sample]]:
        tags = self._tags[di]
        live: list[Sample] = []
        history: list[Sample] = []
        for v in values:
            found = tags.get(v.name)
            if found is None:
                self._unmapped(di, v.name)
                continue
            tag, kind = found
            try:
                value = typed_value(v.value, kind, tag.scale, tag.offset)
            except BadInput as e:
                problems.append(BadInput(e.kind, f"metric {v.name!r} (tag {tag.name}): {e.reason}"))
                continue
            s = sample(tag.name, v.time_us, value, "BAD" if value is None else v.quality, tag.unit or v.unit)
            (history if v.historical else live).append(s)
        return live, history

    def _unmapped(self, di: int, name: str) -> None:
        self.add_stat("metrics_unmapped")
        if (di, name) not in self._unmapped_logged and len(self._unmapped_logged) < 10000:
            self._unmapped_logged.add((di, name))
            log.info(
                "Sparkplug device %r: metric %r is mapped to no tag; ignored (add it to the device's tags)",
                self.devices[di].name,
                name,
            )

    def _ask_rebirth(self, topic: codec.Topic, reason: str) -> None:
        sent = self.connection.publish(
            codec.topic_of("NCMD", topic.group, topic.node), codec.rebirth_request(int(time.time() * 1000))
        )
        if sent:
            self.rebirths_sent += 1
            self.add_stat("rebirth_requests")
            log.info("Sparkplug edge node %s/%s: Rebirth requested (%s)", topic.group, topic.node, reason)


async def run_sparkplug_producer(
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event,
    stats: RunStats | None = None,
    producer_id: str | None = None,
    on_event: EventEmit | None = None,
    dead_letters: DeadLetters | None = None,
) -> None:
    """Host every configured Sparkplug B edge node/device until `stop`; one connection per broker."""
    pid = producer_id or default_producer_id()
    devices = [d for d in settings.devices if isinstance(d, SparkplugDevice)]
    if not devices:
        log.warning("no sparkplug_b devices configured: nothing to read")
    readers = [
        SparkplugReader(
            settings, name, ds, emit, producer_id=pid, stats=stats, on_event=on_event, dead_letters=dead_letters
        )
        for name, ds in group_by_broker(devices).items()
    ]
    for r in readers:
        log.info("Sparkplug host %r: %d device(s) on %s", r.host_id, len(r.devices), r.connection.where)
    await run_readers(readers, stop, stats)


# --- discover --------------------------------------------------------------------------------------------


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def tag_name(metric: str) -> str:
    return _BAD_NAME_CHARS.sub("_", metric.replace("/", ".")).lstrip(".-") or "metric"


async def discover(settings: Settings, broker_name: str, seconds: float, group: str | None = None) -> str:
    """Listen for births for `seconds` (asking every node seen without one to rebirth) -> devices YAML."""
    broker = settings.pipeline.mqtt.brokers[broker_name]
    host = SparkplugHost(rebirth_min_interval_s=seconds)
    seen: dict[ScopeKey, None] = {}
    flt = f"{codec.NAMESPACE}/{group or '+'}/#"

    def on_message(msg: mqtt.MQTTMessage) -> None:
        topic = codec.parse_topic(msg.topic)
        if topic is None or topic.kind in ("NCMD", "DCMD", "STATE"):
            return
        try:
            ev = host.on_message(topic, codec.decode(cast(bytes, msg.payload)), now_us(), time.monotonic())
        except BadInput:
            return
        if ev.rebirth is not None:
            conn.publish(codec.topic_of("NCMD", topic.group, topic.node), codec.rebirth_request(int(time.time() * 1e3)))
        if topic.kind in ("NBIRTH", "DBIRTH") and ev.scope is not None:
            seen[ev.scope] = None
        if msg.qos:
            conn.ack((msg.mid,))

    conn = MqttConnection(
        broker.model_copy(update={"clean_session": True}),
        name=broker_name,
        client_id=f"plantstream-discover-{int(time.time())}",
        local_port=settings.pipeline.mqtt.local_port,
        subscriptions=[(flt, 0)],
        on_message=on_message,
        password=broker.password.get_secret_value() if broker.password else None,
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(conn.run(stop))
    await wait_stop(stop, seconds)
    stop.set()
    await task
    devices = []
    for key in seen:
        g, n, d = key
        metrics = host.known(key)
        tags = []
        for name, m in sorted(metrics.items()):
            t: dict[str, Any] = {"name": tag_name(name)}
            if t["name"] != name:
                t["metric"] = name
            if m.datatype in TAG_TYPES:
                t["type"] = TAG_TYPES[m.datatype].value
            if m.unit:
                t["unit"] = m.unit
            if name.startswith(("Node Control/", "Device Control/", "Properties/")) or m.datatype not in TAG_TYPES:
                continue
            tags.append(t)
        entry: dict[str, Any] = {
            "name": tag_name(f"{n}-{d}" if d else n),
            "protocol": "sparkplug_b",
            "asset": "<enterprise>.<site>.<area>.<line>.<machine>",
            "broker": broker_name,
            "group_id": g,
            "edge_node_id": n,
        }
        if d:
            entry["device_id"] = d
        entry["tags"] = tags
        devices.append(entry)
    if not devices:
        return f"# no Sparkplug B births seen on {flt} within {seconds:g} s\n"
    return yaml.safe_dump({"devices": devices}, sort_keys=False, default_flow_style=None, width=1000)
