"""What the MQTT and Sparkplug B readers share: the devices of one broker read over one connection.

Samples go into a FrameAssembler per device; a timer cuts each device's frame when its period is
over, hands the frames to `emit` (the store-and-forward publisher: on disk when it returns) and only
then acknowledges the QoS 1 messages they came from. When the connection drops, every device gets
one frame of BAD samples and one device-down event (CLEARED when it is back); samples of QoS 1
messages not yet acknowledged are dropped then, because a persistent session redelivers them.
Bad input is counted per kind, logged once per (topic, kind) with the reason, and its raw payload
goes to the dead-letter topic; the reader goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from plantstream.core import logs
from plantstream.core.config import MqttBroker, Settings
from plantstream.core.records import Sample
from plantstream.core.runstats import RunStats
from producers.device_events import EventEmit
from producers.readers.base import DeviceReader, Emit, now_us, wait_stop
from producers.readers.framing import FrameAssembler
from producers.readers.mqtt_client import MqttConnection, Will
from producers.readers.mqtt_payload import BadInput

log = logs.get(__name__)

MAX_LOGGED_TOPICS = 1000  # distinct (topic, kind) pairs logged one by one; beyond, one line per kind


class BrokerDevice(Protocol):
    name: str
    asset: str
    frame_period_s: float

    @property
    def tags(self) -> Sequence[Any]: ...


class DeadLetters(Protocol):
    def emit(
        self,
        key: bytes | None,
        value: bytes,
        *,
        reason: str,
        kind: str,
        source_topic: str,
        source: str,
        device: str | None = None,
    ) -> None: ...


class BrokerReader(DeviceReader):
    """A DeviceReader for the devices of one broker; subclasses give the subscriptions and map messages."""

    protocol = "mqtt"  # also the client id part

    def __init__(
        self,
        settings: Settings,
        broker_name: str,
        devices: Sequence[BrokerDevice],
        emit: Emit,
        *,
        producer_id: str,
        stats: RunStats | None = None,
        on_event: EventEmit | None = None,
        dead_letters: DeadLetters | None = None,
        persistent_qos1: Callable[[int], bool] = lambda _i: False,
    ) -> None:
        self.settings = settings
        self.broker_name = broker_name
        self.broker: MqttBroker = settings.pipeline.mqtt.brokers[broker_name]
        self.devices = list(devices)
        self._dead = dead_letters
        self._persistent_qos1 = persistent_qos1
        self.assemblers = [
            FrameAssembler(d.name, d.asset, producer_id, d.frame_period_s, tags=d.tags) for d in self.devices
        ]
        self._logged: set[tuple[str, str]] = set()
        self._unacked = 0
        self._down_cause = ""
        self.connection = MqttConnection(
            self.broker,
            name=broker_name,
            client_id=self.broker.client_id or f"plantstream-{self.protocol}-{broker_name}",
            local_port=settings.pipeline.mqtt.local_port,
            subscriptions=self.subscriptions(),
            on_message=self.on_message,
            on_up=self._up,
            on_down=self._down,
            will=self.will,
            password=self.broker.password.get_secret_value() if self.broker.password else None,
        )
        super().__init__(
            self.devices, emit, subject=self.connection.where, log=log, stats=stats, on_event=on_event,
            report_each_cause=True,
        )

    @property
    def source(self) -> str:
        return f"mqtt://{self.connection.host}:{self.connection.port}"

    # --- to implement --------------------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def on_message(self, msg: Any) -> None:
        raise NotImplementedError

    def will(self) -> Will | None:
        return None

    def connected(self, session_present: bool) -> None:
        """Called after each (re)connect and subscribe."""

    def acked(self, mids: list[int]) -> None:
        """These QoS 1 messages were acknowledged (their frames are on disk)."""

    def disconnected(self) -> None:
        """Called when the connection is lost (or cannot be made), before every device is marked down."""

    # --- running -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        tick = max(0.02, min(0.25, min((d.frame_period_s for d in self.devices), default=1.0) / 4))
        cutter = asyncio.ensure_future(self._cut_loop(stop, tick))
        try:
            await self.connection.run(stop)
        finally:
            cutter.cancel()
            self.cut_all(force=True)

    async def _cut_loop(self, stop: asyncio.Event, tick: float) -> None:
        loop = asyncio.get_running_loop()
        while not await wait_stop(stop, tick):
            self.cut_all(now=loop.time())

    def cut_all(self, now: float | None = None, force: bool = False) -> None:
        t = asyncio.get_running_loop().time() if now is None else now
        for asm in self.assemblers:
            if asm.opened_at is not None and (force or asm.due(t)):
                self._cut(asm)

    def _cut(self, asm: FrameAssembler, *, ack: bool = True) -> None:
        out = asm.cut(now_us())
        for frame in out.frames:
            self.send(frame)
        if out.duplicates:
            self.add_stat("samples_duplicate", out.duplicates)
        self._unacked -= len(out.acks)
        if ack and out.acks:
            self.connection.ack(out.acks)
            self.acked(out.acks)

    def add_samples(self, di: int, samples: list[Sample], *, historical: bool = False, mid: int | None = None) -> None:
        asm = self.assemblers[di]
        now = asyncio.get_running_loop().time()
        asm.add(samples, now, historical=historical)
        if mid is not None:
            asm.ack_later(mid)
            self._unacked += 1
        self.add_stat("samples_received", len(samples))
        if asm.size >= 5000 or self._unacked >= self.broker.max_unacked:
            self.cut_all(force=True)

    def ack_now(self, mid: int | None) -> None:
        if mid is not None:
            self.connection.ack((mid,))

    # --- connection state ------------------------------------------------------------------------------

    def _up(self, session_present: bool) -> None:
        self.add_stat("mqtt_connects")
        self.report_recovery("connected again")
        self._down_cause = ""
        self.connected(session_present)

    def _down(self, cause: str) -> None:
        if cause != self._down_cause:
            self.add_stat("mqtt_connection_losses")
        self._down_cause = cause
        self.report_failure(cause, "its devices' tags are BAD until it is back (retrying with backoff)")
        for di, asm in enumerate(self.assemblers):
            # unacknowledged QoS 1 messages of a persistent session come again: their samples wait for that
            self._cut(asm, ack=False) if not self._persistent_qos1(di) else self._drop_open(asm)
        self._unacked = 0
        self.acked([])
        self.disconnected()
        for di in range(len(self.devices)):
            self.mark_down(di, f"{self.connection.where}: {cause}")

    def _drop_open(self, asm: FrameAssembler) -> None:
        dropped = asm.cut(now_us())
        asm.seq -= len(dropped.frames)  # they were never sent: no sequence gap

    def mark_down(self, di: int, cause: str) -> None:
        """Device `di` is out of sight: what it sent so far goes out, then one frame of BAD tags (once per
        outage) and the RAISED device-down alert."""
        asm = self.assemblers[di]
        if asm.opened_at is not None:
            self._cut(asm)
        self.device_down(di, cause, gap=lambda at: asm.bad_frame(self.devices[di].tags, at))

    # --- bad input ---------------------------------------------------------------------------------------

    def bad_input(self, topic: str, payload: bytes, problems: Sequence[BadInput], di: int | None = None) -> None:
        """Count each problem, log it once per (topic, kind), send the raw payload to the dead letters once."""
        for p in problems:
            self.add_stat(f"bad_{p.kind}")
            key = (topic, p.kind) if len(self._logged) < MAX_LOGGED_TOPICS else ("*", p.kind)
            if key not in self._logged:
                self._logged.add(key)
                device = f" (device {self.devices[di].name!r})" if di is not None else ""
                log.warning(
                    "%s: bad input on topic %r%s: %s [%s]; the raw payload goes to the dead-letter topic, "
                    "later %s on this topic are only counted",
                    self.connection.where,
                    topic,
                    device,
                    p.reason,
                    p.kind,
                    p.kind,
                )
        self.add_stat("dead_letters")
        if self._dead is not None:
            asset = self.devices[di].asset if di is not None else None
            self._dead.emit(
                asset.encode() if asset else topic.encode(),
                payload,
                reason="; ".join(p.reason for p in problems),
                kind=problems[0].kind,
                source_topic=topic,
                source=self.source,
                device=self.devices[di].name if di is not None else None,
            )



def group_by_broker(devices: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for d in devices:
        out.setdefault(d.broker, []).append(d)
    return out

