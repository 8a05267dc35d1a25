"""Fault-test plumbing for the 3-node cluster: the launcher's cluster on free ports, `plantstream up` on it
with 2 workers and 2 storage sinks writing one PostgreSQL database, and a meter of pauses in stored data.

The cluster belongs to the test module (started once, left in sync after every test); each run gets its own
topic prefix, consumer groups, state folder and database.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from plantstream.core import runstats, topics
from plantstream.core.config import DEMO_CONFIG, Settings
from plantstream.stack import kafka, kafka_health
from plantstream.stack.process import port_free
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.faults.checker import SOAK, Report, check_run
from tests.helpers import wait_for

RESULTS_FILE = os.environ.get("PLANTSTREAM_CLUSTER_RESULTS")  # read at import: clean_env hides it later
BROKERS = 3


def cluster_settings(state_dir: Path) -> Settings:
    """Launcher settings of a 3-node cluster whose six ports (base + 100 * n) are free now."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["pipeline"]["state_dir"] = str(state_dir)
    for _ in range(50):
        broker, controller = free_port(), free_port()
        ports = [p + kafka.NODE_PORT_STEP * i for p in (broker, controller) for i in range(BROKERS)]
        if len(set(ports)) == len(ports) and all(p < 65536 and port_free("127.0.0.1", p) for p in ports):
            raw["pipeline"]["kafka"].update(brokers=BROKERS, broker_port=broker, controller_port=controller)
            return Settings(**raw)
    raise AssertionError("no free set of cluster ports found")


@dataclass
class Cluster:
    settings: Settings  # the launcher's: state folder, ports, brokers: 3

    @property
    def bootstrap(self) -> str:
        b = kafka.status(self.settings).bootstrap
        assert b
        return b

    def pid(self, node_id: int) -> int:
        pid = kafka.status(self.settings).nodes[node_id - 1].pid
        assert pid, f"node {node_id} is not running"
        return pid

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (the test process started it, so it is reaped here)."""
        pid = self.pid(node_id)
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        wait_for(lambda: not kafka.status(self.settings).nodes[node_id - 1].running, 15, 0.1, f"node {node_id} gone")

    def stop(self, node_id: int) -> None:
        """Controlled shutdown of one node."""
        assert kafka.stop_node(self.settings, node_id)

    def restart(self) -> float:
        """Start the nodes that are down; seconds until every partition is in sync again."""
        kafka.start(self.settings)
        return kafka_health.wait_in_sync(self.settings, timeout=180)

    def leader(self, topic: str, partition: int) -> int:
        return kafka_health.leader_of(self.settings, topic, partition)

    def controller(self) -> tuple[int | None, int | None]:
        return kafka_health.controller(self.settings)

    def wait_new_leader(self, topic: str, partition: int, old: int, timeout: float = 60.0) -> float:
        t0 = time.monotonic()

        def moved() -> bool:
            try:
                return self.leader(topic, partition) not in (old, -1)
            except Exception:  # metadata not answering for a moment
                return False

        wait_for(moved, timeout, 0.2, f"a new leader of {topic}[{partition}] (was node {old})")
        return time.monotonic() - t0


def start_cluster(state_dir: Path) -> Cluster:
    c = Cluster(cluster_settings(state_dir))
    kafka.start(c.settings, timeout=180)
    kafka_health.wait_in_sync(c.settings, timeout=120)
    return c


class PauseMeter:
    """Polls the store every 0.25 s for each device's highest stored sequence number and records when it
    moved on; a pause is the time between two moves of one device (so one sink or partition that stalls
    shows, even while the others write)."""

    def __init__(self, dsn: str, interval: float = 0.25) -> None:
        self.dsn = dsn
        self.interval = interval
        self.moves: dict[str, list[float]] = {}
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pause-meter", daemon=True)

    def __enter__(self) -> PauseMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(self.interval):
            try:
                conn = conn or psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                rows = conn.execute("SELECT device, MAX(seq) FROM frames GROUP BY device").fetchall()
            except psycopg.Error:  # the sink has not created the tables yet
                conn = None
                continue
            now = time.monotonic()
            for device, seq in rows:
                if seq != self._last.get(device):
                    self._last[device] = seq
                    self.moves.setdefault(device, []).append(now)

    def longest(self, since: float, until: float | None = None) -> tuple[float, str, float]:
        """The longest pause of any device ending within [since, until] (a pause still open at `until`
        counts): (seconds, device, monotonic time it began)."""
        until = until or time.monotonic()
        worst = (0.0, "", since)
        for device, moves in self.moves.items():
            inside = [t for t in moves if since <= t <= until]
            before = [t for t in moves if t < since]
            points = [*([before[-1]] if before else []), *inside, until]
            for a, b in itertools.pairwise(points):
                if b - a > worst[0]:
                    worst = (b - a, device, a)
        return round(worst[0], 2), worst[1], worst[2]


@dataclass
class UpRun:
    """`plantstream up --workers 2 --sinks 2` on the cluster, the Modbus demo devices polled every 0.25 s."""

    settings: Settings
    config: Path
    dsn: str
    out: Path
    err: Path
    proc: subprocess.Popen[bytes]
    meter: PauseMeter
    started: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def counts(self, component: str) -> dict[str, Any]:
        return dict(runstats.read_all(self.settings.pipeline.state_dir).get(component, {}))

    def acked(self) -> int:
        return int(self.counts("producer-modbus").get("counts", {}).get("frames_acked", 0))

    def pid_of(self, component: str) -> int:
        pid = self.counts(component).get("pid")
        assert pid, f"{component} has written no counters yet"
        return int(pid)

    def wait_acked(self, more: int, timeout: float, what: str) -> None:
        before = self.acked()
        wait_for(lambda: self.acked() >= before + more, timeout, 0.2, f"{more} more frames acked: {what}")
        assert self.proc.poll() is None, self.err.read_text()[-3000:]

    def mark(self, what: str, began: float, **figures: Any) -> None:
        """Record a fault that began at monotonic time `began`, with the longest pause in stored data since."""
        pause, device, at = self.meter.longest(began)
        self.events.append(
            {
                "t": round(began - self.started, 1),
                "event": what,
                "longest_pause_s": pause,
                "paused_device": device,
                "pause_began_s_after_fault": round(at - began, 1),
                **figures,
            }
        )

    def kill_component(self, component: str) -> int:
        pid = self.pid_of(component)
        os.kill(pid, signal.SIGKILL)
        return pid

    def finish(self, scenario: str, fault_from: float, **extra: Any) -> Report:
        """Stop `up` (producer first, then the drain), then check everything against the readings topic."""
        longest, device, _ = self.meter.longest(fault_from)
        self.meter.__exit__()
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(180) == 0, self.err.read_text()[-4000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        summary = json.loads(self.out.read_text().strip().splitlines()[-1])
        report = check_run(
            scenario,
            self.settings,
            summary["frames_produced"],
            self.dsn,
            kpis=True,
            kpis_complete=True,
            oee=True,
            alerts=True,
            producer_acked=summary["frames_acked"],
            producer_failed=summary["frames_failed"],
            longest_pause_s=longest,
            longest_pause_device=device,
            duration_s=summary["duration_s"],
            **extra,
        )
        assert summary["frames_failed"] == 0, summary
        assert report.acked >= summary["frames_acked"] > 0, (report.figures(), summary)
        return report


def start_up(tmp_path: Path, stack: Stack, cluster: Cluster, dsn: str, duration: float) -> UpRun:
    raw = plant_raw(
        tmp_path,
        stack,
        # no idle close while `up` drains at the end: the recomputation closes windows by event time only
        windows={"kpi_window_s": 5, "grace_s": 1, "idle_after_s": 3600},
        storage={"kind": "postgres", "postgres": {"dsn": dsn}, "sinks": 2},
        metrics={"enabled": False},
        dashboard={"port": free_port()},
        workers=2,
    )
    raw["pipeline"]["kafka"]["bootstrap"] = cluster.bootstrap
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", str(duration)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    run = UpRun(settings, config, dsn, out, err, proc, PauseMeter(dsn).__enter__())
    try:
        run.wait_acked(20, 120, "the pipeline's first frames")
        # both workers and both sinks are up and have written their counters
        wait_for(
            lambda: all(run.counts(c) for c in ("processor", "processor-2", "sink-storage", "sink-storage-2")),
            60,
            0.3,
            "two workers and two sinks running",
        )
    except BaseException:
        run.meter.__exit__()
        proc.kill()
        proc.wait()
        raise
    return run


# --- the faults ---------------------------------------------------------------------------------------------

FRAMES_AFTER_FAULT = 16  # acked after each fault: one second of the four devices at 4 Hz
Fault = Callable[[UpRun, Cluster], None]


def readings(run: UpRun) -> str:
    return run.settings.topic(topics.READINGS)


def leader_sigkill(run: UpRun, cluster: Cluster) -> None:
    """SIGKILL the leader of readings partition 0; writes go on once a new leader is elected; restart it."""
    old = cluster.leader(readings(run), 0)
    began = time.monotonic()
    cluster.kill(old)
    elected = cluster.wait_new_leader(readings(run), 0, old)
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after SIGKILL of leader node {old}")
    in_sync = cluster.restart()
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after leader node {old} is back")
    run.mark("leader-sigkill", began, node=old, new_leader_s=round(elected, 1), in_sync_s=round(in_sync, 1))


def broker_stopped(run: UpRun, cluster: Cluster, seconds: float) -> None:
    """Stop one broker (the leader of partition 1) for `seconds`: partitions under-replicated, writes go on
    with min.insync.replicas 2 of the other two; then start it and wait until every partition is in sync."""
    node = cluster.leader(readings(run), 1)
    t0 = time.monotonic()
    began = t0
    cluster.stop(node)
    wait_for(
        lambda: bool(kafka_health.health(cluster.settings).under_replicated),
        30,
        0.3,
        "under-replicated partitions after a broker stopped",
    )
    urp = len(kafka_health.health(cluster.settings).under_replicated)
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"with node {node} stopped")
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"with node {node} stopped for {seconds:.0f}s")
    in_sync = cluster.restart()
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after node {node} is back")
    run.mark(
        "broker-stopped", began, node=node, stopped_s=round(seconds), under_replicated=urp, in_sync_s=round(in_sync, 1)
    )


def controller_sigkill(run: UpRun, cluster: Cluster) -> None:
    """SIGKILL the active controller; the two other voters elect a new one; restart it."""
    old, epoch = cluster.controller()
    assert old is not None and epoch is not None, "no active controller found"
    t0 = time.monotonic()
    began = t0
    cluster.kill(old)

    def elected() -> bool:
        new, e = cluster.controller()
        return new is not None and new != old and e is not None and e > epoch

    wait_for(elected, 60, 0.2, f"a new active controller after SIGKILL of node {old}")
    took = time.monotonic() - t0
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after SIGKILL of controller node {old}")
    in_sync = cluster.restart()
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after controller node {old} is back")
    run.mark(
        "controller-sigkill",
        began,
        node=old,
        new_controller=cluster.controller()[0],
        election_s=round(took, 1),
        in_sync_s=round(in_sync, 1),
    )


def worker_and_sink_sigkill(run: UpRun, cluster: Cluster) -> None:
    """SIGKILL a worker and a sink while the leader of readings partition 0 is SIGKILLed; `up` restarts them."""
    old = cluster.leader(readings(run), 0)
    began = time.monotonic()
    cluster.kill(old)
    killed = {c: run.kill_component(c) for c in ("processor-2", "sink-storage-2")}
    cluster.wait_new_leader(readings(run), 0, old)

    def restarted() -> bool:
        return all(run.counts(c).get("pid") not in (None, pid) for c, pid in killed.items())

    wait_for(restarted, 90, 0.3, "up to restart the killed worker and sink")
    run.wait_acked(FRAMES_AFTER_FAULT, 90, "after the worker, the sink and a leader were killed")
    in_sync = cluster.restart()
    run.wait_acked(FRAMES_AFTER_FAULT, 90, f"after node {old} is back")
    run.mark("worker-sink-sigkill-during-leader-change", began, node=old, in_sync_s=round(in_sync, 1))


# --- figures ------------------------------------------------------------------------------------------------


def record(report: Report, scenario: str) -> None:
    """Add one run's figures to PLANTSTREAM_CLUSTER_RESULTS (if set), with the median and max of the longest
    pause in stored data per scenario over the runs recorded so far."""
    if not RESULTS_FILE:
        return
    from plantstream.bench.common import machine

    path = Path(RESULTS_FILE)
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"runs": []}
    doc["machine"] = machine()
    doc["soak"] = SOAK
    doc["runs"].append({**report.figures(), "scenario": scenario, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ")})
    summary: dict[str, Any] = {}
    for name in sorted({r["scenario"] for r in doc["runs"]}):
        runs = [r for r in doc["runs"] if r["scenario"] == name]
        pauses = [r["longest_pause_s"] for r in runs]
        summary[name] = {
            "runs": len(runs),
            "longest_pause_s_median": round(statistics.median(pauses), 2),
            "longest_pause_s_max": max(pauses),
            "lost": sum(r["lost"] for r in runs),
            "duplicated": sum(r["duplicated"] for r in runs),
            "kpi_windows_checked": sum(r.get("kpi_expected", 0) for r in runs),
            "oee_windows_checked": sum(r.get("oee_expected", 0) for r in runs),
            "kpi_or_oee_differences": sum(
                r.get(k, 0)
                for r in runs
                for k in (
                    "kpi_missing",
                    "kpi_mismatched",
                    "kpi_unexpected",
                    "oee_missing",
                    "oee_mismatched",
                    "oee_unexpected",
                )
            ),
        }
    doc["summary"] = summary
    per_fault: dict[str, list[float]] = {}
    for r in doc["runs"]:
        for e in r.get("events", []):
            per_fault.setdefault(e["event"], []).append(e["longest_pause_s"])
    doc["pause_per_fault"] = {
        name: {
            "faults": len(ps),
            "longest_pause_s_median": round(statistics.median(ps), 2),
            "longest_pause_s_max": max(ps),
        }
        for name, ps in sorted(per_fault.items())
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
