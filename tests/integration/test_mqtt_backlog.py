"""A persistent session's backlog larger than `max_unacked`, over a real mosquitto: the broker sends the
queued QoS 1 messages between its CONNACK and its SUBACK, and the reader must acknowledge them then too,
or the broker's in-flight window stays full and reading stops until the next reconnect. No Kafka:
frames go to a list."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.stack.mosquitto import Mosquitto
from producers.readers.mqtt import run_mqtt_producer
from tests.conftest import free_port

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(60)]

ASSET = "acme.berlin.utilities.air.compressor1"
TOPIC = "acme/berlin/utilities/air/compressor1/count"
BACKLOG = 2000


async def read(settings: Settings, until: Any, timeout: float) -> tuple[list[dict[str, Any]], RunStats]:
    frames: list[dict[str, Any]] = []
    stats = RunStats("producer-mqtt")
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_mqtt_producer(settings, frames.append, stop, stats))
    deadline = time.monotonic() + timeout
    while not until(stats) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    return frames, stats


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_backlog_larger_than_max_unacked_is_read_to_the_end(tmp_path: Path, version: str) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port, persistence=False)
    broker.start()
    settings = Settings(
        plant={"assets": [{"path": ASSET}]},
        devices=[
            {
                "name": "compressor1",
                "protocol": "mqtt",
                "asset": ASSET,
                "topic": "acme/berlin/utilities/air/compressor1/{tag}",
                "frame_period_s": 30.0,  # only max_unacked cuts frames here
                "tags": [{"name": "count", "type": "uint32"}],
            }
        ],
        pipeline={
            "state_dir": str(tmp_path / "state"),
            "mqtt": {"local_port": port, "brokers": {"local": {"protocol_version": version, "max_unacked": 100}}},
        },
    )
    try:
        # the persistent session and its subscription exist; then the backlog is queued while we are away
        await read(settings, lambda s: s.get("mqtt_connects") >= 1, 10)
        pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [pub.publish(TOPIC, str(i), qos=1) for i in range(BACKLOG)]
        for info in infos:
            info.wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()

        frames, stats = await read(settings, lambda s: s.get("samples_received") >= BACKLOG, 15)
        values = [s["value"] for f in frames for s in f["samples"] if s["quality"] == "GOOD"]
        assert sorted(values) == list(range(BACKLOG)), f"{len(values)} of {BACKLOG} read"
        assert stats.get("mqtt_connects") == 1  # read to the end within one session, no reconnect needed
    finally:
        broker.stop()
