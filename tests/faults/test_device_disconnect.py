"""Fault: device servers go away mid-run and come back (a Modbus device server stopped and restarted,
an OPC UA server restarted under a live subscription). The outage must show as BAD samples (not as a
gap in the sequence numbers), values must flow again after recovery, and through real Kafka and the
storage sink every acknowledged frame is stored, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import Settings
from plantstream.simulators.modbus import PlantSimulator
from plantstream.simulators.opcua import OpcUaSimulator
from producers.readers.base import now_us
from producers.readers.modbus import run_modbus_producer
from producers.readers.opcua import run_opcua_producer
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw
from tests.faults.checker import SOAK, check_run
from tests.faults.live import live_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(90)]

OUTAGES = 3 if SOAK else 1
NO_METRICS = {"enabled": False}


def seqs_have_no_gap(frames: list[dict[str, Any]]) -> bool:
    return [f["seq"] for f in frames] == list(range(len(frames)))


async def test_modbus_device_stopped_and_restarted(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    raw = plant_raw(tmp_path, stack, metrics=NO_METRICS, simulator={"update_interval_s": 0.05})
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == "modbus_tcp"]
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.1, timeout_s=0.5, retries=0)
    settings = Settings(**raw)
    names = [d.name for d in settings.devices]
    sim = PlantSimulator(settings)
    await sim.start()
    try:
        async with live_pipeline(settings, run_modbus_producer) as live:
            for n in range(OUTAGES):
                await live.until(lambda: all(live.last_quality(d) == "GOOD" for d in names), 10, "GOOD values")
                await sim.close()
                await live.until(lambda: all(live.last_quality(d) == "BAD" for d in names), 10, "the outage as BAD")
                await asyncio.sleep(0.5)
                back = now_us()
                await sim.start()
                await live.until(
                    lambda t=back: all(  # type: ignore[misc]
                        any(f["scan_time"] > t and f["samples"][0]["quality"] == "GOOD" for f in live.of(d))
                        for d in names
                    ),
                    10,
                    f"values after restart {n + 1}",
                )
            await asyncio.sleep(0.3)
    finally:
        await sim.close()
    report = check_run(
        "device-modbus-restart", settings, len(live.frames), sqlite_path(settings), outages=OUTAGES
    ).emit()
    report.assert_ok()
    assert report.extra["samples_bad_stored"] > 0, "the outage must be stored as BAD samples"
    for d in names:
        assert seqs_have_no_gap(live.of(d)), f"{d}: the outage left a gap in the sequence numbers"


async def test_opcua_server_restarted_under_a_subscription(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    raw = plant_raw(tmp_path, stack, metrics=NO_METRICS, simulator={"update_interval_s": 0.1})
    raw["devices"] = [
        {
            "name": "press1-opcua",
            "protocol": "opcua",
            "asset": "demo.springfield.stamping.line1.press1",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/plant",
            "publishing_interval_ms": 100,
            "sampling_interval_ms": 0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "timeout_s": 2.0,
            "tags": [
                {"name": "temp", "node_id": "ns=2;s=press1.temp", "type": "float64"},
                {"name": "count", "node_id": "ns=2;s=press1.count", "type": "uint32", "role": "counter_total"},
            ],
        }
    ]
    raw["pipeline"]["opcua_server"] = {}
    settings = Settings(**raw)

    def good_after(frames: list[dict[str, Any]], t: int) -> bool:
        return any(s["source_time"] > t and s["quality"] == "GOOD" for f in frames for s in f["samples"])

    sim = OpcUaSimulator(settings)
    await sim.start()
    try:
        async with live_pipeline(settings, run_opcua_producer) as live:
            for n in range(OUTAGES):
                t = now_us()
                await live.until(lambda t=t: good_after(live.frames, t + 300_000), 10, "values flowing")  # type: ignore[misc]
                await sim.close()
                await live.until(lambda: live.last_quality("press1-opcua") == "BAD", 10, "the gap marked BAD")
                back = now_us()
                sim = OpcUaSimulator(settings)
                await sim.start()
                await live.until(lambda t=back: good_after(live.frames, t), 15, f"values after restart {n + 1}")  # type: ignore[misc]
            await asyncio.sleep(0.3)
    finally:
        await sim.close()
    report = check_run(
        "device-opcua-restart", settings, len(live.frames), sqlite_path(settings), outages=OUTAGES
    ).emit()
    report.assert_ok()
    assert report.extra["samples_bad_stored"] > 0, "the outage must be stored as BAD samples"
    assert seqs_have_no_gap(live.frames)
    good = [(s["tag"], s["source_time"]) for f in live.frames for s in f["samples"] if s["quality"] == "GOOD"]
    assert len(good) == len(set(good)), "a (tag, source_time) was sent twice after the restart"
