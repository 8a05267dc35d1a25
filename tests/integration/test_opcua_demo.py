"""The demo plant's OPC UA line, secured by default: SignAndEncrypt, trust lists both ways, a user with a password.

Over real loopback sockets: the OPC UA simulator of `plantstream simulate` and the OPC UA producer, in
process (fast), then `plantstream up` with the whole demo plant into a real broker and SQLite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from plantstream.core.config import OpcUaDevice, Settings
from plantstream.simulators.opcua import OpcUaSimulator
from producers.readers.opcua import run_opcua_producer
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw, write_config

pytestmark = pytest.mark.usefixtures("clean_env")

SESSION_LINE = "session open, security Basic256Sha256/SignAndEncrypt, user 'operator'"


def opcua_only(tmp_path: Path) -> Settings:
    raw = plant_raw(tmp_path, opcua=True, simulator={"update_interval_s": 0.2})
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == "opcua"]
    for d in raw["devices"]:
        d.update(publishing_interval_ms=200, sampling_interval_ms=0, reconnect_min_s=0.2, reconnect_max_s=1.0)
    return Settings(**raw)


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(40)
async def test_demo_opcua_line_reads_over_sign_and_encrypt_with_generated_trusted_certs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = opcua_only(tmp_path)
    device = s.devices[0]
    assert isinstance(device, OpcUaDevice)
    state = Path(s.pipeline.state_dir)
    assert not state.exists()  # a fresh clone: no certificate anywhere yet
    caplog.set_level("INFO", logger="plantstream.producers.readers.opcua")
    frames: list[dict[str, Any]] = []
    async with OpcUaSimulator(s):
        # the server offers only SignAndEncrypt endpoints, each with its (generated) certificate
        probe = Client(device.endpoint, timeout=2)
        endpoints = await probe.connect_and_get_server_endpoints()
        assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
        assert all(e.SecurityPolicyUri.rsplit("#", 1)[-1] != "None" for e in endpoints)
        stop = asyncio.Event()
        task = asyncio.create_task(run_opcua_producer(s, frames.append, stop))
        try:
            await until(
                lambda: (
                    {x["tag"] for f in frames for x in f["samples"] if x["quality"] == "GOOD"}
                    >= {t.name for t in device.tags}
                ),
                25,
                "GOOD values of every filler tag",
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    # both certificates were made on first use under the state dir; each side trusted the other's
    assert (state / "opcua-server" / "server-cert.der").is_file()
    assert (state / "opcua" / "client-cert.der").is_file()
    assert SESSION_LINE in caplog.text
    assert "plantstream-demo" not in caplog.text  # the password is never logged


@pytest.mark.timeout(40)
async def test_wrong_password_from_env_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__OPCUA_CLIENT__PASSWORDS__OPERATOR", "not-the-password")
    s = opcua_only(tmp_path)  # Settings(...) reads the env like load_config does
    device = s.devices[0]
    assert isinstance(device, OpcUaDevice)
    pw = s.opcua_password(device)
    assert pw is not None and pw.get_secret_value() == "not-the-password"
    frames: list[dict[str, Any]] = []
    async with OpcUaSimulator(s):
        stop = asyncio.Event()
        task = asyncio.create_task(run_opcua_producer(s, frames.append, stop))
        try:
            await until(lambda: bool(frames), 20, "the gap frame of a refused session")
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert frames and all(x["quality"] == "BAD" for f in frames for x in f["samples"])


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_up_with_the_demo_plant_stores_opcua_frames_read_over_sign_and_encrypt(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    raw = plant_raw(tmp_path, stack, opcua=True, windows={"kpi_window_s": 5, "grace_s": 1})
    port = free_port()
    for d in raw["devices"]:
        if d["protocol"] == "modbus_tcp":
            d.update(port=port, poll_interval_s=0.5)
        else:
            d.update(publishing_interval_ms=250, reconnect_min_s=0.2, reconnect_max_s=1.0)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", "14"],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert up.wait(90) == 0, err.read_text()[-4000:]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    progress = err.read_text()
    assert "producer-opcua: started" in progress, progress[-2000:]
    assert summary["frames_failed"] == 0 and summary["dead_letters"] == 0
    assert summary["opcua_frames_acked"] > 0 and summary["modbus_frames_acked"] > 0
    assert summary["frames_acked"] == summary["opcua_frames_acked"] + summary["modbus_frames_acked"]
    log = (Path(settings.pipeline.state_dir) / "logs" / "producer-opcua.log").read_text()
    assert SESSION_LINE in log, log[-2000:]
    assert "plantstream-demo" not in log
    with sqlite3.connect(sqlite_path(settings)) as db:
        per_device = dict(db.execute("SELECT device, COUNT(*) FROM frames GROUP BY device").fetchall())
        good_tags = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT tag FROM samples_readable WHERE asset = ? AND quality = 'GOOD'",
                ("demo.springfield.packaging.line4.filler1",),
            )
        }
        oee_assets = {r[0] for r in db.execute("SELECT DISTINCT asset FROM kpi_windows")}
    assert per_device.get("filler1-opcua") == summary["opcua_frames_acked"]
    assert good_tags == {"fill_level", "product_temperature", "bottles_total", "bottles_good", "state"}
    assert "demo.springfield.packaging.line4.filler1" in oee_assets  # the worker computed KPIs of the OPC UA line
