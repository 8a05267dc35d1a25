"""`plantstream bench pipeline`: the pipeline on a synthetic plant sized by flags, measured per stage.

The load generator produces ReadingFrames directly (no device I/O), so the figures are those of
Kafka, the processor and the storage sink. Reported: sustained samples/s per stage after a warm-up,
end-to-end latency quantiles (scan time to durably stored), lag over time, CPU and RSS per process.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import schemas
from plantstream.bench.common import machine, open_run, proc_usage, run_pipeline_section
from plantstream.core import kafka_clients, runstats, topics
from plantstream.core.config import Settings
from plantstream.simulators.synthetic import SyntheticPlant
from plantstream.stack import kafka as local_kafka
from plantstream.stack import registry as local_registry
from plantstream.up import say


class LoadGenerator:
    """Produces the synthetic plant's frames in real time: every asset scanned `rate_hz` times a second."""

    def __init__(self, settings: Settings, plant: SyntheticPlant) -> None:
        self.codec = kafka_clients.registry(settings).codec(
            topics.subject(settings, topics.READINGS), schemas.READING_FRAME
        )
        self.topic = settings.topic(topics.READINGS)
        self.plant = plant
        self.producer = Producer(kafka_clients.producer_config(settings, "bench", **{"linger.ms": 50}))
        self.sent_frames = 0
        self.acked_frames = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acked_frames += 1

    def _run(self) -> None:
        interval = 1.0 / self.plant.rate_hz
        next_tick = time.monotonic()
        while not self.stop.is_set():
            now_us = int(time.time() * 1e6)
            for i, asset in enumerate(self.plant.assets):
                # built and encoded as columns: no Python step per sample (plantstream/core/frame_codec.py)
                value = self.codec.encode_columns(**self.plant.frame_columns(i, now_us))
                while True:
                    try:
                        self.producer.produce(self.topic, key=asset.encode(), value=value, on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.sent_frames += 1
                if i % 200 == 0:
                    self.producer.poll(0)
            self.producer.poll(0)
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()  # behind: produce as fast as possible, do not burst later
        self.producer.flush(60)


def _bench_config(settings: Settings, bootstrap: str, url: str, plant: SyntheticPlant, run_dir: Path) -> dict[str, Any]:
    return {
        **plant.config(),
        "pipeline": {
            **run_pipeline_section("bench", bootstrap, url, run_dir, settings.pipeline.kafka.partitions),
            "alerts": plant.alert_rules(),
            "windows": {"kpi_window_s": 10, "grace_s": 2},
        },
    }


def run_pipeline_bench(
    settings: Settings, *, assets: int, tags: int, rate_hz: float, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    plant = SyntheticPlant(assets, tags, rate_hz)
    run = open_run(
        settings, "pipeline", lambda bootstrap, url, run_dir: _bench_config(settings, bootstrap, url, plant, run_dir)
    )
    orch, bench_settings, run_dir = run.orch, run.settings, run.run_dir
    processor = run.spawn("processor", "process")
    sink = run.spawn("sink-storage", "sink", "storage")
    gen = LoadGenerator(bench_settings, plant)
    time.sleep(3)  # let both consumers join their groups before the load starts
    pids = {
        "processor": processor.proc.pid if processor.proc else 0,
        "sink-storage": sink.proc.pid if sink.proc else 0,
        "bench-producer": os.getpid(),
    }
    k, r = local_kafka.status(settings), local_registry.status(settings)
    for node in k.nodes:  # the local broker, or each node of a local cluster
        if node.pid:
            pids["kafka" if len(k.nodes) == 1 else f"kafka-{node.node_id}"] = node.pid
    if r.pid:
        pids["registry"] = r.pid
    say(
        f"bench: {assets} assets x {tags} tags at {rate_hz} Hz = {assets * tags * rate_hz:,.0f} samples/s offered, "
        f"{duration_s:.0f}s (warm-up {warmup_s:.0f}s)"
    )
    series: list[dict[str, Any]] = []
    t0 = time.monotonic()
    load_before = os.getloadavg()  # others' work on a shared machine shows here
    gen.thread.start()
    cpu0 = {n: proc_usage(p)[0] for n, p in pids.items()}
    mark: dict[str, Any] | None = None
    try:
        while time.monotonic() - t0 < duration_s:
            time.sleep(1.0)
            counts = {
                f"{c}.{k}": v
                for c, snap in runstats.read_all(run_dir).items()
                for k, v in snap.get("counts", {}).items()
            }
            point = {
                "t": round(time.monotonic() - t0, 1),
                "produced_samples": gen.sent_frames * tags,
                "processed_samples": counts.get("processor.samples_in", 0),
                "stored_samples": counts.get("sink-storage.samples_stored", 0),
                "rss_mb": {n: round(proc_usage(p)[1] / 2**20, 1) for n, p in pids.items()},
            }
            point["lag_samples"] = point["produced_samples"] - point["stored_samples"]
            point["processor_lag_samples"] = point["produced_samples"] - point["processed_samples"]
            series.append(point)
            if mark is None and point["t"] >= warmup_s:
                mark = {**point, "cpu": {n: proc_usage(p)[0] for n, p in pids.items()}}
            say(
                f"[{point['t']:5.0f}s] produced {point['produced_samples']:,} processed {point['processed_samples']:,} "
                f"stored {point['stored_samples']:,} lag {point['lag_samples']:,}"
            )
    finally:
        gen.stop.set()
        gen.thread.join(60)
    end = series[-1]
    cpu_end = {n: proc_usage(p)[0] for n, p in pids.items()}
    start = mark or series[0]
    span = end["t"] - start["t"]
    start_cpu = start.get("cpu", cpu0)

    def rate(key: str) -> float:
        return round((end[key] - start[key]) / span, 1) if span > 0 else 0.0

    # the bench's own topics and groups: the orchestrator's settings name the plant's
    drain_t0 = time.monotonic()
    drained = orch.drain(timeout=180, settings=bench_settings)
    drain_s = round(time.monotonic() - drain_t0, 1)
    snaps = runstats.read_all(run_dir)
    latency = snaps.get("sink-storage", {}).get("quantiles", {}).get("e2e_latency_ms", {})
    processor.stop(30)
    sink.stop(30)
    rep = topics.cluster_replication(bench_settings, AdminClient(kafka_clients.admin_config(bench_settings)))
    run.close()
    load_after = os.getloadavg()
    offered = assets * tags * rate_hz
    return {
        "bench": "pipeline",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "load_avg_1min_before_after": [round(x[0], 2) for x in (load_before, load_after)]},
        "kafka": {
            "brokers": len(k.nodes) if not settings.pipeline.kafka.bootstrap else None,
            "replication_factor": rep.factor,
            "min_insync_replicas": rep.min_insync,
            "producer_acks": "all",
        },
        "load": {
            "assets": assets,
            "tags_per_asset": tags,
            "scan_rate_hz": rate_hz,
            "offered_samples_per_s": offered,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "frame_samples": tags,
        },
        "sustained_samples_per_s": {
            "produced": rate("produced_samples"),
            "processed": rate("processed_samples"),
            "stored": rate("stored_samples"),
        },
        "e2e_latency_ms_scan_to_stored": latency,
        # produced - stored (the storage sink's lag) and produced - processed (the worker's)
        "lag_samples": {
            "max": max(p["lag_samples"] for p in series),
            "end": end["lag_samples"],
            "series": [(p["t"], p["lag_samples"]) for p in series],
        },
        "processor_lag_samples": {
            "max": max(p["processor_lag_samples"] for p in series),
            "end": end["processor_lag_samples"],
            "series": [(p["t"], p["processor_lag_samples"]) for p in series],
        },
        "drain": {"complete": drained, "seconds": drain_s},
        "cpu_percent": {
            n: round(100 * (cpu_end[n] - start_cpu.get(n, 0.0)) / span, 1) if span > 0 else 0.0 for n in pids
        },
        "rss_mb_max": {n: max(p["rss_mb"].get(n, 0) for p in series) for n in pids},
        "kpi_windows": snaps.get("processor", {}).get("counts", {}).get("kpi_windows", 0),
    }


def render(result: dict[str, Any]) -> str:
    r = result["sustained_samples_per_s"]
    lat = result["e2e_latency_ms_scan_to_stored"]
    k = result.get("kafka", {})
    lines = [
        f"offered {result['load']['offered_samples_per_s']:,.0f} samples/s on {result['machine']['cpus']} cpus; "
        f"Kafka: {k.get('brokers') or 'configured'} broker(s), {k.get('replication_factor')} replica(s), "
        f"min.insync.replicas {k.get('min_insync_replicas')}, acks=all",
        f"sustained samples/s  produced {r['produced']:,.0f}  processed {r['processed']:,.0f}  "
        f"stored {r['stored']:,.0f}",
        f"latency scan->stored ms  p50 {lat.get('p50', 0):,.0f}  p95 {lat.get('p95', 0):,.0f}  "
        f"p99 {lat.get('p99', 0):,.0f}",
        f"lag samples  storage sink: max {result['lag_samples']['max']:,}  end {result['lag_samples']['end']:,}"
        f"  worker: max {result['processor_lag_samples']['max']:,}  end {result['processor_lag_samples']['end']:,}",
        f"drain after the load: {'complete' if result['drain']['complete'] else 'NOT complete'} "
        f"in {result['drain']['seconds']:.1f} s",
        "cpu %  " + "  ".join(f"{n} {v}" for n, v in result["cpu_percent"].items()),
        "rss MB " + "  ".join(f"{n} {v}" for n, v in result["rss_mb_max"].items()),
    ]
    return "\n".join(lines)
