"""The Sparkplug B host over a real mosquitto and Kafka, against an independent edge node (Eclipse
Tahu's reference encoder, tests/sparkplug_edge.py): births, data by alias, engineering units,
historical metrics, STATE, rebirth after a seq gap, bad input to dead letters, NDEATH -> BAD + alert,
cleared by the next birth."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.stack.mosquitto import Mosquitto
from producers.dead_letters import DeadLetterPublisher
from producers.readers.sparkplug import run_sparkplug_producer
from producers.service import frame_publisher
from tests.conftest import Stack, free_port, plant_raw
from tests.helpers import consume_until, decoder, prepare_topics
from tests.servers import MqttRecorder, retained
from tests.sparkplug_edge import Metric, TahuEdge
from tests.sparkplug_edge import T as DT

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(120)]

NODE_ASSET = "demo.springfield.packaging.line6.line6"
FILLER_ASSET = "demo.springfield.packaging.line6.filler2"


def settings_for(tmp_path: Path, stack: Stack, port: int) -> Settings:
    raw = plant_raw(tmp_path, stack)
    known = {a["path"] for a in raw["plant"]["assets"]}
    raw["plant"]["assets"] += [a for a in [{"path": NODE_ASSET}, {"path": FILLER_ASSET}] if a["path"] not in known]
    raw["pipeline"]["mqtt"] = {
        "local_port": port,
        "rebirth_min_interval_s": 0.2,
        "brokers": {"local": {"reconnect_max_s": 1.0}},
    }
    raw["devices"] = [
        {
            "name": "line6-node",
            "protocol": "sparkplug_b",
            "asset": NODE_ASSET,
            "group_id": "Plant1",
            "edge_node_id": "Line6",
            "frame_period_s": 0.2,
            "tags": [{"name": "temperature", "metric": "Process/Temp", "type": "float64"}],
        },
        {
            "name": "filler2",
            "protocol": "sparkplug_b",
            "asset": FILLER_ASSET,
            "group_id": "Plant1",
            "edge_node_id": "Line6",
            "device_id": "Filler2",
            "frame_period_s": 0.2,
            "tags": [
                {"name": "level", "metric": "Tank/Level"},
                {"name": "speed", "metric": "Speed", "type": "int32", "unit": "bpm"},
                {"name": "state", "metric": "State", "role": "machine_state"},
            ],
        },
    ]
    return Settings(**raw)


@contextlib.asynccontextmanager
async def host(settings: Settings) -> AsyncIterator[tuple[RunStats, list[dict[str, Any]]]]:
    stats = RunStats("producer-sparkplug", settings.pipeline.state_dir)
    sink = frame_publisher(settings, "producer-sparkplug", stats)
    dead = DeadLetterPublisher(settings, "producer-sparkplug")
    events: list[dict[str, Any]] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_sparkplug_producer(settings, sink.emit, stop, stats, on_event=events.append, dead_letters=dead)
    )
    try:
        yield stats, events
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        assert sink.close(30) == 0
        assert dead.close(10) == 0


async def until(cond: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        await asyncio.sleep(0.05)


def edge_for(port: int) -> TahuEdge:
    return TahuEdge(
        port,
        "Plant1",
        "Line6",
        node_metrics=[Metric("Process/Temp", 1, DT.Double, 61.5), Metric("Unmapped/Thing", 2, DT.Int32, 7)],
        devices={
            "Filler2": [
                Metric("Tank/Level", 10, DT.Float, 0.5, unit="m"),
                Metric("Speed", 11, DT.Int16, -12),
                Metric("State", 12, DT.UInt8, 1),
            ]
        },
    )


async def test_sparkplug_host_end_to_end(tmp_path: Path, stack: Stack) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port)
    broker.start()
    edge = edge_for(port)
    try:
        settings = settings_for(tmp_path, stack, port)
        prepare_topics(settings)
        cmds = MqttRecorder(port, "spBv1.0/Plant1/NCMD/#")
        async with host(settings) as (stats, events):
            await until(lambda: stats.get("mqtt_connects") >= 1, what="host connected")
            state = [json.loads(m.payload) for m in retained(port, "spBv1.0/STATE/plantstream", 0.5)]
            assert [s["online"] for s in state] == [True]
            edge.connect()
            await until(lambda: stats.get("samples_received") >= 4, what="births framed")
            edge.data("Filler2", [(10, DT.Float, 0.75), (11, DT.Int16, 40)])
            edge.data(None, [(1, DT.Double, 62.0)])
            hist_ms = 1_600_000_000_000
            edge.data("Filler2", [(10, DT.Float, 0.25)], historical_at=hist_ms)
            # a lost message (seq gap): the host asks for a rebirth, the edge answers with new births
            edge.data("Filler2", [(11, DT.Int16, 41)], skip_seq=3)
            await until(lambda: edge.rebirths >= 1, what="rebirth after seq gap")
            await until(lambda: edge.births >= 2)
            await asyncio.sleep(0.3)
            # bad input: an alias no birth defined, a payload that is no protobuf, an unconfigured device
            edge.data("Filler2", [(77, DT.Float, 1.0), (11, DT.Int16, 42)])
            edge.raw("DDATA", "Filler2", b"\x0a\xff\xff")
            edge.raw("DDATA", "Capper9", b"")
            await until(lambda: stats.get("dead_letters") >= 3, what="dead letters")
            # the node dies (no DISCONNECT): its will NDEATH turns both devices BAD and raises device-down
            edge.kill()
            await until(lambda: sum(e["state"] == "RAISED" for e in events) >= 2, what="device-down raised")
            edge.connect()
            await until(lambda: sum(e["state"] == "CLEARED" for e in events) >= 2, what="device-down cleared")
            edge.data("Filler2", [(11, DT.Int16, 50)])
            await until(lambda: stats.get("samples_received") >= 16, what="data after rebirth")
            await asyncio.sleep(0.5)
        edge.close()
        assert [json.loads(m.payload)["online"] for m in retained(port, "spBv1.0/STATE/plantstream", 0.5)] == [False]
        assert any(m.topic == "spBv1.0/Plant1/NCMD/Line6" for m in cmds.all())
        cmds.close()

        dec = decoder(settings)
        msgs = consume_until(
            settings,
            settings.topic("plant.readings.v1"),
            lambda out: any(s["value"] == 50 for m in out for s in dec.decode(m.value())["samples"]),
            30,
        )
        frames = [dec.decode(m.value()) for m in msgs]
        filler = [f for f in frames if f["asset"] == FILLER_ASSET]
        node = [f for f in frames if f["asset"] == NODE_ASSET]
        speeds = [s["value"] for f in filler if not f["historical"] for s in f["samples"] if s["tag"] == "speed"]
        assert speeds[:3] == [-12, 40, 41] and 50 in speeds and 42 in speeds
        levels = [
            (s["value"], s["unit"]) for f in filler if not f["historical"] for s in f["samples"] if s["tag"] == "level"
        ]
        assert levels[:2] == [(0.5, "m"), (0.75, "m")]  # unit from the birth's engUnit property
        assert next(s["unit"] for f in filler for s in f["samples"] if s["tag"] == "speed") == "bpm"  # config wins
        hist = [f for f in filler if f["historical"]]
        assert [(s["tag"], s["value"], s["source_time"]) for f in hist for s in f["samples"]] == [
            ("level", 0.25, hist_ms * 1000)
        ]
        temps = [s["value"] for f in node for s in f["samples"] if s["tag"] == "temperature"]
        assert temps[:2] == [61.5, 62.0] and None in temps  # None: BAD after the NDEATH
        bad = {s["tag"] for f in filler for s in f["samples"] if s["quality"] == "BAD"}
        assert bad == {"level", "speed", "state"}
        raised = [e for e in events if e["state"] == "RAISED"]
        assert {e["rule"] for e in raised} == {"device-down:line6-node", "device-down:filler2"}
        assert all("NDEATH" in e["message"] for e in raised)
        dead = consume_until(settings, settings.topic("plant.deadletter.v1"), lambda out: len(out) >= 3, 20)
        kinds = {
            dict(m.headers())["ps-error-class"].decode(): dict(m.headers())["ps-source-topic"].decode() for m in dead
        }
        assert kinds == {
            "unknown_alias": "spBv1.0/Plant1/DDATA/Line6/Filler2",
            "malformed_protobuf": "spBv1.0/Plant1/DDATA/Line6/Filler2",
            "unconfigured_topic": "spBv1.0/Plant1/DDATA/Line6/Capper9",
        }
        assert stats.get("metrics_unmapped") >= 1  # Unmapped/Thing is in the birth, mapped to no tag

        # an IT system reads the same frames with nothing but confluent_kafka's DeserializingConsumer
        consumer = DeserializingConsumer(
            {
                "bootstrap.servers": stack.bootstrap,
                "group.id": f"it-system-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "key.deserializer": StringDeserializer("utf_8"),
                "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url})),
            }
        )
        consumer.subscribe([settings.topic("plant.readings.v1")])
        it: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        try:
            while len(it) < len(frames) and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    assert msg.key() == msg.value()["asset"]
                    it.append(msg.value())
        finally:
            consumer.close()
        assert len(it) == len(frames)
        mine = {
            (f["device"], f["seq"]): [(s["tag"], s["value"], s["quality"], s["unit"]) for s in f["samples"]]
            for f in frames
        }
        theirs = {
            (f["device"], f["seq"]): [(s["tag"], s["value"], s["quality"], s["unit"]) for s in f["samples"]] for f in it
        }
        assert theirs == mine
        hist_it = next(f for f in it if f["historical"])
        assert hist_it["samples"][0]["source_time"] == dt.datetime.fromtimestamp(hist_ms / 1000, dt.UTC)
    finally:
        edge.close()
        broker.stop()
