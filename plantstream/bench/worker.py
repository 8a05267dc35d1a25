"""`plantstream bench worker`: how many samples/s one Faust worker processes, with everything on.

The readings topic is filled first (a backlog of synthetic frames, see plantstream/simulators/synthetic.py),
then one worker is started and drains it: statistics windows, OEE, alert rules and anomaly scoring
all run, and every output record is produced to Kafka. The drain rate is the most the worker can
keep up with; measuring it on a backlog keeps the load generator and the storage sink from
competing for the same two cores while the worker is measured. The broker runs on the same box.
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

import schemas
from plantstream.bench.common import machine, open_run, proc_usage, run_pipeline_section
from plantstream.core import kafka_clients, runstats, topics
from plantstream.core.config import Settings
from plantstream.simulators.synthetic import SyntheticPlant
from plantstream.up import say


def fill_backlog(settings: Settings, plant: SyntheticPlant, frames: int, t0_us: int) -> int:
    """Produce `frames` frames (round robin over the assets, at the plant's scan rate in event time)."""
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    producer = Producer(kafka_clients.producer_config(settings, "bench-backlog", **{"linger.ms": 50}))
    topic = settings.topic(topics.READINGS)
    step_us = int(1e6 / plant.rate_hz)
    n_assets = len(plant.assets)
    for i in range(frames):
        a, scan = i % n_assets, i // n_assets
        frame = plant.frame(a, t0_us + scan * step_us)
        while True:
            try:
                producer.produce(topic, key=frame["asset"].encode(), value=codec.encode(frame))
                break
            except BufferError:
                producer.poll(0.05)
        if i % 500 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} backlog frames were not acknowledged by Kafka within 120 s")
    return frames


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    # the venv's own copy first: `.venv/bin/plantstream` runs without the venv on PATH
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        say("bench: --profile needs py-spy (pip install -e '.[test]' installs it); running without it")
        return None
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "-f", "speedscope", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_worker_bench(
    settings: Settings, *, assets: int, tags: int, frames: int, rate_hz: float, profile: bool, timeout_s: float = 600
) -> dict[str, Any]:
    plant = SyntheticPlant(assets, tags, rate_hz)

    def build(bootstrap: str, url: str, run_dir: Path) -> dict[str, Any]:
        return {
            **plant.config(),
            "pipeline": {
                **run_pipeline_section("benchw", bootstrap, url, run_dir),
                "windows": {"kpi_window_s": 10, "grace_s": 2},
                "alerts": plant.alert_rules(),
            },
        }

    run = open_run(settings, "worker", build)
    bench_settings, run_dir = run.settings, run.run_dir
    total_samples = frames * tags
    say(f"bench worker: filling a backlog of {frames:,} frames = {total_samples:,} samples ({assets} assets)")
    t_fill = time.monotonic()
    fill_backlog(bench_settings, plant, frames, t0_us=1_767_225_600_000_000)
    say(f"bench worker: backlog written in {time.monotonic() - t_fill:.1f}s; starting the worker")
    worker = run.spawn("processor", "process")
    pid = worker.proc.pid if worker.proc else 0
    series: list[tuple[float, int]] = []
    flushes: list[tuple[float, int]] = []  # (worker's flush time, samples so far)
    spy: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    cpu_first = cpu_last = 0.0
    rss_max = 0
    t_first: float | None = None
    try:
        while time.monotonic() - t0 < timeout_s:
            time.sleep(0.5)
            snap = runstats.read_all(run_dir).get("processor", {})
            done = snap.get("counts", {}).get("samples_in", 0)
            now = time.monotonic()
            if done and snap.get("updated") and (not flushes or flushes[-1][0] != snap["updated"]):
                flushes.append((snap["updated"], done))
            cpu, rss = proc_usage(pid)
            rss_max = max(rss_max, rss)
            if done and t_first is None:
                t_first, cpu_first = now, cpu
                if profile:
                    spy = _profile(pid, 20, run_dir / "worker-profile.speedscope.json")
            if t_first is not None:
                series.append((round(now - t_first, 2), done))
                cpu_last = cpu
            if done >= total_samples:
                break
            if worker.proc and worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early with code {worker.proc.returncode}; see {worker.log}")
    finally:
        if spy:
            spy.wait(60)
        counts = runstats.read_all(run_dir).get("processor", {}).get("counts", {})
        worker.stop(30)
        run.close()
    if not series or series[-1][1] < total_samples:
        raise RuntimeError(
            f"the worker processed {series[-1][1] if series else 0:,} of {total_samples:,} samples "
            f"within {timeout_s:.0f}s; see {worker.log}"
        )
    # the first and last second include start-up and the tail of a partition drained late
    span = series[-1][0]
    rates = [
        (b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(flushes) if b[0] > a[0] and b[1] < total_samples
    ]
    # the last flush before the backlog was done: the one after it may come up to a second after the end
    inside = [f for f in flushes if f[1] < total_samples] or flushes
    first, last = (inside[0], inside[-1]) if inside else ((0.0, 0), (0.0, 0))
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0
    return {
        "bench": "worker",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load": {
            "assets": assets,
            "tags_per_asset": tags,
            "frames": frames,
            "samples": total_samples,
            "scan_rate_hz_event_time": rate_hz,
            "stages": ["kpi windows", "oee", "alert rules", "anomaly"],
        },
        "samples_per_s": {
            # counts and times as the worker flushed them (each second): the bench's own polling would
            # quantise a 20 s drain by up to 1.5 s, and its first sighting includes the start-up
            "overall": round(steady, 1) if steady else (round(total_samples / span, 1) if span else 0.0),
            "overall_incl_startup": round(total_samples / span, 1) if span else 0.0,
            "median_per_second": round(statistics.median(rates), 1) if rates else 0.0,
        },
        "drain_s": span,
        "worker_cpu_percent": round(100 * (cpu_last - cpu_first) / span, 1) if span else 0.0,
        "worker_rss_mb_max": round(rss_max / 2**20, 1),
        "outputs": {
            k: counts.get(k, 0)
            for k in ("kpi_windows", "oee_windows", "anomaly_scores", "alerts_raised", "dead_letters", "samples_late")
        },
        "profile": str(run_dir / "worker-profile.speedscope.json") if profile and spy else None,
        "pid_note": f"worker pid {pid}; cpus {os.cpu_count()}",
    }


def render(result: dict[str, Any]) -> str:
    r = result["samples_per_s"]
    return (
        f"worker drained {result['load']['samples']:,} samples in {result['drain_s']:.1f}s: "
        f"{r['overall']:,.0f} samples/s overall, median {r['median_per_second']:,.0f}; "
        f"cpu {result['worker_cpu_percent']}%, rss max {result['worker_rss_mb_max']} MB; outputs {result['outputs']}"
    )
