"""Fault: the network between the Modbus producer and its devices stalls (a loopback proxy stops
forwarding without closing the connection), then recovers. Polls during the stall time out and turn
BAD with a clear log line; after the stall values flow again on the same pipeline; through real Kafka
and the storage sink every acknowledged frame is stored, once, and sequence numbers have no gap."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from plantstream.core.config import Settings
from plantstream.simulators.modbus import PlantSimulator
from producers.readers.base import now_us
from producers.readers.modbus import run_modbus_producer
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw
from tests.faults.checker import SOAK, check_run
from tests.faults.live import live_pipeline
from tests.faults.proxy import StallProxy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(90)]

STALLS = 3 if SOAK else 1
STALL_S = 5.0 if SOAK else 2.0
TIMEOUT_S = 0.4


async def test_modbus_link_stall_turns_bad_then_recovers(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plantstream.producers")
    device_port = free_port()
    raw = plant_raw(tmp_path, stack, metrics={"enabled": False}, simulator={"update_interval_s": 0.05})
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == "modbus_tcp"]
    for d in raw["devices"]:
        d.update(port=device_port, poll_interval_s=0.1, timeout_s=TIMEOUT_S, retries=0)
    sim = PlantSimulator(Settings(**raw))
    await sim.start()
    proxy = await StallProxy("127.0.0.1", device_port).start()
    for d in raw["devices"]:
        d["port"] = proxy.port  # the producer talks to the devices through the proxy only
    settings = Settings(**raw)
    names = [d.name for d in settings.devices]

    def all_good_after(t: int) -> bool:
        return all(
            any(f["scan_time"] > t and all(s["quality"] == "GOOD" for s in f["samples"]) for f in live.of(d))
            for d in names
        )

    def all_bad_after(t: int) -> bool:
        return all(any(f["scan_time"] > t and f["samples"][0]["quality"] == "BAD" for f in live.of(d)) for d in names)

    stalled_for: list[float] = []
    try:
        async with live_pipeline(settings, run_modbus_producer) as live:
            for n in range(STALLS):
                start = now_us()
                await live.until(lambda t=start: all_good_after(t), 10, "GOOD values through the proxy")  # type: ignore[misc]
                proxy.pause()
                t0 = now_us()
                await live.until(lambda t=t0: all_bad_after(t), 10, f"BAD samples during stall {n + 1}")  # type: ignore[misc]
                await asyncio.sleep(max(0.0, STALL_S - (now_us() - t0) / 1e6))
                proxy.resume()
                back = now_us()
                stalled_for.append((back - t0) / 1e6)
                await live.until(lambda t=back: all_good_after(t), 15, f"recovery after stall {n + 1}")  # type: ignore[misc]
            await asyncio.sleep(0.3)
    finally:
        await proxy.close()
        await sim.close()
    report = check_run(
        "network-stall-modbus",
        settings,
        len(live.frames),
        sqlite_path(settings),
        stalls=STALLS,
        stall_s=round(sum(stalled_for), 1),
    ).emit()
    report.assert_ok()
    assert report.extra["samples_bad_stored"] > 0, "the stall must be stored as BAD samples"
    for d in names:
        seqs = [f["seq"] for f in live.of(d)]
        assert seqs == list(range(len(seqs))), f"{d}: the stall left a gap in the sequence numbers"
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{TIMEOUT_S:g} s" in m and ("no response" in m or "no answer" in m) for m in messages), messages[:5]
