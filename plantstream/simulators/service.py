"""Process entry point of `plantstream simulate`: the configured plant's simulators, run until a signal."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from plantstream.core import logs
from plantstream.core.config import Settings, SimulatorSettings
from plantstream.simulators.modbus import PlantSimulator
from plantstream.simulators.opcua import OpcUaSimulator, opcua_devices
from producers.service import run_until_signal

log = logs.get(__name__)


def simulator_overrides(
    settings: Settings,
    *,
    faults: int | None = None,
    seed: int | None = None,
    speed: float | None = None,
    ground_truth: str | None = None,
    hours: float | None = None,
) -> Settings:
    """`settings` with the `plantstream simulate` options applied (validated like the config file)."""
    sim = settings.pipeline.simulator.model_dump()
    if seed is not None:
        sim["seed"] = seed
    if speed is not None:
        sim["speed"] = speed
    f = sim["faults"]
    if faults is not None:
        if faults < 0:
            raise ValueError(f"--faults {faults}: give the number of faults to inject (0 = none)")
        f.update(enabled=faults > 0, max_faults=faults or None)
    if ground_truth is not None:
        f["ground_truth"] = ground_truth
    if hours is not None:
        f["hours"] = hours
    try:
        new = SimulatorSettings.model_validate(sim)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"bad simulate option(s): {problems}") from e
    pipeline = settings.pipeline.model_copy(update={"simulator": new})
    return settings.model_copy(update={"pipeline": pipeline})


def run_simulator(settings: Settings, duration: float | None) -> None:

    sim = PlantSimulator(settings)
    n_modbus = sum(d.protocol in ("modbus_tcp", "modbus_rtu") for d in settings.devices)
    log.info("simulating %d Modbus device(s) on %s", n_modbus, ", ".join(f"{h}:{p}" for h, p in sim.endpoints))
    bodies = [sim.run] + ([OpcUaSimulator(settings).run] if opcua_devices(settings) else [])
    if any(d.protocol in ("mqtt", "sparkplug_b") for d in settings.devices):
        from plantstream.simulators.mqtt_edge import MqttPlantSimulator

        bodies.append(MqttPlantSimulator(settings).run)

    async def run_all(stop: asyncio.Event) -> None:
        await asyncio.gather(*(body(stop) for body in bodies))

    run_until_signal(run_all, duration)
