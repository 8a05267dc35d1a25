"""Device-down events over the real broker: a Modbus server stopped and restarted gives exactly one
RAISED and one CLEARED Alert on plant.alerts.v1, while another device keeps its poll rate."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from plantstream.core import topics
from plantstream.core.config import Settings
from plantstream.simulators.modbus import PlantSimulator
from producers.readers.modbus import run_modbus_producer
from producers.service import event_publisher
from tests.conftest import Stack, free_port, plant_raw
from tests.helpers import consume_all, decoder, prepare_topics

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(60)]

POLL_S = 0.1


def only(raw: dict[str, Any], *names: str) -> Settings:
    return Settings(**{**raw, "devices": [d for d in raw["devices"] if d["name"] in names]})


async def test_outage_raises_once_and_clears_once(tmp_path: Path, stack: Stack) -> None:
    raw = plant_raw(tmp_path, stack)
    for d in raw["devices"]:
        d.update(port=free_port(), poll_interval_s=POLL_S, timeout_s=0.3, retries=0)
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.1}
    settings = only(raw, "press1-plc", "pump1-vfd")
    prepare_topics(settings)
    frames: list[dict[str, Any]] = []

    def of(name: str) -> list[dict[str, Any]]:
        return [f for f in frames if f["device"] == name]

    def quality(name: str) -> str:
        return of(name)[-1]["samples"][0]["quality"] if of(name) else ""

    async def until(cond: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    alerts = event_publisher(settings, "producer-ev")
    press, pump = PlantSimulator(only(raw, "press1-plc")), PlantSimulator(only(raw, "pump1-vfd"))
    stop = asyncio.Event()
    await press.start()
    await pump.start()
    task = asyncio.create_task(run_modbus_producer(settings, frames.append, stop, None, "ev", on_event=alerts.emit))
    try:
        await until(lambda: quality("press1-plc") == "GOOD" and quality("pump1-vfd") == "GOOD")
        await press.close()
        await until(lambda: quality("press1-plc") == "BAD")
        t0, n0 = time.monotonic(), len(of("pump1-vfd"))
        await asyncio.sleep(1.5)  # several failing scans: still only one RAISED
        outage_s, pump_scans = time.monotonic() - t0, len(of("pump1-vfd")) - n0
        await press.start()
        await until(lambda: quality("press1-plc") == "GOOD")
        await asyncio.sleep(3 * POLL_S)
    finally:
        stop.set()
        await asyncio.wait_for(task, 3)
        await press.close()
        await pump.close()
        assert alerts.close(10) == 0

    assert pump_scans >= 0.75 * outage_s / POLL_S, (pump_scans, outage_s)
    assert all(s["quality"] == "GOOD" for f in of("pump1-vfd") for s in f["samples"])
    dec = decoder(settings)
    got = [dec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.ALERTS), 2, timeout=20)]
    assert [a["state"] for a in got] == ["RAISED", "CLEARED"], got
    raised, cleared = got
    assert raised["alert_id"] == cleared["alert_id"]
    assert raised["rule"] == "device-down:press1-plc" and raised["kind"] == "device_down"
    assert raised["asset"] == settings.devices[0].asset and "cannot connect" in raised["message"]
    assert raised["time"] < cleared["time"]


async def test_opcua_connection_loss_raises_once_and_clears_once(tmp_path: Path) -> None:
    from plantstream.simulators.opcua import OpcUaSimulator
    from producers.readers.opcua import run_opcua_producer
    from tests.integration.test_opcua import settings_for, tag, until

    s = settings_for(tmp_path, [tag("temp")], server={"security_policies": ["None"]}, timeout_s=1.0)
    events: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    sim = OpcUaSimulator(s)
    await sim.start()
    stop = asyncio.Event()
    task = asyncio.create_task(run_opcua_producer(s, frames.append, stop, on_event=events.append))
    try:
        await until(lambda: len(frames) >= 2, 5, "frames before the outage")
        await sim.close()
        await until(lambda: bool(events), 8, "device-down RAISED")
        await asyncio.sleep(0.6)  # reconnect attempts fail meanwhile: no second RAISED
        sim = OpcUaSimulator(s)
        await sim.start()
        await until(lambda: len(events) >= 2, 10, "device-up CLEARED")
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await sim.close()
    assert [e["state"] for e in events] == ["RAISED", "CLEARED"], events
    assert events[0]["alert_id"] == events[1]["alert_id"] and events[0]["rule"] == "device-down:press1-opcua"
