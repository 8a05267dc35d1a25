"""`plantstream bench worker`: how many samples/s one Faust worker processes, with everything on.

The readings topic is filled first (a backlog of synthetic frames, see plantstream/simulators/synthetic.py),
then one worker is started and drains it: statistics windows, OEE, alert rules and anomaly scoring
all run, and every output record is produced to Kafka. The drain rate is the most the worker can
keep up with; measuring it on a backlog keeps the load generator and the storage sink from
competing for the same two cores while the worker is measured. The broker runs on the same box.

With `peer="quix"` the same backlog is drained, in turn and `repeats` times (the order rotating each
round), by the worker with every stage, the worker with KPI windows only (no machine-state or counter
roles, anomaly model off, no alert rules) and the Quix Streams reference app (plantstream/bench/peer.py);
the result holds each run, the medians, the ratios to the peer's median, and the field-by-field
comparison of the peer's KPI windows with ours.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer

import schemas
from plantstream.bench import peer
from plantstream.bench.common import BenchRun, machine, open_run, proc_usage, run_pipeline_section
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
        value = codec.encode_columns(**plant.frame_columns(a, t0_us + scan * step_us))
        while True:
            try:
                producer.produce(topic, key=plant.assets[a].encode(), value=value)
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


def _kpi_only(raw: dict[str, Any]) -> dict[str, Any]:
    """The bench config with only the KPI windows stage doing work: no tag roles (no OEE), no anomaly
    model, no alert rules."""
    out = copy.deepcopy(raw)
    for device in out["devices"]:
        for tag in device["tags"]:
            tag.pop("role", None)
    for asset in out["plant"]["assets"]:
        asset["anomaly"] = {"model": "off"}
    out["pipeline"]["alerts"] = []
    return out


def _steady(flushes: list[tuple[float, int]], total: int, span: float) -> dict[str, float]:
    """Rates from (flush time, samples so far): between the first and the last flush inside the drain."""
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(flushes) if b[0] > a[0] and b[1] < total]
    # the last flush before the backlog was done: the one after it may come up to a second after the end
    inside = [f for f in flushes if f[1] < total] or flushes
    first, last = (inside[0], inside[-1]) if inside else ((0.0, 0), (0.0, 0))
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0
    return {
        # counts and times as the process flushed them (each second): the bench's own polling would
        # quantise a 20 s drain by up to 1.5 s, and its first sighting includes the start-up
        "overall": round(steady, 1) if steady else (round(total / span, 1) if span else 0.0),
        "overall_incl_startup": round(total / span, 1) if span else 0.0,
        "median_per_second": round(statistics.median(rates), 1) if rates else 0.0,
    }


def _watch(
    pid: int,
    total: int,
    progress: Callable[[], dict[str, Any]],
    alive: Callable[[], bool],
    log: Path,
    timeout_s: float,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Follow a draining process until it has counted `total` samples: rates, CPU, RSS."""
    series: list[tuple[float, int]] = []
    flushes: list[tuple[float, int]] = []  # (process's flush time, samples so far)
    spy: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    cpu_first = cpu_last = 0.0
    rss_max = 0
    t_first: float | None = None
    try:
        while time.monotonic() - t0 < timeout_s:
            time.sleep(0.5)
            snap = progress()
            done = snap.get("samples_in", 0)
            now = time.monotonic()
            if done and snap.get("updated") and (not flushes or flushes[-1][0] != snap["updated"]):
                flushes.append((snap["updated"], done))
            cpu, rss = proc_usage(pid)
            rss_max = max(rss_max, rss)
            if done and t_first is None:
                t_first, cpu_first = now, cpu
                if profile_to is not None:
                    spy = _profile(pid, 20, profile_to)
            if t_first is not None:
                series.append((round(now - t_first, 2), done))
                cpu_last = cpu
            if done >= total:
                break
            if not alive():
                raise RuntimeError(f"the drained process exited early; see {log}")
    finally:
        if spy:
            spy.wait(60)
    if not series or series[-1][1] < total:
        raise RuntimeError(
            f"{series[-1][1] if series else 0:,} of {total:,} samples processed within {timeout_s:.0f}s; see {log}"
        )
    span = series[-1][0]
    return {
        "samples_per_s": _steady(flushes, total, span),
        "drain_s": span,
        "cpu_percent": round(100 * (cpu_last - cpu_first) / span, 1) if span else 0.0,
        "rss_mb_max": round(rss_max / 2**20, 1),
        "profile": str(profile_to) if spy else None,
    }


def _progress(state_dir: Path) -> dict[str, Any]:
    snap = runstats.read_all(state_dir).get("processor", {})
    return {"updated": snap.get("updated"), "samples_in": snap.get("counts", {}).get("samples_in", 0)}


def _drain_worker(
    run: BenchRun, raw: dict[str, Any], name: str, total: int, profile: bool, timeout_s: float
) -> dict[str, Any]:
    """One worker, in a state folder and consumer group of its own, draining the backlog from the start."""
    where = run.run_dir / name
    where.mkdir()
    raw = {
        **raw,
        "pipeline": {**raw["pipeline"], "group_id": f"{raw['pipeline']['group_id']}-{name}", "state_dir": str(where)},
    }
    config = where / "bench.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    run.orch.config_path = str(config)
    worker = run.orch.spawn(f"processor-{name}", "process", env={"PLANTSTREAM_PIPELINE__STATE_DIR": str(where)})
    pid = worker.proc.pid if worker.proc else 0
    try:
        watched = _watch(
            pid,
            total,
            lambda: _progress(where),
            worker.alive,
            worker.log,
            timeout_s,
            where / "worker-profile.speedscope.json" if profile else None,
        )
    finally:
        counts = runstats.read_all(where).get("processor", {}).get("counts", {})
        worker.stop(30)
    watched["outputs"] = {
        k: counts.get(k, 0)
        for k in ("kpi_windows", "oee_windows", "anomaly_scores", "alerts_raised", "dead_letters", "samples_late")
    }
    return watched


def _drain_peer(
    run: BenchRun, python: Path, name: str, total: int, window_ms: int, grace_ms: int, timeout_s: float
) -> dict[str, Any]:
    where = run.run_dir / name
    output = run.settings.topic(f"bench.quix.{name}")
    proc, progress, log = peer.start_peer(
        python,
        run.settings,
        where,
        input_topic=run.settings.topic(topics.READINGS),
        output_topic=output,
        group=f"{run.settings.pipeline.group_id}-{name}",
        window_ms=window_ms,
        grace_ms=grace_ms,
    )
    try:
        watched = _watch(
            proc.pid, total, lambda: peer.read_progress(progress), lambda: proc.poll() is None, log, timeout_s
        )
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    watched["output_topic"] = output
    return watched


def run_worker_bench(
    settings: Settings,
    *,
    assets: int,
    tags: int,
    frames: int,
    rate_hz: float,
    profile: bool,
    peer_name: str | None = None,
    repeats: int = 1,
    timeout_s: float = 600,
) -> dict[str, Any]:
    plant = SyntheticPlant(assets, tags, rate_hz)
    window_s, grace_s = 10, 2

    def build(bootstrap: str, url: str, run_dir: Path) -> dict[str, Any]:
        return {
            **plant.config(),
            "pipeline": {
                **run_pipeline_section("benchw", bootstrap, url, run_dir),
                "windows": {"kpi_window_s": window_s, "grace_s": grace_s},
                "alerts": plant.alert_rules(),
            },
        }

    python = peer.peer_python(say) if peer_name else None
    run = open_run(settings, "worker", build)
    total_samples = frames * tags
    t0_us = 1_767_225_600_000_000
    variants: list[tuple[str, dict[str, Any] | None]] = [("all", run.raw)]
    if peer_name:
        variants += [("kpi", _kpi_only(run.raw)), (peer_name, None)]
    runs: list[dict[str, Any]] = []
    try:
        say(f"bench worker: filling a backlog of {frames:,} frames = {total_samples:,} samples ({assets} assets)")
        t_fill = time.monotonic()
        fill_backlog(run.settings, plant, frames, t0_us=t0_us)
        say(f"bench worker: backlog written in {time.monotonic() - t_fill:.1f}s")
        for r in range(repeats):
            for i in range(len(variants)):
                variant, raw = variants[(i + r) % len(variants)]  # interleaved: the order rotates each round
                name = f"{variant}-{r + 1}"
                say(f"bench worker: run {name} (load average {os.getloadavg()[0]:.2f})")
                load = os.getloadavg()[0]
                if raw is None:
                    assert python is not None
                    res = _drain_peer(run, python, name, total_samples, window_s * 1000, grace_s * 1000, timeout_s)
                else:
                    res = _drain_worker(
                        run, raw, name, total_samples, profile and r == 0 and variant == "all", timeout_s
                    )
                runs.append({"variant": variant, "round": r + 1, "load_average_1m": round(load, 2), **res})
                say(
                    f"bench worker: {name}: {res['samples_per_s']['overall']:,.0f} samples/s, cpu {res['cpu_percent']}%"
                )
        check = _check_windows(run, plant, runs, frames, window_s, grace_s, t0_us) if peer_name else None
    finally:
        run.close()
    return _result(run, plant, frames, tags, runs, peer_name, check)


def _check_windows(
    run: BenchRun,
    plant: SyntheticPlant,
    runs: list[dict[str, Any]],
    frames: int,
    window_s: int,
    grace_s: int,
    t0_us: int,
) -> dict[str, Any]:
    """Every window of every peer run against ours (all our runs wrote to the one KPI topic)."""
    decoder = kafka_clients.registry(run.settings).decoder(schemas.KPI_WINDOW)
    ours, disagree = peer.windows_of_kpi_topic(run.settings, run.settings.topic(topics.KPI), decoder.decode)
    # the newest scan of each asset (round robin: asset a gets frames a, a + n, ...): windows ending by
    # then minus grace close by the watermark in both systems
    n = len(plant.assets)
    step_us = int(1e6 / plant.rate_hz)
    last_scan = {plant.assets[a]: t0_us + ((frames - 1 - a) // n) * step_us for a in range(min(n, frames))}

    def closable(k: peer.WindowKey) -> bool:
        return k[3] <= last_scan[k[0]] - grace_s * 1_000_000

    checks = {}
    for r in runs:
        if "output_topic" in r:
            theirs = peer.windows_of_peer_topic(run.settings, r.pop("output_topic"))
            checks[f"{r['variant']}-{r['round']}"] = peer.compare_windows(ours, theirs, closable)
    return {
        "our_runs_disagreeing_copies": disagree,
        "per_peer_run": checks,
        "equal": all(c["equal"] for c in checks.values()) and not disagree,
    }


def _result(
    run: BenchRun,
    plant: SyntheticPlant,
    frames: int,
    tags: int,
    runs: list[dict[str, Any]],
    peer_name: str | None,
    check: dict[str, Any] | None,
) -> dict[str, Any]:
    def median(variant: str) -> float:
        rates = [r["samples_per_s"]["overall"] for r in runs if r["variant"] == variant]
        return round(statistics.median(rates), 1) if rates else 0.0

    main = [r for r in runs if r["variant"] == "all"]
    best = sorted(main, key=lambda r: r["samples_per_s"]["overall"])[len(main) // 2]  # the median run
    out: dict[str, Any] = {
        "bench": "worker",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_average_1m_at_start": [r["load_average_1m"] for r in runs],
        "load": {
            "assets": len(plant.assets),
            "tags_per_asset": tags,
            "frames": frames,
            "samples": frames * tags,
            "scan_rate_hz_event_time": plant.rate_hz,
            "stages": ["kpi windows", "oee", "alert rules", "anomaly"],
        },
        # the median run of the worker with every stage (the figures of a bench without --peer)
        "samples_per_s": best["samples_per_s"],
        "drain_s": best["drain_s"],
        "worker_cpu_percent": best["cpu_percent"],
        "worker_rss_mb_max": best["rss_mb_max"],
        "outputs": best["outputs"],
        "profile": next((r["profile"] for r in runs if r.get("profile")), None),
        "pid_note": f"cpus {os.cpu_count()}",
        "runs": runs,
    }
    if peer_name:
        peer_rate = median(peer_name)
        out["peer"] = {
            "name": peer_name,
            "requirements": list(peer.PEER_REQUIREMENTS),
            "app": "plantstream/bench/quix_peer_app.py: key = asset, tumbling event-time windows, a custom "
            "aggregator per frame computing every KpiWindow statistic",
            "median_samples_per_s": peer_rate,
        }
        out["median_samples_per_s"] = {"all_stages": median("all"), "kpi_only": median("kpi"), peer_name: peer_rate}
        out["ratio_to_peer"] = {
            "all_stages": round(median("all") / peer_rate, 3) if peer_rate else None,
            "kpi_only": round(median("kpi") / peer_rate, 3) if peer_rate else None,
        }
        out["windows_check"] = check
    return out


def render(result: dict[str, Any]) -> str:
    r = result["samples_per_s"]
    lines = [
        f"worker drained {result['load']['samples']:,} samples in {result['drain_s']:.1f}s: "
        f"{r['overall']:,.0f} samples/s overall, median {r['median_per_second']:,.0f}; "
        f"cpu {result['worker_cpu_percent']}%, rss max {result['worker_rss_mb_max']} MB; outputs {result['outputs']}"
    ]
    if "peer" in result:
        m, q = result["median_samples_per_s"], result["ratio_to_peer"]
        check = result["windows_check"]
        lines.append(
            f"medians: all stages {m['all_stages']:,.0f}, kpi only {m['kpi_only']:,.0f}, "
            f"{result['peer']['name']} {result['peer']['median_samples_per_s']:,.0f} samples/s; "
            f"ratio to the peer: all stages {q['all_stages']}x, kpi only {q['kpi_only']}x; "
            f"windows equal: {check['equal']}"
        )
        for name, c in check["per_peer_run"].items():
            lines.append(
                f"  {name}: {c['compared']:,} windows compared, {c['bit_identical']:,} bit-identical, "
                f"{c['equal_within_tolerance']:,} within tolerance, {c['mismatched']} mismatched, "
                f"{c['closable_windows_not_in_peer']} of ours missing in the peer, "
                f"{c['peer_windows_not_in_ours']} of the peer's missing in ours"
            )
    return "\n".join(lines)
