"""The MQTT reader: `protocol: mqtt` devices (plain, JSON, UMH _historian payloads) into ReadingFrames.

One connection per broker for all its devices (producers/readers/broker_reader.py); topics and
payloads map to samples in producers/readers/mqtt_mapping.py. A QoS 1 message we acknowledged whose
PUBACK the broker lost (it went down) comes again with the DUP flag; one equal to a recently
acknowledged message is dropped (a message not yet acknowledged is not framed before it comes again:
broker_reader.py), so arrival-time samples are not doubled either.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import paho.mqtt.client as mqtt

from plantstream.core import logs
from plantstream.core.config import MqttDevice, Settings
from plantstream.core.runstats import RunStats
from producers.device_events import EventEmit
from producers.readers.base import Emit, default_producer_id, now_us, run_readers
from producers.readers.broker_reader import BrokerReader, DeadLetters, group_by_broker
from producers.readers.mqtt_mapping import MqttMapping, filter_covers, topic_filter
from producers.readers.mqtt_payload import BadInput

log = logs.get(__name__)

RECENT_MESSAGES = 4096


class MqttReader(BrokerReader):
    protocol = "mqtt"

    def __init__(
        self,
        settings: Settings,
        broker_name: str,
        devices: Sequence[MqttDevice],
        emit: Emit,
        *,
        producer_id: str,
        stats: RunStats | None = None,
        on_event: EventEmit | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.mapping = MqttMapping(devices)
        broker = settings.pipeline.mqtt.brokers[broker_name]
        self._recent: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._pending: dict[int, tuple[str, bytes]] = {}  # QoS 1 message id -> key, until acknowledged
        super().__init__(
            settings,
            broker_name,
            devices,
            emit,
            producer_id=producer_id,
            stats=stats,
            on_event=on_event,
            dead_letters=dead_letters,
            persistent_qos1=lambda i: devices[i].qos == 1 and not broker.clean_session,
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        """Each filter at the highest QoS of the devices it covers."""
        return [
            (
                f,
                max(
                    (d.qos for d in self.mapping.devices if any(filter_covers(f, g) for g in topic_filter(d))),
                    default=0,
                ),
            )
            for f in self.mapping.filters
        ]

    def connected(self, session_present: bool) -> None:
        for di in range(len(self.devices)):
            self.device_up(di)

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        payload = cast(bytes, msg.payload)  # paho hands over bytes
        mid = msg.mid if msg.qos else None
        self.add_stat("messages")
        try:
            di, samples, problems = self.mapping.decode(topic, payload, now_us())
        except BadInput as e:
            self.bad_input(topic, payload, [e], self.mapping.device_of(topic))
            self.ack_now(mid)
            return
        key = (topic, payload)
        if msg.dup and key in self._recent:
            self.add_stat("messages_redelivered")
            self.ack_now(mid)
            return
        if mid is None:
            self._remember(key)
        else:
            self._pending[mid] = key
        self.add_samples(di, samples, mid=mid)
        if problems:
            self.bad_input(topic, payload, problems, di)

    def acked(self, mids: list[int]) -> None:
        if not mids:  # a lost connection: what was not acknowledged comes again, not as a redelivery of ours
            self._pending.clear()
            return
        for mid in mids:
            key = self._pending.pop(mid, None)
            if key is not None:
                self._remember(key)

    def _remember(self, key: tuple[str, bytes]) -> None:
        """A message whose samples are on disk: a redelivery of it (DUP flag) is dropped."""
        self._recent[key] = None
        if len(self._recent) > RECENT_MESSAGES:
            self._recent.popitem(last=False)


async def run_mqtt_producer(
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event,
    stats: RunStats | None = None,
    producer_id: str | None = None,
    on_event: EventEmit | None = None,
    dead_letters: DeadLetters | None = None,
) -> None:
    """Read every configured mqtt device until `stop`; one connection per broker."""
    pid = producer_id or default_producer_id()
    devices = [d for d in settings.devices if isinstance(d, MqttDevice)]
    if not devices:
        log.warning("no mqtt devices configured: nothing to read")
    readers = [
        MqttReader(settings, name, ds, emit, producer_id=pid, stats=stats, on_event=on_event, dead_letters=dead_letters)
        for name, ds in group_by_broker(devices).items()
    ]
    for r in readers:
        log.info("reading %d mqtt device(s) from %s", len(r.devices), r.connection.where)
    await run_readers(readers, stop, stats)
