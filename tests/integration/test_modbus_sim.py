"""The Modbus producer against the plant simulator over real TCP sockets (no Kafka needed).

Also the Publisher against a real librdkafka producer pointed at a port where no broker listens,
which is enough to see failed deliveries reported and a full queue never dropping a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

import schemas
from plantstream.core.config import ByteOrder, ModbusTag, Settings, TagType
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec
from plantstream.simulators.modbus import MachineState, PlantSimulator, SimulatorError
from producers import modbus_codec
from producers.publisher import Publisher
from producers.readers.base import now_us
from producers.readers.modbus import run_modbus_producer
from tests.conftest import free_port, plant_raw

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(10)]

POLL_S = 0.2


# --- helpers ---------------------------------------------------------------------------------------


def demo_raw(tmp_path: Path, port: int, **device_fields: Any) -> dict[str, Any]:
    """The demo plant on `port`, polled fast, with a fast-updating simulator."""
    raw = plant_raw(tmp_path)
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=POLL_S, timeout_s=0.5, retries=0, **device_fields)
    raw["pipeline"]["simulator"] = {"update_interval_s": 0.05, "seed": 11}
    return raw


def device(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in raw["devices"] if d["name"] == name)


class Frames:
    """Collects emitted frames; lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.all: list[dict[str, Any]] = []

    def emit(self, frame: dict[str, Any]) -> None:
        self.all.append(frame)

    def of(self, device_name: str) -> list[dict[str, Any]]:
        return [f for f in self.all if f["device"] == device_name]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; {len(self.all)} frames so far")
            await asyncio.sleep(0.02)

    async def wait_frames_after(self, t_us: int, devices: list[str]) -> dict[str, dict[str, Any]]:
        """The first frame of each device whose scan started after `t_us`."""

        def ready() -> bool:
            return all(any(f["scan_time"] > t_us for f in self.of(d)) for d in devices)

        await self.wait_for(ready)
        return {d: next(f for f in self.of(d) if f["scan_time"] > t_us) for d in devices}


@contextlib.asynccontextmanager
async def producing(settings: Settings, stats: RunStats | None = None) -> AsyncIterator[Frames]:
    frames = Frames()
    stop = asyncio.Event()
    task = asyncio.create_task(run_modbus_producer(settings, frames.emit, stop, stats, "test-producer"))
    try:
        yield frames
    finally:
        stop.set()
        await asyncio.wait_for(task, 3.0)


def comparable(value: Any, tag_type: TagType) -> Any:
    """float32 values compare after float32 rounding: that is all the wire carries."""
    if tag_type is TagType.FLOAT32 and value is not None:
        return float(np.float32(value))
    return value


def assert_frame_matches(frame: dict[str, Any], settings: Settings, served: dict[tuple[str, str], Any]) -> None:
    dev = next(d for d in settings.devices if d.name == frame["device"])
    assert [s["tag"] for s in frame["samples"]] == [t.name for t in dev.tags]
    for tag, sample in zip(dev.tags, frame["samples"], strict=True):
        assert sample["quality"] == "GOOD", (dev.name, tag.name, sample)
        expected = served[(dev.name, tag.name)]
        assert comparable(sample["value"], tag.type) == comparable(expected, tag.type), (dev.name, tag.name)
        assert type(sample["value"]) is type(expected), (dev.name, tag.name)
        assert sample["unit"] == tag.unit


def every_type_device() -> dict[str, Any]:
    """A device with each numeric type in each byte order, strings, bools and scaled values."""
    tags: list[dict[str, Any]] = []
    address = 0
    for order in ByteOrder:
        for type_ in TagType:
            if type_ in (TagType.BOOL, TagType.STRING):
                continue
            tags.append(
                {
                    "name": f"{type_.value}_{order.value}".lower(),
                    "type": type_.value,
                    "byte_order": order.value,
                    "address": address,
                }
            )
            address += modbus_codec.register_count(ModbusTag(name="x", address=0, type=type_))
        tags.append(
            {
                "name": f"str_{order.value}".lower(),
                "type": "string",
                "length": 3,
                "byte_order": order.value,
                "address": address,
            }
        )
        address += 3
    tags += [
        {"name": "flag", "role": "status", "type": "bool", "address": address},
        {
            "name": "temp_scaled",
            "unit": "degC",
            "type": "int16",
            "scale": 0.1,
            "offset": -20.0,
            "byte_order": "BADC",
            "address": address + 1,
        },
        {"name": "flow_in", "unit": "m3/h", "type": "float32", "byte_order": "DCBA", "table": "input", "address": 100},
        {
            "name": "count_in",
            "role": "counter_total",
            "type": "uint64",
            "byte_order": "CDAB",
            "table": "input",
            "address": 102,
        },
        {"name": "door_closed", "role": "status", "type": "bool", "table": "discrete_input", "address": 7},
    ]
    return {
        "name": "every-type",
        "protocol": "modbus_tcp",
        "asset": "demo.springfield.stamping.line1.press1",
        "unit_id": 5,
        "tags": tags,
    }


# --- values read == values served ------------------------------------------------------------------


async def test_read_values_equal_served_values(tmp_path: Path) -> None:
    port = free_port()
    raw = demo_raw(tmp_path, port)
    device(raw, "pump1-vfd")["port"] = free_port()  # a second gateway, served by a second server
    settings = Settings(**raw)
    names = [d.name for d in settings.devices]
    async with PlantSimulator(settings) as sim, producing(settings) as frames:
        assert len(sim.endpoints) == 2
        await frames.wait_for(lambda: all(len(frames.of(n)) >= 2 for n in names))
        sim.pause()
        frozen_at = now_us()
        served = sim.current_values()
        after = await frames.wait_frames_after(frozen_at, names)
        sim.resume()
    for frame in after.values():
        assert_frame_matches(frame, settings, served)
    # demo types: float32 (ABCD, CDAB), float64, uint32 (ABCD, CDAB, DCBA), uint16, scaled int16, bool
    assert isinstance(after["press1-plc"]["samples"][4]["value"], float)  # motor_current, scale 0.1
    assert after["pump1-vfd"]["samples"][4]["value"] is True  # coil
    assert isinstance(after["packer1-plc"]["samples"][1]["value"], int)  # uint32 DCBA counter


async def test_every_type_and_byte_order_round_trips(tmp_path: Path) -> None:
    port = free_port()
    raw = demo_raw(tmp_path, port)
    extra = every_type_device()
    extra.update(port=port, poll_interval_s=POLL_S, timeout_s=0.5, retries=0)
    raw["devices"].append(extra)
    settings = Settings(**raw)
    async with PlantSimulator(settings) as sim, producing(settings) as frames:
        await frames.wait_for(lambda: bool(frames.of("every-type")))
        sim.pause()
        frozen_at = now_us()
        served = sim.current_values()
        after = await frames.wait_frames_after(frozen_at, ["every-type"])
    assert_frame_matches(after["every-type"], settings, served)
    values = {s["tag"]: s["value"] for s in after["every-type"]["samples"]}
    assert (values["str_abcd"], values["str_badc"], values["str_dcba"]) == ("str_ab", "str_ba", "str_dc")
    assert isinstance(values["temp_scaled"], float)
    assert isinstance(values["count_in"], int)


async def test_values_change_while_running_and_freeze_when_paused(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(**demo_raw(tmp_path, port))
    async with PlantSimulator(settings) as sim:
        first = sim.current_values()
        await asyncio.sleep(0.3)
        second = sim.current_values()
        assert first[("press1-plc", "oil_temperature")] != second[("press1-plc", "oil_temperature")]
        sim.pause()
        frozen = sim.current_values()
        await asyncio.sleep(0.2)
        assert sim.current_values() == frozen


# --- frame contract and sequence -------------------------------------------------------------------


async def test_frames_follow_the_contract_and_seq_increments(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(**demo_raw(tmp_path, port))
    stats = RunStats("producer-modbus")
    async with PlantSimulator(settings), producing(settings, stats) as frames:
        await frames.wait_for(lambda: all(len(frames.of(d.name)) >= 4 for d in settings.devices))
    codec = Codec(schemas.READING_FRAME, 1)
    for d in settings.devices:
        mine = frames.of(d.name)
        assert [f["seq"] for f in mine] == list(range(len(mine)))
        scan_times = [f["scan_time"] for f in mine]
        assert scan_times == sorted(scan_times)
        for f in mine:
            assert f["asset"] == d.asset and f["producer_id"] == "test-producer"
            assert f["historical"] is False and f["buffered"] is False
            assert abs(f["scan_time"] - now_us()) < 60_000_000  # microseconds, not ms or ns
            assert all(s["source_time"] == f["scan_time"] for s in f["samples"])
            decoded = fastavro.schemaless_reader(io.BytesIO(codec.encode(f)[5:]), codec.parsed, None)
            assert decoded == f
    assert stats.get("frames_produced") == len(frames.all)
    assert stats.get("samples_read") == sum(len(f["samples"]) for f in frames.all)
    assert stats.get("samples_bad") == 0 and stats.get("read_errors") == 0


# --- failures ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a hung device."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(1024):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


async def test_dead_devices_are_bad_and_do_not_slow_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plantstream.producers")
    port = free_port()
    sim_settings = Settings(**demo_raw(tmp_path, port))
    async with silent_server() as hung_port:
        raw = demo_raw(tmp_path, port)
        device(raw, "pump1-vfd")["port"] = free_port()  # nothing listens: connection refused
        device(raw, "packer1-plc")["port"] = hung_port  # accepts, never answers: timeouts
        settings = Settings(**raw)
        stats = RunStats("producer-modbus")
        async with PlantSimulator(sim_settings), producing(settings, stats) as frames:
            await frames.wait_for(lambda: all(frames.of(d.name) for d in settings.devices))
            t0 = time.monotonic()
            start_counts = {d.name: len(frames.of(d.name)) for d in settings.devices}
            await asyncio.sleep(2.0)
            elapsed = time.monotonic() - t0
            counts = {n: len(frames.of(n)) - c for n, c in start_counts.items()}

    expected = elapsed / POLL_S
    for healthy in ("press1-plc", "cnc1-controller"):
        assert counts[healthy] >= 0.75 * expected, counts
        gaps = np.diff([f["scan_time"] for f in frames.of(healthy)]) / 1e6
        assert gaps.max() < POLL_S + 0.25, (healthy, gaps.max())
        assert all(s["quality"] == "GOOD" for f in frames.of(healthy) for s in f["samples"])
    # a refused connection fails fast: that device keeps its rate too, with every sample BAD
    assert counts["pump1-vfd"] >= 0.75 * expected, counts
    for dead in ("pump1-vfd", "packer1-plc"):
        samples = [s for f in frames.of(dead) for s in f["samples"]]
        assert samples and all(s["quality"] == "BAD" and s["value"] is None for s in samples)
    assert counts["packer1-plc"] >= 1  # slower (each scan waits for the timeout) but still framed
    assert stats.get("read_errors") > 0 and stats.get("samples_bad") > 0

    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "plantstream.producers.readers.modbus"
    ]
    refused = [m for m in warnings if "'pump1-vfd'" in m]
    hung = [m for m in warnings if "'packer1-plc'" in m]
    assert len(refused) == 1 and len(hung) == 1, warnings  # rate-limited: one line per device
    assert "cannot connect to 127.0.0.1" in refused[0] and "flow, discharge_pressure" in refused[0]
    assert "no response within 0.5 s" in hung[0] and "holding 0-5" in hung[0]


async def test_illegal_address_is_bad_with_a_clear_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plantstream.producers")
    port = free_port()
    sim_settings = Settings(**demo_raw(tmp_path, port))
    raw = demo_raw(tmp_path, port)
    device(raw, "press1-plc")["tags"].append({"name": "ghost", "type": "uint16", "address": 500})
    settings = Settings(**raw)
    async with PlantSimulator(sim_settings), producing(settings) as frames:
        await frames.wait_for(lambda: len(frames.of("press1-plc")) >= 5)
    for f in frames.of("press1-plc"):
        by_tag = {s["tag"]: s for s in f["samples"]}
        assert by_tag["ghost"]["quality"] == "BAD" and by_tag["ghost"]["value"] is None
        assert all(s["quality"] == "GOOD" for name, s in by_tag.items() if name != "ghost")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "press1-plc" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "holding 500-500 [ghost]: Modbus exception 2 (illegal data address)" in lines[0]
    assert f"127.0.0.1:{port} unit 1" in lines[0]


async def test_decode_error_marks_only_that_tag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plantstream.producers")
    port = free_port()
    sim_raw = demo_raw(tmp_path, port)
    # a constant 12000 rpm = 0x2EE0: byte 0xE0 is not ASCII, so reading it as text must fail
    device(sim_raw, "press1-plc")["tags"].append(
        {"name": "speed_setpoint", "unit": "rpm", "role": "setpoint", "type": "uint16", "address": 20}
    )
    raw = demo_raw(tmp_path, port)
    device(raw, "press1-plc")["tags"].append({"name": "label", "type": "string", "length": 1, "address": 20})
    settings = Settings(**raw)
    stats = RunStats("producer-modbus")
    async with PlantSimulator(Settings(**sim_raw)) as sim, producing(settings, stats) as frames:
        await frames.wait_for(lambda: len(frames.of("press1-plc")) >= 2)
    assert sim.current_values()[("press1-plc", "speed_setpoint")] == 12000
    f = frames.of("press1-plc")[-1]
    by_tag = {s["tag"]: s for s in f["samples"]}
    assert by_tag["label"]["quality"] == "BAD"
    assert all(s["quality"] == "GOOD" for n, s in by_tag.items() if n != "label")
    assert stats.get("read_errors") == 0 and stats.get("samples_bad") == len(frames.of("press1-plc"))
    assert any("'label'" in r.getMessage() and "not ASCII" in r.getMessage() for r in caplog.records)


async def test_reconnects_after_the_device_comes_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plantstream.producers")
    port = free_port()
    settings = Settings(**demo_raw(tmp_path, port))

    def last_quality(name: str) -> str:
        mine = frames.of(name)
        return mine[-1]["samples"][0]["quality"] if mine else ""

    sim = PlantSimulator(settings)
    await sim.start()
    try:
        async with producing(settings) as frames:
            await frames.wait_for(lambda: last_quality("press1-plc") == "GOOD")
            await sim.close()
            await frames.wait_for(lambda: last_quality("press1-plc") == "BAD")
            await asyncio.sleep(0.5)
            await sim.start()
            await frames.wait_for(lambda: all(last_quality(d.name) == "GOOD" for d in settings.devices))
    finally:
        await sim.close()
    seqs = [f["seq"] for f in frames.of("press1-plc")]
    assert seqs == list(range(len(seqs)))  # the outage shows as BAD frames, not as a gap
    assert any("all reads OK again" in r.getMessage() for r in caplog.records)


# --- simulator ---------------------------------------------------------------------------------------


async def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        raw = demo_raw(tmp_path, free_port())
        device(raw, "pump1-vfd")["port"] = port  # the second endpoint is taken; the first must be released
        settings = Settings(**raw)
        sim = PlantSimulator(settings)
        with pytest.raises(SimulatorError, match=f"127.0.0.1:{port}.*pump1-vfd"):
            await sim.start()
    free_again = device(raw, "press1-plc")["port"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free_again))  # the endpoint that did start was shut down again


def test_duplicate_unit_ids_on_one_port_are_rejected(tmp_path: Path) -> None:
    raw = demo_raw(tmp_path, free_port())
    device(raw, "cnc1-controller")["unit_id"] = 1
    with pytest.raises(SimulatorError, match="'press1-plc' and 'cnc1-controller' both use unit id 1"):
        PlantSimulator(Settings(**raw))


async def test_run_stops_cleanly_on_the_event(tmp_path: Path) -> None:
    port = free_port()
    sim = PlantSimulator(Settings(**demo_raw(tmp_path, port)))
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await asyncio.sleep(0.2)
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    stop.set()
    await asyncio.wait_for(task, 2)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_simulated_plant_is_deterministic_and_plausible(tmp_path: Path) -> None:
    raw = demo_raw(tmp_path, free_port())
    raw["pipeline"]["simulator"]["update_interval_s"] = 0.2
    settings = Settings(**raw)
    a, b = PlantSimulator(settings), PlantSimulator(settings)
    states: set[int] = set()
    prev = a.current_values()
    for _ in range(3000):  # 600 simulated seconds
        await a.step()
        await b.step()
        v = a.current_values()
        assert v == b.current_values()

        def num(dev: str, tag: str, values: dict[tuple[str, str], Any] = v) -> float:
            return float(values[(dev, tag)])

        states.add(int(num("press1-plc", "state")))
        for dev in ("cnc1-controller", "packer1-plc"):
            m = a.machine(dev)
            assert m.good + m.scrap == m.total
        assert num("cnc1-controller", "parts_good") <= num("cnc1-controller", "parts_total")
        assert num("packer1-plc", "cartons_scrap") <= 0.2 * num("packer1-plc", "cartons_good")
        # counters only move while the machine runs, and never backwards
        for dev, tag in [("press1-plc", "strokes_total"), ("packer1-plc", "cartons_good")]:
            assert num(dev, tag) >= float(prev[(dev, tag)])
            assert num(dev, tag) == float(prev[(dev, tag)]) or a.machine(dev).state is MachineState.RUNNING
        assert 20.0 < num("press1-plc", "oil_temperature") < 85.0
        assert v[("pump1-vfd", "running")] is (a.machine("pump1-vfd").state is MachineState.RUNNING)
        prev = v
    assert states <= {1, 2, 3, 4} and 1 in states and len(states) >= 2
    raw["pipeline"]["simulator"]["seed"] = 12
    assert PlantSimulator(Settings(**raw)).current_values() != PlantSimulator(settings).current_values()


def test_counters_wrap_at_the_type_maximum(tmp_path: Path) -> None:
    raw = demo_raw(tmp_path, free_port())
    device(raw, "press1-plc")["tags"].append(
        {"name": "strokes_16", "role": "counter_total", "type": "uint16", "address": 30}
    )
    sim = PlantSimulator(Settings(**raw))
    total = sim.machine("press1-plc").total
    assert total > 65535
    assert sim.current_values()[("press1-plc", "strokes_16")] == total % 65536


# --- Kafka sink (librdkafka, no broker) --------------------------------------------------------------


def sink_settings(tmp_path: Path) -> Settings:
    raw = plant_raw(tmp_path)
    raw["pipeline"]["kafka"].update(bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="t1.")
    return Settings(**raw)


def a_frame(seq: int = 0) -> dict[str, Any]:
    return {
        "asset": "demo.springfield.stamping.line1.press1",
        "device": "press1-plc",
        "seq": seq,
        "producer_id": "p",
        "scan_time": now_us(),
        "historical": False,
        "buffered": False,
        "samples": [{"tag": "state", "source_time": now_us(), "value": 1, "quality": "GOOD", "unit": ""}],
    }


class FakeProducer:
    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, **kw: Any) -> None:
        self.produced.append({"topic": topic, **kw})
        kw["on_delivery"](None, None)

    def poll(self, timeout: float) -> int:
        time.sleep(min(timeout, 0.01))
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:  # nothing waits: every produce is acknowledged at once
        return 0

    def close(self) -> bool:
        return True


def test_sink_keys_by_asset_and_encodes_the_frame(tmp_path: Path) -> None:
    fake = FakeProducer()
    stats = RunStats("producer-modbus")
    codec = Codec(schemas.READING_FRAME, 42)
    sink = Publisher(sink_settings(tmp_path), codec, stats, producer=fake)  # type: ignore[arg-type]
    frame = a_frame(3)
    sink.emit(frame)
    assert sink.close(1) == 0
    (msg,) = fake.produced
    assert msg["topic"] == "t1.plant.readings.v1"
    assert msg["key"] == b"demo.springfield.stamping.line1.press1"
    assert msg["value"][:5] == b"\x00\x00\x00\x00\x2a"  # Confluent framing with schema id 42
    assert fastavro.schemaless_reader(io.BytesIO(msg["value"][5:]), codec.parsed, None) == frame
    assert stats.get("frames_acked") == 1


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_sink_reports_failed_deliveries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stats = RunStats("producer-modbus")
    sink = Publisher(
        sink_settings(tmp_path),
        Codec(schemas.READING_FRAME, 1),
        stats,
        config_overrides={"message.timeout.ms": 300, "enable.idempotence": False},
    )
    try:
        sink.emit(a_frame(7))
        await wait_until(lambda: stats.get("frames_failed") == 1, 5)
    finally:
        assert sink.close(1) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("press1-plc, seq 7" in m and "t1.plant.readings.v1" in m and "timed out" in m.lower() for m in errors), (
        errors
    )


async def test_sink_waits_for_room_instead_of_dropping(tmp_path: Path) -> None:
    stats = RunStats("producer-modbus")
    sink = Publisher(
        sink_settings(tmp_path),
        Codec(schemas.READING_FRAME, 1),
        stats,
        config_overrides={
            "message.timeout.ms": 200,
            "queue.buffering.max.messages": 1,
            "enable.idempotence": False,
            "linger.ms": 0,
        },
    )
    try:
        for seq in range(2):
            sink.emit(a_frame(seq))  # the 2nd waits until the 1st has failed
        await wait_until(lambda: stats.get("frames_failed") == 2, 5)
    finally:
        sink.close(1)
    assert stats.get("queue_full_waits") > 0
    assert stats.get("frames_acked") == 0


def test_sink_close_returns_the_undelivered_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stats = RunStats("producer-modbus")
    sink = Publisher(
        sink_settings(tmp_path), Codec(schemas.READING_FRAME, 1), stats, config_overrides={"message.timeout.ms": 60_000}
    )
    sink.emit(a_frame(0))
    sink.emit(a_frame(1))
    t0 = time.monotonic()
    assert sink.close(0.3) == 2
    assert time.monotonic() - t0 < 2.0
    # nothing vanishes silently: the purged frames are counted and logged as failed
    assert stats.get("frames_failed") == 2
    assert sum("seq 1" in r.getMessage() and "urge" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(RuntimeError, match="closed"):
        sink.emit(a_frame(2))
