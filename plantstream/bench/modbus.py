"""`plantstream bench modbus`: register-block reads per second of one producer process over 20 devices,
and how much one silent device (accepts TCP, never answers) slows the others."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from plantstream.bench.common import machine, proc_usage
from plantstream.core.config import Settings
from plantstream.core.records import ReadingFrame
from producers import modbus_codec
from producers.readers.modbus import run_modbus_producer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_plant(devices: int, port: int, poll_s: float, timeout_s: float) -> dict[str, Any]:
    tags = [
        {"name": "temperature", "unit": "degC", "type": "float32", "address": 0},
        {"name": "pressure", "unit": "bar", "type": "float32", "address": 2},
        {"name": "count", "role": "counter_total", "type": "uint32", "address": 4},
        {"name": "state", "role": "machine_state", "type": "uint16", "address": 6},
        {"name": "flow", "unit": "m3/h", "type": "float32", "table": "input", "address": 0},
        {"name": "vibration", "unit": "mm/s", "type": "float64", "table": "input", "address": 2},
        {"name": "running", "role": "status", "type": "bool", "table": "coil", "address": 0},
    ]
    return {
        "plant": {"name": "bench", "assets": [{"path": f"bench.site.area.line.m{i:02d}"} for i in range(devices)]},
        "devices": [
            {
                "name": f"dev{i:02d}",
                "protocol": "modbus_tcp",
                "asset": f"bench.site.area.line.m{i:02d}",
                "host": "127.0.0.1",
                "port": port,
                "unit_id": i + 1,
                "poll_interval_s": poll_s,
                "timeout_s": timeout_s,
                "retries": 0,
                "tags": tags,
            }
            for i in range(devices)
        ],
        "pipeline": {"simulator": {"update_interval_s": 0.1}},
    }


async def _silent_server(port: int) -> asyncio.Server:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            pass  # swallow requests, answer nothing: the worst kind of dead device
        writer.close()

    return await asyncio.start_server(hold, "127.0.0.1", port)


async def _measure(settings: Settings, seconds: float, silent_port: int | None) -> dict[str, Any]:
    per_device: dict[str, int] = {}

    def emit(frame: ReadingFrame) -> None:
        per_device[frame["device"]] = per_device.get(frame["device"], 0) + 1

    server = await _silent_server(silent_port) if silent_port else None
    stop = asyncio.Event()
    task = asyncio.create_task(run_modbus_producer(settings, emit, stop, None, "bench"))
    await asyncio.sleep(2.0)  # connect and warm up
    start = dict(per_device)
    cpu0 = proc_usage(os.getpid())[0]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu = proc_usage(os.getpid())[0] - cpu0
    end = dict(per_device)
    stop.set()
    await task
    if server:
        server.close()
        await server.wait_closed()
    blocks = {d.name: len(modbus_codec.plan_reads(d.tags)) for d in settings.devices}  # type: ignore[arg-type]  # bench plants: Modbus only
    frames_s = {d: (end.get(d, 0) - start.get(d, 0)) / elapsed for d in blocks}
    return {
        "frames_per_s": frames_s,
        "block_reads_per_s": {d: frames_s[d] * blocks[d] for d in blocks},
        "producer_cpu_percent": round(100 * cpu / elapsed, 1),
    }


def run_modbus_bench(
    devices: int = 20, seconds: float = 20.0, poll_s: float = 0.02, timeout_s: float = 1.0, repeats: int = 3
) -> dict[str, Any]:
    """Capacity (polling as fast as the devices answer) and, at `poll_s`, the effect of one silent device."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(yaml.safe_dump(bench_plant(devices, port, poll_s, timeout_s)))
        sim = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(cfg), "--log-level", "error", "simulate"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3.0)
            flat_out = Settings(**bench_plant(devices, port, 0.0005, timeout_s))
            capacity = [asyncio.run(_measure(flat_out, seconds, None)) for _ in range(repeats)]
            paced = Settings(**bench_plant(devices, port, poll_s, timeout_s))
            healthy = [asyncio.run(_measure(paced, seconds, None)) for _ in range(repeats)]
            silent_port = _free_port()
            raw_dead = bench_plant(devices, port, poll_s, timeout_s)
            raw_dead["devices"][0]["port"] = silent_port
            dead = Settings(**raw_dead)
            dead_runs = [asyncio.run(_measure(dead, seconds, silent_port)) for _ in range(repeats)]
        finally:
            sim.terminate()
            sim.wait(10)

    def median(values: list[float]) -> float:
        v = sorted(values)
        return v[len(v) // 2]

    others = [d.name for d in dead.devices[1:]]
    healthy_others = median([sum(r["frames_per_s"][d] for d in others) for r in healthy])
    dead_others = median([sum(r["frames_per_s"][d] for d in others) for r in dead_runs])
    return {
        "bench": "modbus",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "setup": {
            "devices": devices,
            "blocks_per_device": len(modbus_codec.plan_reads(paced.devices[0].tags)),  # type: ignore[arg-type]  # bench plants: Modbus only
            "timeout_s": timeout_s,
            "seconds": seconds,
            "repeats": repeats,
            "server": "plantstream simulate (pymodbus) in its own process, one TCP gateway, unit ids 1..N",
            "silent_device": "accepts TCP, never answers (each request waits the full timeout)",
        },
        "capacity_block_reads_per_s_median": round(median([sum(r["block_reads_per_s"].values()) for r in capacity]), 1),
        "capacity_block_reads_per_s_runs": [round(sum(r["block_reads_per_s"].values()), 1) for r in capacity],
        "capacity_producer_cpu_percent_median": median([r["producer_cpu_percent"] for r in capacity]),
        "paced_poll_interval_s": poll_s,
        "paced_block_reads_per_s_median": round(median([sum(r["block_reads_per_s"].values()) for r in healthy]), 1),
        "others_frames_per_s_healthy": round(healthy_others, 1),
        "others_frames_per_s_with_one_silent_device": round(dead_others, 1),
        "others_rate_drop_percent": round(100 * (1 - dead_others / healthy_others), 1) if healthy_others else None,
    }
