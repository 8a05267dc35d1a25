"""Report by exception over real Modbus TCP: an unchanged value is heard only at its heartbeat,
other tags every scan, and frame numbers stay gap-free."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import Settings
from plantstream.simulators.modbus import PlantSimulator
from producers.readers.modbus import run_modbus_producer
from tests.conftest import free_port, plant_raw


async def run_for(settings: Settings, seconds: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    stop = asyncio.Event()
    async with PlantSimulator(settings):
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await run_modbus_producer(settings, frames.append, stop, None, "rbe")
    return frames


@pytest.mark.timeout(30)
def test_deadband_and_heartbeat(tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path)
    port = free_port()
    raw["devices"] = [d for d in raw["devices"] if d["name"] == "press1-plc"]
    press = raw["devices"][0]
    press.update(port=port, poll_interval_s=0.1)
    # a deadband no temperature swing crosses: only the first value and the 1-s heartbeats go out
    press["tags"][0].update(deadband_abs=1000.0, heartbeat_s=1.0)
    # the state code never changes quickly: with a 100 s heartbeat it is sent once
    press["tags"][3].update(deadband_abs=0.0, heartbeat_s=100.0)
    settings = Settings(**raw)
    frames = asyncio.run(run_for(settings, 3.5))
    per_tag: dict[str, int] = {}
    for f in frames:
        for s in f["samples"]:
            per_tag[s["tag"]] = per_tag.get(s["tag"], 0) + 1
    assert len(frames) >= 25  # every scan carries the tags without a rule
    assert per_tag["hydraulic_pressure"] == len(frames)
    assert 3 <= per_tag["oil_temperature"] <= 5  # t = 0, 1, 2, 3 s
    assert per_tag["state"] <= 3  # once, plus a change if the machine changed state meanwhile
    assert [f["seq"] for f in frames] == list(range(len(frames)))
