"""Injected faults seen through the Modbus producer over real sockets, in accelerated simulated time.

Each frame is paired with the simulator ticks its read could have seen (from the tick at the previous
frame's emission to the tick at its own), so the test knows, from the ground-truth file alone, whether
the values came from inside a fault window, outside it, or straddle its edge (skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import Settings
from plantstream.simulators.fault_schedule import read_ground_truth
from plantstream.simulators.faults import NOMINAL
from plantstream.simulators.modbus import PlantSimulator
from producers.readers.modbus import run_modbus_producer
from tests.conftest import free_port, plant_raw

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(15)]

UPDATE_S = 0.05

Seen = tuple[range, dict[str, Any]]  # (ticks the read could have seen, frame)


def pump_raw(tmp_path: Path, speed: float, **fault_conf: Any) -> dict[str, Any]:
    raw = plant_raw(tmp_path)
    pump = next(d for d in raw["devices"] if d["name"] == "pump1-vfd")
    pump.update(port=free_port(), poll_interval_s=UPDATE_S, timeout_s=0.5, retries=0)
    raw["devices"] = [pump]
    conf = {"enabled": True, "hours": 2, "gap_s": [0, 0], "max_faults": 1, "ground_truth": str(tmp_path / "gt.jsonl")}
    raw["pipeline"]["simulator"] = {"update_interval_s": UPDATE_S, "seed": 3, "speed": speed, "faults": conf}
    conf.update(fault_conf)
    return raw


@contextlib.asynccontextmanager
async def watched(sim: PlantSimulator, settings: Settings) -> AsyncIterator[list[Seen]]:
    seen: list[Seen] = []
    last = [sim.tick]

    def emit(frame: dict[str, Any]) -> None:
        seen.append((range(last[0], sim.tick + 1), frame))
        last[0] = sim.tick

    stop = asyncio.Event()
    task = asyncio.create_task(run_modbus_producer(settings, emit, stop, None, "faults-test"))
    try:
        yield seen
    finally:
        stop.set()
        await asyncio.wait_for(task, 3.0)


async def run_past(sim: PlantSimulator, settings: Settings, end_s: float) -> list[Seen]:
    async with sim, watched(sim, settings) as seen:
        for _ in range(200):
            if sim.sim_time_s > end_s:
                break
            await asyncio.sleep(0.05)
    assert sim.sim_time_s > end_s, "the simulated clock did not reach the end of the fault"
    return seen


def value(frame: dict[str, Any], tag: str) -> float:
    sample = next(s for s in frame["samples"] if s["tag"] == tag)
    assert sample["quality"] == "GOOD"
    return float(sample["value"])


async def test_stuck_sensor_is_constant_over_its_window(tmp_path: Path) -> None:
    speed = 1000.0  # 50 simulated seconds per update: a 15-30 min fault passes in 1-2 s
    settings = Settings(**pump_raw(tmp_path, speed, kinds=["stuck"], first_s=300))
    sim = PlantSimulator(settings)
    (truth,) = read_ground_truth(tmp_path / "gt.jsonl")
    assert truth["kind"] == "stuck" and truth["devices"] == ["pump1-vfd"]
    (tag,) = truth["tags"]  # type: ignore[misc]
    start, end = float(truth["start_s"]), float(truth["end_s"])  # type: ignore[arg-type]
    dt = UPDATE_S * speed

    seen = await run_past(sim, settings, end + 4 * dt)

    def inside(ticks: range) -> bool:
        return all(start <= k * dt < end for k in ticks)

    def outside(ticks: range) -> bool:
        return not any(start <= k * dt < end for k in ticks)

    during = [value(f, tag) for ticks, f in seen if inside(ticks)]
    normal = [value(f, tag) for ticks, f in seen if outside(ticks)]
    assert len(during) >= 5 and len(set(during)) == 1, during  # flatlined
    assert len(set(normal)) >= 4, normal  # the same sensor moves outside the window
    others = [t.name for t in settings.devices[0].tags if t.name != tag and t.type.value.startswith("float")]
    assert len({value(f, others[0]) for ticks, f in seen if inside(ticks)}) > 1  # only the stuck sensor froze


async def test_spike_offsets_the_value_by_the_ground_truth_amount(tmp_path: Path) -> None:
    speed = 20.0  # 1 simulated second per update: a 10-30 s spike spans 10-30 updates
    raw = pump_raw(tmp_path, speed, kinds=["spike"], first_s=10)
    settings = Settings(**raw)
    sim = PlantSimulator(settings)
    (truth,) = read_ground_truth(tmp_path / "gt.jsonl")
    (tag,) = truth["tags"]  # type: ignore[misc]
    start, end, sign = (float(truth[k]) for k in ("start_s", "end_s", "sign"))  # type: ignore[arg-type]
    dt = UPDATE_S * speed

    seen = await run_past(sim, settings, end + 5 * dt)

    # the same plant without faults, tick by tick: what the sensor would have read
    raw["pipeline"]["simulator"]["faults"]["enabled"] = False
    twin = PlantSimulator(Settings(**raw))
    clean = [float(twin.current_values()[("pump1-vfd", tag)])]
    while len(clean) <= sim.tick:
        await twin.step()
        clean.append(float(twin.current_values()[("pump1-vfd", tag)]))

    offset = sign * 0.25 * NOMINAL[tag]
    n_inside = n_outside = 0
    for ticks, f in seen:
        got = value(f, tag)
        active = [start <= k * dt < end for k in ticks]
        if all(active):
            n_inside += 1
            assert any(got - clean[k] == pytest.approx(offset, rel=1e-3) for k in ticks), (got, offset)
        elif not any(active):
            n_outside += 1
            assert any(got == pytest.approx(clean[k], rel=1e-6) for k in ticks), got
    assert n_inside >= 5 and n_outside >= 5, (n_inside, n_outside)
