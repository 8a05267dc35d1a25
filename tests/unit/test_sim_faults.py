"""The simulator's fault schedule, ground truth, accelerated clock, and the device-down event tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import COLLECTIVE_FAULT_KINDS, FAULT_KINDS, SINGLE_FAULT_KINDS, Settings
from plantstream.simulators.fault_schedule import kinds_for, read_ground_truth
from plantstream.simulators.modbus import PlantSimulator
from plantstream.simulators.service import simulator_overrides
from producers.device_events import CLEARED, RAISED, OutageTracker
from tests.conftest import free_port, plant_raw

pytestmark = pytest.mark.usefixtures("clean_env")


def faulty_raw(tmp_path: Path, **fault_conf: Any) -> dict[str, Any]:
    raw = plant_raw(tmp_path)
    for d in raw["devices"]:
        d["port"] = free_port()
    conf = {"enabled": True, "hours": 12, "ground_truth": str(tmp_path / "truth.jsonl"), **fault_conf}
    raw["pipeline"]["simulator"] = {"seed": 5, "update_interval_s": 0.5, "faults": conf}
    return raw


def test_same_seed_gives_an_identical_ground_truth_file(tmp_path: Path) -> None:
    raw = faulty_raw(tmp_path)
    PlantSimulator(Settings(**raw))
    first = (tmp_path / "truth.jsonl").read_bytes()
    PlantSimulator(Settings(**raw))
    assert (tmp_path / "truth.jsonl").read_bytes() == first
    raw["pipeline"]["simulator"]["seed"] = 6
    PlantSimulator(Settings(**raw))
    assert (tmp_path / "truth.jsonl").read_bytes() != first

    truth = read_ground_truth(tmp_path / "truth.jsonl")
    assert len(truth) >= 10
    assert [t["start_s"] for t in truth] == sorted(t["start_s"] for t in truth)  # type: ignore[type-var]
    assets = {d["asset"]: d for d in raw["devices"]}
    for t in truth:
        assert t["kind"] in FAULT_KINDS and t["asset"] in assets
        assert 1800 <= t["start_s"] < t["end_s"] <= 12 * 3600  # type: ignore[operator]
        served = {g["name"] for d in raw["devices"] if d["asset"] == t["asset"] for g in d["tags"]}
        assert t["tags"] and set(t["tags"]) <= served, t  # type: ignore[arg-type]
    # correlated faults only where their signals exist: the pump has flow, pressure, current, vibration
    pump = next(d["asset"] for d in raw["devices"] if d["name"] == "pump1-vfd")
    collective = [t for t in truth if t["kind"] in COLLECTIVE_FAULT_KINDS]
    assert collective and all(t["asset"] == pump for t in collective)


def test_kinds_need_the_signals_they_move() -> None:
    assert kinds_for(["oil_temperature", "motor_current"], []) == list(SINGLE_FAULT_KINDS)
    assert "clogged_filter" in kinds_for(["flow", "discharge_pressure"], [])
    assert kinds_for(["flow", "discharge_pressure"], ["spike", "cavitation"]) == ["spike", "cavitation"]


def test_max_faults_and_cli_overrides(tmp_path: Path) -> None:
    raw = faulty_raw(tmp_path, enabled=False)
    settings = simulator_overrides(
        Settings(**raw), faults=3, seed=9, speed=60, ground_truth=str(tmp_path / "gt.jsonl"), hours=24
    )
    sim = PlantSimulator(settings)
    assert len(sim.faults) == 3 and len(read_ground_truth(tmp_path / "gt.jsonl")) == 3
    assert settings.pipeline.simulator.speed == 60 and settings.pipeline.simulator.seed == 9
    assert not PlantSimulator(simulator_overrides(settings, faults=0)).faults
    with pytest.raises(ValueError, match="speed"):
        simulator_overrides(settings, speed=-1)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Settings(**faulty_raw(tmp_path, kinds=["meteor"]))


async def test_accelerated_clock_moves_state_counters_and_faults(tmp_path: Path) -> None:
    raw = faulty_raw(tmp_path, kinds=["stuck"], first_s=100, gap_s=[0, 0], max_faults=1)
    raw["pipeline"]["simulator"]["speed"] = 100  # 50 simulated seconds per 0.5 s update
    sim = PlantSimulator(Settings(**raw))
    (fault,) = sim.faults
    total0 = sim.machine("press1-plc").total
    stuck: list[float] = []
    mine = [d for d in raw["devices"] if d["asset"] == fault.asset]
    dev = next(d["name"] for d in mine if any(g["name"] == fault.tags[0] for g in d["tags"]))
    for _ in range(int(fault.end_s / 50) + 3):
        await sim.step()
        if fault.active(sim.sim_time_s):
            stuck.append(float(sim.current_values()[(dev, fault.tags[0])]))
    assert sim.sim_time_s == pytest.approx(sim.tick * 50)
    assert sim.machine("press1-plc").total > total0  # about 1 part/s of simulated time, not of wall time
    assert len(stuck) >= 10 and len(set(stuck)) == 1


def test_outage_tracker_raises_once_and_clears_once() -> None:
    tr = OutageTracker("press1-plc", "a.b.c.d.e", ["temp"])
    assert tr.observe(True, 1) is None
    raised = tr.observe(False, 2, "no response")
    assert raised is not None and raised["state"] == RAISED and "no response" in raised["message"]
    assert tr.observe(False, 3, "no response") is None
    cleared = tr.observe(True, 4)
    assert cleared is not None and cleared["state"] == CLEARED
    assert cleared["alert_id"] == raised["alert_id"] and cleared["rule"] == "device-down:press1-plc"
    assert tr.observe(True, 5) is None
    again = tr.observe(False, 6, "x")
    assert again is not None and again["alert_id"] != raised["alert_id"]  # a new outage, a new incident
