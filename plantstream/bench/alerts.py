"""`plantstream bench alerts`: p50/p95/p99 from a sample's timestamp to its alert on plant.alerts.v1.

A synthetic plant (plantstream/simulators/synthetic.py) is produced live at the offered rate (default 100 assets
x 20 tags x 5 Hz = 10,000 samples/s) while one real Faust worker runs every stage (KPI windows, OEE,
alert rules, anomaly scoring). A threshold rule (no minimum duration) watches one tag; every
`trip_every_s` each asset's value jumps above the limit for `trip_scans` scans and falls back, so the
worker RAISES and CLEARS one alert per trip. The alert's `time` is the event time of the sample that
changed its state, so latency = (wall clock when this process received the alert) - (that sample's
source timestamp), which includes the producer's batching, the broker, the worker and the consumer.
Every received alert is matched to a trip or clear sample the generator sent, and counted.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

import schemas
from plantstream.bench.common import machine, open_run, proc_usage, run_pipeline_section
from plantstream.core import kafka_clients, runstats, topics
from plantstream.core.config import Settings
from plantstream.simulators.synthetic import ALERT_TAG, SyntheticPlant
from plantstream.up import say

NOTE = (
    "The 2 CPUs of this machine are shared by 6 engineers running Kafka tests at the same time: rates are "
    "lower bounds, latencies and times upper bounds of what the pipeline does on a quiet machine."
)


def quantiles_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (nearest-rank on the sorted sample); empty -> {}."""
    if not latencies_s:
        return {}
    a = np.sort(np.asarray(latencies_s, dtype=float)) * 1000.0

    def q(p: float) -> float:
        return round(float(a[min(len(a) - 1, max(0, math.ceil(p * len(a)) - 1))]), 1)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(float(a[-1]), 1), "n": len(a)}


class TripSchedule:
    """Which scans of which asset carry a value above the alert limit: a pure function of (asset, seq)."""

    def __init__(self, rate_hz: float, trip_every_s: float, trip_scans: int, assets: int) -> None:
        self.period = max(trip_scans + 2, round(trip_every_s * rate_hz))
        self.trip_scans = trip_scans
        self.offset = [round(a * self.period / max(assets, 1)) for a in range(assets)]  # trips spread in time

    def tripped(self, a: int, seq: int) -> bool:
        return (seq + self.offset[a]) % self.period < self.trip_scans

    def fraction(self) -> float:
        return self.trip_scans / self.period


class LiveLoad:
    """Produces the synthetic plant in real time; remembers the source time of every state-changing sample."""

    def __init__(self, settings: Settings, plant: SyntheticPlant, schedule: TripSchedule, limit: float) -> None:
        self.codec = kafka_clients.registry(settings).codec(
            topics.subject(settings, topics.READINGS), schemas.READING_FRAME
        )
        self.topic = settings.topic(topics.READINGS)
        self.plant, self.schedule, self.limit = plant, schedule, limit
        self.producer = Producer(kafka_clients.producer_config(settings, "bench-alerts", **{"linger.ms": 5}))
        self.changes: dict[tuple[str, int], str] = {}  # (asset, source_time_us) -> RAISED | CLEARED
        self.sent_samples = 0
        self.behind_ticks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-alerts-load", daemon=True)
        self._lock = threading.Lock()

    def change_at(self, asset: str, t_us: int) -> str | None:
        with self._lock:
            return self.changes.get((asset, t_us))

    def _run(self) -> None:
        plant, n = self.plant, len(self.plant.assets)
        interval = 1.0 / plant.rate_hz
        was_high = [False] * n
        next_tick = time.monotonic()
        while not self.stop.is_set():
            now_us = int(time.time() * 1e6)
            for a in range(n):
                seq = plant.seq[a]
                frame = plant.frame(a, now_us)
                high = self.schedule.tripped(a, seq)
                if high:
                    for s in frame["samples"]:
                        if s["tag"] == ALERT_TAG:
                            s["value"] = self.limit * 2.0
                if high != was_high[a]:
                    with self._lock:
                        self.changes[(frame["asset"], now_us)] = "RAISED" if high else "CLEARED"
                    was_high[a] = high
                while True:
                    try:
                        self.producer.produce(self.topic, key=frame["asset"].encode(), value=self.codec.encode(frame))
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.sent_samples += len(frame["samples"])
            self.producer.poll(0)
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.behind_ticks += 1
                next_tick = time.monotonic()  # behind: do not burst to catch up
        self.producer.flush(30)


class AlertListener:
    """Consumes plant.alerts.v1 from the end; stamps each alert with the wall-clock time it arrived."""

    def __init__(self, settings: Settings) -> None:
        self.decoder = kafka_clients.registry(settings).decoder()
        self.consumer = Consumer(
            kafka_clients.consumer_config(
                settings,
                f"{settings.pipeline.group_id}-alert-latency",
                "bench-alerts",
                **{"fetch.wait.max.ms": 10},
            )
        )
        self.consumer.subscribe([settings.topic(topics.ALERTS)])
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-alerts-listen", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                msg = self.consumer.poll(0.05)
                if msg is None or msg.error():
                    continue
                at = time.time()
                self.received.append((at, self.decoder.decode(msg.value())))
        finally:
            self.consumer.close()


def _config(plant: SyntheticPlant, bootstrap: str, url: str, run_dir: Path, limit: float) -> dict[str, Any]:
    rule = {
        "name": "bench-limit",
        "asset": "bench.*.*.*.*",
        "kind": "threshold",
        "tag": ALERT_TAG,
        "above": limit,
        "hysteresis": limit * 0.1,
        "min_duration_s": 0,
        "severity": "WARNING",
    }
    return {
        **plant.config(),
        "pipeline": {
            **run_pipeline_section("bencha", bootstrap, url, run_dir),
            "windows": {"kpi_window_s": 10, "grace_s": 2},
            "alerts": [rule],
        },
    }


def run_alert_latency_bench(
    settings: Settings,
    *,
    assets: int = 100,
    tags: int = 20,
    rate_hz: float = 5.0,
    duration_s: float = 60.0,
    warmup_s: float = 10.0,
    trip_every_s: float = 20.0,
    trip_scans: int = 3,
) -> dict[str, Any]:
    plant = SyntheticPlant(assets, tags, rate_hz)
    limit = float(plant.levels[:, 0].max()) * 10  # above every normal level: only the planned trips cross it
    run = open_run(settings, "alerts", lambda bootstrap, url, run_dir: _config(plant, bootstrap, url, run_dir, limit))
    bench_settings, run_dir = run.settings, run.run_dir
    worker = run.spawn("processor", "process")
    pid = worker.proc.pid if worker.proc else 0
    schedule = TripSchedule(rate_hz, trip_every_s, trip_scans, assets)
    load = LiveLoad(bench_settings, plant, schedule, limit)
    listener = AlertListener(bench_settings)
    listener.thread.start()
    time.sleep(5)  # let the worker join its group before the load starts
    offered = assets * tags * rate_hz
    say(
        f"bench alerts: {assets} assets x {tags} tags at {rate_hz:g} Hz = {offered:,.0f} samples/s for "
        f"{duration_s:.0f}s (first {warmup_s:.0f}s not counted); {schedule.fraction():.1%} of frames trip the limit"
    )
    load_at_start = round(os.getloadavg()[0], 2)  # other people's work on the shared CPUs
    t0 = time.monotonic()
    t0_wall = time.time()
    load.thread.start()
    cpu0 = proc_usage(pid)[0]
    rss_max = 0
    try:
        while time.monotonic() - t0 < duration_s:
            time.sleep(1.0)
            rss_max = max(rss_max, proc_usage(pid)[1])
            if worker.proc and worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early with code {worker.proc.returncode}; see {worker.log}")
    finally:
        load.stop.set()
        load.thread.join(60)
    sent_s = time.monotonic() - t0
    cpu = proc_usage(pid)[0] - cpu0
    time.sleep(3)  # alerts of the last samples are still on their way
    listener.stop.set()
    listener.thread.join(30)
    counts = runstats.read_all(run_dir).get("processor", {}).get("counts", {})
    worker.stop(30)
    run.close()
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []  # (sample time since the load started, latency), to place stalls
    matched = unmatched = 0
    for at, alert in listener.received:
        t_us = int(alert["time"])  # the decoder keeps timestamp-micros as an int
        if load.change_at(alert["asset"], t_us) != alert["state"]:
            unmatched += 1
            continue
        matched += 1
        if t_us / 1e6 >= t0_wall + warmup_s:
            latencies.append(at - t_us / 1e6)
            timeline.append((round(t_us / 1e6 - t0_wall, 2), round((at - t_us / 1e6) * 1000, 1)))
    expected = sum(1 for (_, t), _s in load.changes.items() if t / 1e6 >= t0_wall + warmup_s)
    return {
        "bench": "alert-latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_average_1m_start_end": [load_at_start, round(os.getloadavg()[0], 2)],
        "note": NOTE,
        "load": {
            "assets": assets,
            "tags_per_asset": tags,
            "scan_rate_hz": rate_hz,
            "offered_samples_per_s": offered,
            "sent_samples_per_s": round(load.sent_samples / sent_s, 1) if sent_s else 0.0,
            "generator_behind_ticks": load.behind_ticks,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "rule": f"threshold {ALERT_TAG} above {limit:g}, no minimum duration",
            "trip_fraction_of_frames": round(schedule.fraction(), 4),
            "stages": ["kpi windows", "oee", "alert rules", "anomaly"],
        },
        "latency_ms_sample_to_alert": quantiles_ms(latencies),
        "slowest_alerts_s_since_start_and_ms": sorted(timeline, key=lambda x: -x[1])[:15],
        "kpi_window_s": run.raw["pipeline"]["windows"]["kpi_window_s"],
        "target_p99_ms": 1000,
        "alerts": {
            "received": len(listener.received),
            "matched_to_a_sent_state_change": matched,
            "unmatched": unmatched,
            "state_changes_sent_after_warmup": expected,
            "measured": len(latencies),
            "missing_after_warmup": expected - len(latencies),
        },
        "worker": {
            "cpu_percent": round(100 * cpu / sent_s, 1) if sent_s else 0.0,
            "rss_mb_max": round(rss_max / 2**20, 1),
            "samples_in": counts.get("samples_in", 0),
            "alerts_raised": counts.get("alerts_raised", 0),
        },
    }


def render(result: dict[str, Any]) -> str:
    lat = result["latency_ms_sample_to_alert"]
    al = result["alerts"]
    return (
        f"sample -> alert ms  p50 {lat.get('p50', 0):,.0f}  p95 {lat.get('p95', 0):,.0f}  p99 {lat.get('p99', 0):,.0f}"
        f"  max {lat.get('max', 0):,.0f}  (n {lat.get('n', 0)}; received {al['received']}, unmatched "
        f"{al['unmatched']}) at {result['load']['sent_samples_per_s']:,.0f} samples/s; worker cpu "
        f"{result['worker']['cpu_percent']}%"
    )
