"""Modbus RTU over a serial line: the producer's serial client against the simulator's serial server.

The line is a pseudo-terminal pair made by socat (Debian package `socat`, installed by .ci/run): the
producer opens one end, the simulator serves on the other, and every byte goes through the kernel's
tty layer with RTU framing and CRCs, as on a real RS-485 adapter.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import Settings
from plantstream.simulators.modbus import PlantSimulator, SimulatorError
from producers.readers.base import now_us
from producers.readers.modbus import make_pollers
from tests.conftest import plant_raw
from tests.integration.test_modbus_sim import assert_frame_matches, every_type_device, producing
from tests.system import require

pytestmark = [pytest.mark.usefixtures("clean_env", "socat"), pytest.mark.timeout(15)]


@pytest.fixture
def socat() -> str:
    return require("socat")


@contextlib.contextmanager
def pty_pair(folder: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals (a null-modem cable in software); socat is stopped on exit."""
    a, b = folder / "ttyA", folder / "ttyB"
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert proc.poll() is None, "socat exited before creating the pty pair"
            assert time.monotonic() < deadline, "socat did not create the pty pair within 5 s"
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(5)


def rtu(device: dict[str, Any], producer_end: str, sim_end: str, **line: Any) -> dict[str, Any]:
    device = {k: v for k, v in device.items() if k not in ("host", "port")}
    defaults = {"baudrate": 115200, "parity": "N", "poll_interval_s": 0.2, "timeout_s": 0.5, "retries": 0}
    device.update(protocol="modbus_rtu", serial_port=producer_end, simulator_port=sim_end, **{**defaults, **line})
    return device


async def test_rtu_values_equal_served_values_for_every_type(tmp_path: Path) -> None:
    with pty_pair(tmp_path) as (producer_end, sim_end):
        raw = plant_raw(tmp_path)
        pump = next(d for d in raw["devices"] if d["name"] == "pump1-vfd")
        # two unit ids on one bus: the every-type table (unit 5) and the demo pump (unit 3)
        raw["devices"] = [rtu(every_type_device(), producer_end, sim_end), rtu(pump, producer_end, sim_end, unit_id=3)]
        raw["pipeline"]["simulator"] = {"update_interval_s": 0.05, "seed": 11}
        settings = Settings(**raw)
        names = [d.name for d in settings.devices]
        async with PlantSimulator(settings) as sim, producing(settings) as frames:
            await frames.wait_for(lambda: all(frames.of(n) for n in names))
            sim.pause()
            frozen_at = now_us()
            served = sim.current_values()
            after = await frames.wait_frames_after(frozen_at, names)
    for frame in after.values():
        assert_frame_matches(frame, settings, served)
    values = {s["tag"]: s["value"] for s in after["every-type"]["samples"]}
    assert (values["str_abcd"], values["str_badc"], values["str_dcba"]) == ("str_ab", "str_ba", "str_dc")
    assert isinstance(values["temp_scaled"], float) and isinstance(values["count_in"], int)


async def test_rtu_devices_of_one_port_must_share_line_settings(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path)
    pump = next(d for d in raw["devices"] if d["name"] == "pump1-vfd")
    raw["devices"] = [
        rtu(every_type_device(), "/dev/ttyX", "/dev/ttyY"),
        rtu(pump, "/dev/ttyX", "/dev/ttyY", unit_id=3, baudrate=9600),
    ]
    with pytest.raises(ValueError, match="share serial port /dev/ttyX but not its line settings"):
        make_pollers(Settings(**raw).devices, lambda f: None, producer_id="t")  # type: ignore[arg-type]


async def test_missing_serial_port_is_a_clear_simulator_error(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path)
    raw["devices"] = [rtu(every_type_device(), str(tmp_path / "nope"), str(tmp_path / "nope-sim"))]
    with pytest.raises(SimulatorError, match=r"serial port .*nope-sim for device\(s\) every-type does not exist"):
        await PlantSimulator(Settings(**raw)).start()


async def test_refused_line_settings_are_a_clear_simulator_error(tmp_path: Path) -> None:
    with pty_pair(tmp_path) as (producer_end, sim_end):
        raw = plant_raw(tmp_path)
        raw["devices"] = [rtu(every_type_device(), producer_end, sim_end, parity="E")]
        sim = PlantSimulator(Settings(**raw))
        with pytest.raises(SimulatorError, match=f"cannot open serial port {sim_end} .* at 115200 baud, 8E1"):
            await sim.start()
        await sim.close()
