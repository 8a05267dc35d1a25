"""The readers the conformance suite runs on: one case per protocol, each with a real server.

A case builds a plant with one device of its protocol on a free loopback port (`settings`), serves
that device with a real server (`server`, an async context manager that can be left and entered again
on the same port), and builds the DeviceReader(s) for the plant (`readers`). A new protocol adds its
case to CASES; test_readers.py then checks it like every other reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantstream.core.config import MqttDevice, OpcUaDevice, Settings, SparkplugDevice
from plantstream.core.runstats import RunStats
from plantstream.simulators.modbus import PlantSimulator
from plantstream.simulators.mqtt_edge import MqttPlantSimulator
from plantstream.simulators.opcua import OpcUaSimulator
from plantstream.stack.mosquitto import Mosquitto
from producers.device_events import EventEmit
from producers.readers.base import DeviceReader, Emit
from producers.readers.modbus import make_pollers, modbus_devices
from producers.readers.mqtt import MqttReader
from producers.readers.opcua import OpcUaDeviceReader
from producers.readers.sparkplug import SparkplugReader
from tests.conftest import free_port, plant_raw

MakeReaders = Callable[[Settings, Emit, EventEmit, RunStats], Sequence[DeviceReader]]


@dataclass(frozen=True)
class ReaderCase:
    protocol: str
    settings: Callable[[Path], Settings]
    server: Callable[[Settings], AbstractAsyncContextManager[Any]]
    readers: MakeReaders

    def __str__(self) -> str:
        return self.protocol


# --- Modbus TCP: the plant simulator serving one demo device ---------------------------------------------


def modbus_settings(tmp_path: Path) -> Settings:
    raw = plant_raw(tmp_path)
    device = next(d for d in raw["devices"] if d["protocol"] == "modbus_tcp")
    device.update(port=free_port(), poll_interval_s=0.2, timeout_s=0.5, retries=0)
    raw["devices"] = [device]
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.05, "seed": 3}
    return Settings(**raw)


def modbus_readers(settings: Settings, emit: Emit, on_event: EventEmit, stats: RunStats) -> Sequence[DeviceReader]:
    return make_pollers(modbus_devices(settings), emit, producer_id="conformance", stats=stats, on_event=on_event)


# --- OPC UA: the OPC UA simulator serving one device by subscription ---------------------------------------


def opcua_settings(tmp_path: Path) -> Settings:
    raw = plant_raw(tmp_path)
    raw["devices"] = [
        {
            "name": "press1-opcua",
            "protocol": "opcua",
            "asset": "demo.springfield.stamping.line1.press1",
            "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/plant",
            "publishing_interval_ms": 100,
            "sampling_interval_ms": 0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "timeout_s": 2.0,
            "tags": [
                {"name": n, "node_id": f"ns=2;s=press1.{n}", "type": "float64", "unit": "bar"}
                for n in ("pressure", "temperature", "force")
            ],
        }
    ]
    raw["pipeline"]["opcua_server"] = {}
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.1}
    return Settings(**raw)


def opcua_readers(settings: Settings, emit: Emit, on_event: EventEmit, stats: RunStats) -> Sequence[DeviceReader]:
    return [
        OpcUaDeviceReader(settings, d, emit, producer_id="conformance", stats=stats, on_event=on_event)
        for d in settings.devices
        if isinstance(d, OpcUaDevice)
    ]


# --- MQTT and Sparkplug B: a real mosquitto, the MQTT simulator publishing to it -----------------------------


class BrokerAndSimulator:
    """mosquitto on the configured local port plus the MQTT/Sparkplug simulator; leave and enter again at will."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(settings.pipeline.state_dir) / "mosquitto"
        self.broker: Mosquitto | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()

    async def __aenter__(self) -> BrokerAndSimulator:
        self.broker = Mosquitto(self.folder, self.settings.pipeline.mqtt.local_port, persistence=False)
        self.broker.start()
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(MqttPlantSimulator(self.settings).run(self.stop))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        if self.broker is not None:
            self.broker.stop(kill=True)  # a broker that dies: the readers see their connection drop


def broker_settings(tmp_path: Path, protocol: str) -> Settings:
    raw = plant_raw(tmp_path, mqtt=True)
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == protocol]
    for d in raw["devices"]:
        d["frame_period_s"] = 0.2
    raw["pipeline"]["mqtt"]["brokers"] = {"local": {"reconnect_min_s": 0.2, "reconnect_max_s": 0.5}}
    raw["pipeline"]["mqtt"]["rebirth_min_interval_s"] = 0.2
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.1}
    return Settings(**raw)


def mqtt_readers(settings: Settings, emit: Emit, on_event: EventEmit, stats: RunStats) -> Sequence[DeviceReader]:
    devices = [d for d in settings.devices if isinstance(d, MqttDevice)]
    return [MqttReader(settings, "local", devices, emit, producer_id="conformance", stats=stats, on_event=on_event)]


def sparkplug_readers(settings: Settings, emit: Emit, on_event: EventEmit, stats: RunStats) -> Sequence[DeviceReader]:
    devices = [d for d in settings.devices if isinstance(d, SparkplugDevice)]
    return [
        SparkplugReader(settings, "local", devices, emit, producer_id="conformance", stats=stats, on_event=on_event)
    ]


CASES = [
    ReaderCase("modbus", modbus_settings, PlantSimulator, modbus_readers),
    ReaderCase("opcua", opcua_settings, OpcUaSimulator, opcua_readers),
    ReaderCase("mqtt", lambda p: broker_settings(p, "mqtt"), BrokerAndSimulator, mqtt_readers),
    ReaderCase("sparkplug", lambda p: broker_settings(p, "sparkplug_b"), BrokerAndSimulator, sparkplug_readers),
]
