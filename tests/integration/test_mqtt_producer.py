"""The MQTT producer over a real mosquitto and the real Kafka broker: topic-per-tag, JSON, UMH
_historian, bad input to the dead-letter topic, and a broker restart with persistent sessions
(no duplicate, no lost QoS 1 message the broker accepted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.stack.mosquitto import Mosquitto
from producers.dead_letters import DeadLetterPublisher
from producers.readers.mqtt import run_mqtt_producer
from producers.service import frame_publisher
from tests.conftest import Stack, free_port, plant_raw
from tests.helpers import consume_until, decoder, prepare_topics

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(120)]

ASSET = "demo.springfield.packaging.line5.labeler1"
UMH_ASSET = "demo.springfield.packaging.line5.capper1"


def settings_for(tmp_path: Path, stack: Stack, port: int, version: str = "5", **device: Any) -> Settings:
    raw = plant_raw(tmp_path, stack)
    raw["devices"] = []
    known = {a["path"] for a in raw["plant"]["assets"]}
    raw["plant"]["assets"] += [a for a in [{"path": ASSET}, {"path": UMH_ASSET}] if a["path"] not in known]
    raw["pipeline"]["mqtt"] = {
        "local_port": port,
        "brokers": {"local": {"reconnect_max_s": 1.0, "protocol_version": version}},
    }
    raw["devices"] = [
        {
            "name": "labeler1",
            "protocol": "mqtt",
            "asset": ASSET,
            "topic": "demo/springfield/packaging/line5/labeler1/{tag}",
            "frame_period_s": 0.3,
            "tags": [
                {"name": "speed", "type": "float64", "unit": "m/min"},
                {"name": "count", "type": "uint32", "role": "counter_total"},
            ],
            **device,
        },
        {
            "name": "capper1",
            "protocol": "mqtt",
            "asset": UMH_ASSET,
            "topic": "umh/v1/demo/springfield/packaging/line5/capper1/_historian",
            "payload": "umh_historian",
            "frame_period_s": 0.3,
            "tags": [{"name": "torque", "type": "float64", "unit": "Nm"}, {"name": "head.rpm", "type": "int32"}],
        },
    ]
    return Settings(**raw)


@contextlib.asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[RunStats]:
    stats = RunStats("producer-mqtt", settings.pipeline.state_dir)
    sink = frame_publisher(settings, "producer-mqtt", stats)
    dead = DeadLetterPublisher(settings, "producer-mqtt")
    events: list[dict[str, Any]] = []
    stats.events = events  # type: ignore[attr-defined]
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_mqtt_producer(settings, sink.emit, stop, stats, on_event=events.append, dead_letters=dead)
    )
    try:
        yield stats
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        assert sink.close(30) == 0
        assert dead.close(10) == 0


class Publisher:
    """A plain paho client publishing QoS 1, counting what the broker acknowledged."""

    def __init__(self, port: int) -> None:
        self.acked = 0
        self._lock = threading.Lock()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.time_ns()}")
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_publish(self, *_: Any) -> None:
        with self._lock:
            self.acked += 1

    def send(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def until(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def frames(settings: Settings, done: Any, timeout: float = 30) -> list[dict[str, Any]]:
    dec = decoder(settings)
    msgs = consume_until(
        settings, settings.topic("plant.readings.v1"), lambda out: done([dec.decode(m.value()) for m in out]), timeout
    )
    return [dec.decode(m.value()) for m in msgs]


async def test_topic_per_tag_json_umh_and_bad_input(tmp_path: Path, stack: Stack) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port)
    broker.start()
    try:
        settings = settings_for(tmp_path, stack, port)
        prepare_topics(settings)
        async with producer(settings) as stats:
            await until(lambda: stats.get("mqtt_connects") >= 1)
            pub = Publisher(port)
            base = "demo/springfield/packaging/line5/labeler1"
            pub.send(f"{base}/speed", "12.5")
            pub.send(f"{base}/count", "41")
            pub.send(f"{base}/count", "42")
            umh = "umh/v1/demo/springfield/packaging/line5/capper1/_historian"
            pub.send(umh, json.dumps({"timestamp_ms": 1_700_000_000_123, "torque": 3.5}))
            pub.send(umh + "/head", json.dumps({"timestamp_ms": 1_700_000_000_124, "rpm": 900}))
            # bad input: wrong datatype, unconfigured tag topic, malformed JSON; then good data flows on
            pub.send(f"{base}/count", "minus one")
            pub.send(f"{base}/colour", "red")
            pub.send(umh, b"{not json")
            pub.send(f"{base}/speed", "13.0")
            pub.close()
            await until(lambda: stats.get("samples_received") >= 6 and stats.get("dead_letters") >= 3)
            await asyncio.sleep(0.5)
        got = frames(settings, lambda fs: sum(len(f["samples"]) for f in fs) >= 6)
        by_tag: dict[str, list[Any]] = {}
        for f in got:
            for s in f["samples"]:
                by_tag.setdefault(s["tag"], []).append((s["value"], s["unit"], f["asset"]))
        assert by_tag["speed"] == [(12.5, "m/min", ASSET), (13.0, "m/min", ASSET)]
        assert by_tag["count"] == [(41, "", ASSET), (42, "", ASSET)]
        assert by_tag["torque"] == [(3.5, "Nm", UMH_ASSET)]
        assert by_tag["head.rpm"] == [(900, "", UMH_ASSET)]
        umh_frame = next(f for f in got if f["asset"] == UMH_ASSET)
        assert umh_frame["samples"][0]["source_time"] == 1_700_000_000_123_000  # the payload's time is kept
        dead = consume_until(settings, settings.topic("plant.deadletter.v1"), lambda out: len(out) >= 3, 20)
        seen = {(dict(m.headers())["ps-error-class"], dict(m.headers())["ps-source-topic"], m.value()) for m in dead}
        assert seen == {
            (b"wrong_datatype", f"{base}/count".encode(), b"minus one"),
            (b"unconfigured_topic", f"{base}/colour".encode(), b"red"),
            (b"malformed_json", umh.encode(), b"{not json"),
        }
        assert stats.get("bad_wrong_datatype") == 1 and stats.get("bad_malformed_json") == 1
    finally:
        broker.stop()


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_broker_restart_no_duplicate_no_loss(tmp_path: Path, stack: Stack, version: str) -> None:
    """Messages the broker accepted while our frames were still open (not acknowledged by us) come again
    after the restart and are framed once; messages sent after the restart flow as well. Over MQTT 5
    (session expiry, Receive Maximum) and 3.1.1 (clean session false)."""
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port)
    broker.start()
    try:
        settings = settings_for(tmp_path, stack, port, version, frame_period_s=2.0)
        prepare_topics(settings)
        topic = "demo/springfield/packaging/line5/labeler1/count"
        async with producer(settings) as stats:
            await until(lambda: stats.get("mqtt_connects") >= 1)
            pub = Publisher(port)
            for i in range(300):
                pub.c.publish(topic, str(i), qos=1)
            await until(lambda: pub.acked >= 300)
            pub.close()
            await until(lambda: stats.get("samples_received") >= 50)  # some are in, held in an open frame
            broker.stop()  # SIGTERM: it saves its sessions and queued messages
            await until(lambda: stats.get("mqtt_connection_losses") >= 1)
            broker.start()
            await until(lambda: stats.get("mqtt_connects") >= 2, 20)
            pub = Publisher(port)
            for i in range(300, 400):
                pub.c.publish(topic, str(i), qos=1)
            await until(lambda: pub.acked >= 100)
            pub.close()
            await until(lambda: stats.get("frames_acked") >= 1 and stats.get("samples_received") >= 400, 30)
            await asyncio.sleep(2.5)
        got = frames(settings, lambda fs: len([s for f in fs for s in f["samples"] if s["value"] is not None]) >= 400)
        values = [s["value"] for f in got for s in f["samples"] if s["tag"] == "count" and s["value"] is not None]
        assert sorted(values) == list(range(400)), (
            f"missing {sorted(set(range(400)) - set(values))[:10]}, "
            f"duplicated {sorted(v for v in set(values) if values.count(v) > 1)[:10]}"
        )
        bad = [s for f in got for s in f["samples"] if s["quality"] == "BAD"]
        assert {s["tag"] for s in bad} >= {"speed", "count"}  # the outage is marked in the data
        print(
            f"\nmqtt {version} broker restart: 400 accepted, {len(values)} framed once; "
            f"{stats.get('messages')} messages received (unacknowledged ones come again), "
            f"{stats.get('messages_redelivered')} redeliveries dropped"
        )
    finally:
        broker.stop()
