"""The demo plant: a Modbus server per configured endpoint, serving plausible machine signals.

Every device of the config becomes one unit id on the server of its TCP (host, port) or of its serial
port (RTU: `simulator_port`, the far end of a null-modem or pseudo-terminal pair, else `serial_port`),
with register tables just large enough for its tags. A small machine model per device (state, load, counters)
drives the values; they are written through `modbus_codec.encode`, the same code the producer
decodes with, so a client reads back exactly `current_values()`.

The signals are a deterministic function of `pipeline.simulator.seed` and the number of updates
made, not of wall-clock time: two runs with the same seed serve the same sequence. Each update
advances simulated time by `update_interval_s * speed` (accelerated time moves the state machine,
the counters and the faults alike). With `pipeline.simulator.faults.enabled`, labelled faults from
plantstream/simulators/faults.py change the process values (see fault_schedule.py and its ground truth).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plantstream.core import logs
from plantstream.core.config import (
    ModbusRtuDevice,
    ModbusTag,
    ModbusTcpDevice,
    RegisterTable,
    Settings,
    TagRole,
    TagType,
)
from plantstream.core.errors import ToolError
from plantstream.simulators import fault_schedule
from plantstream.simulators.base import ServedSimulator
from plantstream.simulators.faults import Fault, FaultInjector
from producers import modbus_codec
from producers.modbus_codec import Value
from producers.readers.base import now_us

log = logs.get(__name__)

# Function codes used to address a table when writing into pymodbus' datastore.
_TABLE_FC = {RegisterTable.COIL: 1, RegisterTable.DISCRETE_INPUT: 2, RegisterTable.HOLDING: 3, RegisterTable.INPUT: 4}


class SimulatorError(ToolError, RuntimeError):
    """The simulator cannot serve the configured plant; the message says where and why."""


class MachineState(IntEnum):
    """Codes served by machine_state tags: 1 running, 2 idle, 3 planned stop, 4 unplanned stop."""

    RUNNING = 1
    IDLE = 2
    PLANNED_STOP = 3
    UNPLANNED_STOP = 4


# How long each state lasts (simulated seconds), and what follows a run. Runs dominate, so the
# demo shows a high but imperfect availability.
_STATE_DURATION_S = {
    MachineState.RUNNING: (40.0, 150.0),
    MachineState.IDLE: (5.0, 20.0),
    MachineState.PLANNED_STOP: (15.0, 40.0),
    MachineState.UNPLANNED_STOP: (5.0, 30.0),
}
_AFTER_RUNNING = (
    (MachineState.IDLE, 0.5),
    (MachineState.PLANNED_STOP, 0.2),
    (MachineState.UNPLANNED_STOP, 0.3),
)
# Share of full load a machine settles at in each state (idle machines keep pumps and heaters on).
_STATE_LOAD = {
    MachineState.RUNNING: 1.0,
    MachineState.IDLE: 0.35,
    MachineState.PLANNED_STOP: 0.0,
    MachineState.UNPLANNED_STOP: 0.0,
}
_LOAD_TIME_CONSTANT_S = 8.0
_SCRAP_RATE = 0.03
_DEFAULT_CYCLE_TIME_S = 1.0


@dataclass(frozen=True)
class Profile:
    """A process value: `stopped` at zero load, `running` at full load, plus a slow wave and noise."""

    stopped: float
    running: float
    wave: float
    noise: float
    period_s: float
    floor: float = 0.0


TEMPERATURE = Profile(stopped=42.0, running=68.0, wave=5.0, noise=0.3, period_s=300.0, floor=-50.0)
HYDRAULIC_PRESSURE = Profile(stopped=5.0, running=160.0, wave=15.0, noise=2.0, period_s=20.0)
PRESSURE = Profile(stopped=0.5, running=4.5, wave=0.3, noise=0.05, period_s=60.0)
CURRENT = Profile(stopped=0.8, running=32.0, wave=2.5, noise=0.4, period_s=25.0)
VIBRATION = Profile(stopped=0.3, running=2.8, wave=0.4, noise=0.08, period_s=15.0)
FLOW = Profile(stopped=0.0, running=110.0, wave=8.0, noise=1.0, period_s=90.0)
ROTATIONAL_SPEED = Profile(stopped=0.0, running=12000.0, wave=300.0, noise=20.0, period_s=45.0)
LINE_SPEED = Profile(stopped=0.0, running=45.0, wave=3.0, noise=0.5, period_s=30.0)
GENERIC = Profile(stopped=10.0, running=50.0, wave=5.0, noise=0.5, period_s=60.0)

# Specific names first: a hydraulic pressure in bar is not a water pressure in bar.
_NAME_HINTS = (
    ("hydraulic", HYDRAULIC_PRESSURE),
    ("temp", TEMPERATURE),
    ("vibration", VIBRATION),
    ("current", CURRENT),
    ("flow", FLOW),
    ("pressure", PRESSURE),
)
_UNIT_HINTS = {
    "rpm": ROTATIONAL_SPEED,
    "degc": TEMPERATURE,
    "bar": PRESSURE,
    "a": CURRENT,
    "mm/s": VIBRATION,
    "m3/h": FLOW,
}


def profile_for(tag: ModbusTag) -> Profile:
    name = tag.name.lower()
    for hint, profile in _NAME_HINTS:
        if hint in name:
            return profile
    if tag.unit.lower() in _UNIT_HINTS:
        return _UNIT_HINTS[tag.unit.lower()]
    return LINE_SPEED if "speed" in name else GENERIC


class Machine:
    """The state, load and production counters of one simulated machine."""

    def __init__(self, rng: np.random.Generator, ideal_cycle_time_s: float | None) -> None:
        self._rng = rng
        self.state = MachineState.RUNNING
        self.load = 1.0
        self._state_left_s = float(rng.uniform(*_STATE_DURATION_S[MachineState.RUNNING]))
        # real cycles run a little slower than the ideal one: the demo shows a performance loss
        self._cycle_time_s = (ideal_cycle_time_s or _DEFAULT_CYCLE_TIME_S) * float(rng.uniform(1.05, 1.3))
        self._cycle_fraction = 0.0
        self.total = int(rng.integers(10_000, 500_000))
        self.scrap = int(self.total * _SCRAP_RATE)
        self.good = self.total - self.scrap

    @property
    def running(self) -> bool:
        return self.state is MachineState.RUNNING

    def step(self, dt: float) -> None:
        self._advance_state(dt)
        target = _STATE_LOAD[self.state]
        self.load += (target - self.load) * (1.0 - math.exp(-dt / _LOAD_TIME_CONSTANT_S))
        if self.running:
            self._produce(dt)

    def _advance_state(self, dt: float) -> None:
        self._state_left_s -= dt
        if self._state_left_s > 0:
            return
        if self.running:
            states, weights = zip(*_AFTER_RUNNING, strict=True)
            self.state = MachineState(int(self._rng.choice(states, p=weights)))
        else:
            self.state = MachineState.RUNNING
        self._state_left_s = float(self._rng.uniform(*_STATE_DURATION_S[self.state]))

    def _produce(self, dt: float) -> None:
        self._cycle_fraction += dt / self._cycle_time_s
        cycles = int(self._cycle_fraction)
        if cycles == 0:
            return
        self._cycle_fraction -= cycles
        scrap = int(self._rng.binomial(cycles, _SCRAP_RATE))
        self.total += cycles
        self.good += cycles - scrap
        self.scrap += scrap


ModbusDevice = ModbusTcpDevice | ModbusRtuDevice


@dataclass
class _SimTag:
    device: ModbusDevice
    tag: ModbusTag
    profile: Profile
    phase: float


@dataclass
class _Endpoint:
    host: str  # TCP host, or the serial port for RTU
    port: int  # 0 for RTU
    devices: list[ModbusDevice] = field(default_factory=list)
    server: ModbusTcpServer | ModbusSerialServer | None = None
    line: ModbusRtuDevice | None = None  # RTU: the device whose line settings (baudrate, ...) the port uses

    @property
    def label(self) -> str:
        return self.host if self.line is not None else f"{self.host}:{self.port}"


class PlantSimulator(ServedSimulator):
    """Serves every configured Modbus TCP device with simulated values.

    Use `run(stop)` in a service, or `start()`/`close()` (or `async with`) in a test. `pause()`
    freezes the values so a test can compare what it read with `current_values()`.
    """

    def __init__(self, settings: Settings) -> None:
        sim = settings.pipeline.simulator
        self._interval = sim.update_interval_s
        self._speed = sim.speed
        self._dt_sim = sim.update_interval_s * sim.speed
        # OPC UA devices: plantstream/simulators/opcua.py
        devices: list[ModbusDevice] = [d for d in settings.devices if isinstance(d, ModbusTcpDevice | ModbusRtuDevice)]
        self._endpoints = _group_endpoints(devices, sim.bind_host)
        # independent streams: adding a tag does not change the state sequence of any machine
        seeds = np.random.SeedSequence(sim.seed).spawn(len(devices) + 2)
        *machine_seeds, noise_seed, phase_seed = seeds
        self._noise_rng = np.random.default_rng(noise_seed)
        self._machines = {
            d.name: Machine(np.random.default_rng(s), settings.asset(d.asset).ideal_cycle_time_s)
            for d, s in zip(devices, machine_seeds, strict=True)
        }
        phase_rng = np.random.default_rng(phase_seed)
        self._tags = [
            _SimTag(d, t, profile_for(t), float(phase_rng.uniform(0.0, 2 * math.pi))) for d in devices for t in d.tags
        ]
        self._tick = 0
        self._paused = False
        self._task: asyncio.Task[None] | None = None
        self.sim_epoch_us = now_us()  # simulated time 0, on the wall clock
        self._faults: list[Fault] = []
        self._injector: FaultInjector | None = None
        fconf = sim.faults
        if fconf.enabled:
            seed = sim.seed if fconf.seed is None else fconf.seed
            asset_tags: dict[str, list[str]] = {}
            self._devices_of: dict[str, list[str]] = {}
            for st in self._tags:
                if fault_schedule.is_faultable(st.tag):
                    names = asset_tags.setdefault(st.device.asset, [])
                    names += [] if st.tag.name in names else [st.tag.name]
            for d in devices:
                self._devices_of.setdefault(d.asset, []).append(d.name)
            self._faults = fault_schedule.make_plant_schedule(fconf, seed, asset_tags)
            self._injector = FaultInjector(self._faults, seed)
            if fconf.ground_truth is not None:
                path = Path(fconf.ground_truth).expanduser()
                self.ground_truth_path: Path | None = path if path.is_absolute() else settings.state_path(str(path))
                fault_schedule.write_ground_truth(self.ground_truth_path, self._faults, self._devices_of)
                log.info("%d fault(s) scheduled; ground truth in %s", len(self._faults), self.ground_truth_path)
        self._values = self._evaluate()

    # --- control ---------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(e.host, e.port) for e in self._endpoints]

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop changing values (servers keep answering with the last ones)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def current_values(self) -> dict[tuple[str, str], Value]:
        """(device name, tag name) -> the value a client decodes from the served registers."""
        return dict(self._values)

    def machine(self, device: str) -> Machine:
        return self._machines[device]

    @property
    def faults(self) -> list[Fault]:
        """The labelled faults scheduled (empty unless pipeline.simulator.faults.enabled)."""
        return list(self._faults)

    @property
    def tick(self) -> int:
        """Updates made so far; the values served now are those of this tick."""
        return self._tick

    @property
    def sim_time_s(self) -> float:
        """Simulated seconds since the start: the time base of the ground truth."""
        return self._tick * self._dt_sim

    def sim_now_us(self) -> int:
        """The simulated clock as a timestamp (UTC microseconds): `sim_epoch_us` plus the simulated time.

        It runs `speed` times faster than the wall clock, so at speed 1 it is the wall time of the update.
        """
        return self.sim_epoch_us + round(self.sim_time_s * 1e6)

    async def step(self) -> None:
        """Advance the plant by one update interval (times the speed) and serve the new values."""
        self._tick += 1
        for machine in self._machines.values():
            machine.step(self._dt_sim)
        values = self._evaluate()
        # no awaits between the writes actually suspend, so a client sees one update or the other
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                await _write_values(endpoint.server, self._endpoint_tags(endpoint), values)
        self._values = values

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every endpoint and begin updating; raises SimulatorError if a port is taken."""
        if self._task is not None:
            raise RuntimeError("the simulator is already running")
        try:
            for endpoint in self._endpoints:
                await self._serve(endpoint)
        except BaseException:
            await self._stop_servers()
            raise
        self._task = asyncio.create_task(self._update_loop(), name="plant-simulator-updates")
        if self._tick == 0:
            self.sim_epoch_us = now_us()  # simulated time 0 is the first start; it stands still while paused
        log.info(
            "simulator serving %d device(s) on %s; simulated time %g s runs %gx real time from %s",
            sum(len(e.devices) for e in self._endpoints),
            ", ".join(e.label for e in self._endpoints),
            self.sim_time_s,
            self._speed,
            dt.datetime.fromtimestamp(self.sim_epoch_us / 1e6, dt.UTC).isoformat(timespec="milliseconds"),
        )

    # --- internals -------------------------------------------------------------------------------

    async def _serve(self, endpoint: _Endpoint) -> None:
        devices = [_sim_device(d.unit_id, d.tags) for d in endpoint.devices]
        server: ModbusTcpServer | ModbusSerialServer
        if (line := endpoint.line) is not None:
            if not os.path.exists(endpoint.host):
                raise SimulatorError(
                    f"serial port {endpoint.host} for device(s) {', '.join(d.name for d in endpoint.devices)} "
                    "does not exist. Fix: connect the serial adapter, or create a pair (socat pty,link=A pty,link=B) "
                    "and set simulator_port to one end"
                )
            server = ModbusSerialServer(
                devices,
                port=endpoint.host,
                baudrate=line.baudrate,
                parity=line.parity,
                stopbits=line.stopbits,
                bytesize=line.bytesize,
            )
        else:
            server = ModbusTcpServer(devices, address=(endpoint.host, endpoint.port))
        # values go in before listening, so the very first read already sees a real plant
        await _write_values(server, self._endpoint_tags(endpoint), self._values)
        try:
            await server.serve_forever(background=True)
        except Exception as e:  # pyserial raises termios.error or SerialException for a refused line setting
            names = ", ".join(d.name for d in endpoint.devices)
            if (line := endpoint.line) is not None:
                raise SimulatorError(
                    f"cannot open serial port {endpoint.label} for device(s) {names} at {line.baudrate} baud, "
                    f"{line.bytesize}{line.parity}{line.stopbits}: {type(e).__name__}: {e}. Fix: check the port "
                    "and that it supports these line settings (pseudo-terminals refuse parity E/O)"
                ) from e
            if not isinstance(e, RuntimeError):
                raise
            raise SimulatorError(
                f"cannot listen on {endpoint.label} for device(s) {names}: {_bind_problem(endpoint)}. "
                "Fix: stop the program using that port, or change the devices' port "
                "(or pipeline.simulator.bind_host)"
            ) from e
        endpoint.server = server

    def _endpoint_tags(self, endpoint: _Endpoint) -> list[_SimTag]:
        names = {d.name for d in endpoint.devices}
        return [t for t in self._tags if t.device.name in names]

    async def _stop_servers(self) -> None:
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                await endpoint.server.shutdown()
                endpoint.server = None

    async def _update_loop(self) -> None:
        next_at = time.monotonic() + self._interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if not self._paused:
                try:
                    await self.step()
                except Exception:
                    log.exception("simulator update failed; the simulator stops serving")
                    raise
            # after a stall, continue on the tick grid instead of catching up in a burst
            now = time.monotonic()
            next_at += self._interval * max(1, math.ceil((now - next_at) / self._interval))

    def _evaluate(self) -> dict[tuple[str, str], Value]:
        t = self.sim_time_s
        raw = {
            (st.device.name, st.tag.name): self._tag_value(st, self._machines[st.device.name], t) for st in self._tags
        }
        if self._injector is not None:
            self._inject_faults(raw, t)
        out: dict[tuple[str, str], Value] = {}
        for st in self._tags:
            # round-trip through the codec: this is the value a reader decodes, float32 rounding included
            key = (st.device.name, st.tag.name)
            out[key] = modbus_codec.decode(modbus_codec.encode(raw[key], st.tag), st.tag)
        return out

    def _inject_faults(self, raw: dict[tuple[str, str], Value], t: float) -> None:
        assert self._injector is not None
        by_asset: dict[str, dict[str, float]] = {}
        keys: dict[str, list[tuple[_SimTag, tuple[str, str]]]] = {}
        for st in self._tags:
            if fault_schedule.is_faultable(st.tag):
                key = (st.device.name, st.tag.name)
                by_asset.setdefault(st.device.asset, {})[st.tag.name] = float(raw[key])
                keys.setdefault(st.device.asset, []).append((st, key))
        for asset, values in by_asset.items():
            faulty = self._injector.apply(asset, t, values)
            for st, key in keys[asset]:
                raw[key] = _clamp(faulty[st.tag.name], st.tag)  # the codec rounds it for integer registers

    def _tag_value(self, st: _SimTag, machine: Machine, t: float) -> Value:
        tag = st.tag
        if tag.role in (TagRole.COUNTER_TOTAL, TagRole.COUNTER_GOOD, TagRole.COUNTER_SCRAP):
            return _counter_value(tag, machine)
        if tag.role is TagRole.MACHINE_STATE:
            return _state_value(tag, machine)
        if tag.role is TagRole.STATUS or tag.type is TagType.BOOL:
            return _shaped(tag, machine.running, "RUNNING" if machine.running else "STOPPED")
        if tag.type is TagType.STRING:
            return tag.name[: 2 * tag.length]
        if tag.role is TagRole.SETPOINT:
            return _clamp(st.profile.running, tag)
        return _clamp(self._process_value(st, machine.load, t), tag)

    def _process_value(self, st: _SimTag, load: float, t: float) -> float:
        p = st.profile
        level = p.stopped + (p.running - p.stopped) * load
        # a stopped machine still drifts a little; a loaded one swings with its process
        wave = p.wave * (0.2 + 0.8 * load) * math.sin(2 * math.pi * t / p.period_s + st.phase)
        noise = p.noise * float(self._noise_rng.standard_normal())
        return max(p.floor, level + wave + noise)


def _counter_value(tag: ModbusTag, machine: Machine) -> Value:
    count = {
        TagRole.COUNTER_TOTAL: machine.total,
        TagRole.COUNTER_GOOD: machine.good,
        TagRole.COUNTER_SCRAP: machine.scrap,
    }[tag.role]
    if tag.type in modbus_codec.INT_RANGE:
        count %= modbus_codec.INT_RANGE[tag.type][1] + 1  # wrap like a PLC counter register
        return count if tag.scale == 1 and tag.offset == 0 else count * tag.scale + tag.offset
    return _shaped(tag, count, str(count))


def _state_value(tag: ModbusTag, machine: Machine) -> Value:
    if tag.type is TagType.BOOL:
        return machine.running
    if tag.type is TagType.STRING:
        return machine.state.name[: 2 * tag.length]
    code = int(machine.state)
    return code if tag.scale == 1 and tag.offset == 0 else code * tag.scale + tag.offset


def _shaped(tag: ModbusTag, number: int | bool, text: str) -> Value:
    """A number (or flag) in the form the tag's type carries."""
    if tag.type is TagType.STRING:
        return text[-2 * tag.length :]
    if tag.type is TagType.BOOL:
        return bool(number)
    if tag.type in modbus_codec.FLOAT_TYPES:
        return float(number)
    return int(number)


def _clamp(value: float, tag: ModbusTag) -> float:
    lo, hi = modbus_codec.value_range(tag)
    return min(max(value, lo), hi)


def _group_endpoints(devices: Sequence[ModbusDevice], bind_host: str | None) -> list[_Endpoint]:
    endpoints: dict[tuple[str, int], _Endpoint] = {}
    for d in devices:
        if isinstance(d, ModbusRtuDevice):
            path = d.simulator_port or d.serial_port
            ep = endpoints.setdefault((path, 0), _Endpoint(path, 0, line=d))
        else:
            host = bind_host or d.host
            ep = endpoints.setdefault((host, d.port), _Endpoint(host, d.port))
        clash = next((o for o in ep.devices if o.unit_id == d.unit_id), None)
        if clash is not None:
            raise SimulatorError(
                f"devices {clash.name!r} and {d.name!r} both use unit id {d.unit_id} on {ep.label}: "
                "one gateway cannot serve both. Fix: give each device on a port its own unit_id"
            )
        ep.devices.append(d)
    return list(endpoints.values())


def _sim_device(unit_id: int, tags: Sequence[ModbusTag]) -> SimDevice:
    def of(table: RegisterTable) -> list[ModbusTag]:
        return [t for t in tags if t.table is table]

    return SimDevice(
        unit_id,
        simdata=(
            _bit_block(of(RegisterTable.COIL)),
            _bit_block(of(RegisterTable.DISCRETE_INPUT)),
            _register_block(of(RegisterTable.HOLDING)),
            _register_block(of(RegisterTable.INPUT)),
        ),
    )


def _span(tags: Sequence[ModbusTag]) -> tuple[int, int]:
    start = min(t.address for t in tags)
    end = min(65536, max(t.address + modbus_codec.register_count(t) for t in tags))
    return start, end - start


def _register_block(tags: Sequence[ModbusTag]) -> list[SimData]:
    if not tags:
        # an unused table answers every read with "illegal data address", like a real device
        return [SimData(0, datatype=DataType.INVALID)]
    start, count = _span(tags)
    return [SimData(start, count=count, values=0, datatype=DataType.REGISTERS)]


def _bit_block(tags: Sequence[ModbusTag]) -> list[SimData]:
    # pymodbus requires a bit block per table, so an unused one still answers for bits 0-15
    start, count = _span(tags) if tags else (0, 1)
    return [SimData(start, count=count, values=False, datatype=DataType.BITS)]


async def _write_values(
    server: ModbusTcpServer | ModbusSerialServer, tags: Sequence[_SimTag], values: dict[tuple[str, str], Value]
) -> None:
    for st in tags:
        words = modbus_codec.encode(values[(st.device.name, st.tag.name)], st.tag)
        bits = modbus_codec.is_bit_table(st.tag.table)
        data: list[int] | list[bool] = [bool(w) for w in words] if bits else words
        await server.async_setValues(st.device.unit_id, _TABLE_FC[st.tag.table], st.tag.address, data)


def _bind_problem(endpoint: _Endpoint) -> str:
    """Why the port cannot be bound, in the operating system's words."""
    try:
        with socket.create_server((endpoint.host, endpoint.port)):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return "the server could not start listening"
