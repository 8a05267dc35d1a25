"""The demo plant's MQTT side (plantstream/simulators/mqtt_edge.py) over a real mosquitto, read by our
own readers: the Sparkplug edge node answers a Rebirth request with births, its seeded fault (a drop
without DISCONNECT) makes the broker publish its NDEATH, which turns the capper's tags BAD and raises
device-down, cleared when the node is born again; the JSON labeler's values arrive GOOD. No Kafka:
frames go to a list."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.simulators.mqtt_edge import MqttPlantSimulator
from plantstream.stack.mosquitto import Mosquitto
from producers.readers.mqtt import run_mqtt_producer
from producers.readers.sparkplug import run_sparkplug_producer
from tests.conftest import plant_raw

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(60)]


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        await asyncio.sleep(0.05)


async def test_simulated_edge_node_rebirth_seeded_fault_and_json_line(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path, mqtt=True)
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] in ("mqtt", "sparkplug_b")]
    for d in raw["devices"]:
        d["frame_period_s"] = 0.2
    # 10 simulated seconds per step: the seeded fault (first after 3-6 simulated minutes) comes after ~2.7 s (seed 5)
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.1, "speed": 100, "seed": 5}
    raw["pipeline"]["mqtt"]["rebirth_min_interval_s"] = 0.2
    settings = Settings(**raw)
    spb = next(d for d in settings.devices if d.protocol == "sparkplug_b")
    json_names = {d.name for d in settings.devices if d.protocol == "mqtt"}
    assert json_names, "the demo plant has an MQTT JSON device"
    broker = Mosquitto(tmp_path / "mosquitto", settings.pipeline.mqtt.local_port, persistence=False)
    broker.start()
    sim = MqttPlantSimulator(settings)
    stop_sim, stop = asyncio.Event(), asyncio.Event()
    sim_task = asyncio.ensure_future(sim.run(stop_sim))
    frames: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    stats = RunStats("producer-sparkplug")
    json_stats = RunStats("producer-mqtt")
    try:
        await asyncio.sleep(0.5)  # the node's births went out before the host listened: it must ask again
        host = asyncio.ensure_future(
            run_sparkplug_producer(settings, frames.append, stop, stats, on_event=events.append)
        )
        reader = asyncio.ensure_future(run_mqtt_producer(settings, frames.append, stop, json_stats))

        def raised() -> list[dict[str, Any]]:
            return [e for e in events if e["state"] == "RAISED" and e["rule"] == f"device-down:{spb.name}"]

        def cleared() -> list[dict[str, Any]]:
            return [e for e in events if e["state"] == "CLEARED" and e["rule"] == f"device-down:{spb.name}"]

        await until(lambda: stats.get("rebirth_requests") >= 1, 10, "rebirth asked (data before birth)")
        await until(lambda: any(f["device"] == spb.name and f["samples"] for f in frames), 10, "births framed")
        await until(lambda: any("NDEATH" in e["message"] for e in raised()), 20, "seeded fault: NDEATH raised")
        await until(lambda: len(cleared()) >= 1, 20, "device-down cleared by the next birth")
        stop.set()
        await asyncio.wait_for(asyncio.gather(host, reader), 20)
    finally:
        stop.set()
        stop_sim.set()
        await asyncio.wait_for(sim_task, 10)
        broker.stop()
    capper = [f for f in frames if f["device"] == spb.name]
    good = {s["tag"] for f in capper for s in f["samples"] if s["quality"] == "GOOD"}
    bad = {s["tag"] for f in capper for s in f["samples"] if s["quality"] == "BAD"}
    assert good == bad == {t.name for t in spb.tags}
    first_bad = next(i for i, f in enumerate(capper) if any(s["quality"] == "BAD" for s in f["samples"]))
    assert any(s["quality"] == "GOOD" for f in capper[first_bad + 1 :] for s in f["samples"])  # back after rebirth
    labeled = [s for f in frames if f["device"] in json_names for s in f["samples"] if s["quality"] == "GOOD"]
    assert labeled and all(s["value"] is not None for s in labeled)
    assert stats.get("dead_letters") == 0 and json_stats.get("dead_letters") == 0
