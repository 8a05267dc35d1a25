"""`plantstream up`: the whole pipeline on this machine, started and stopped in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from plantstream.core import consumer_lag, kafka_clients, local_stack, runstats, topics
from plantstream.core.config import Settings
from plantstream.stack import kafka as local_kafka
from plantstream.stack import mosquitto as local_mosquitto
from plantstream.stack import registry as local_registry
from plantstream.stack.process import tail


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    restarted_at: list[float] = field(default_factory=list)  # monotonic times of its restarts

    def recent_restarts(self, now: float) -> int:
        return sum(1 for t in self.restarted_at if now - t < RESTART_WINDOW_S)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"  {self.name} did not stop within {timeout:.0f}s; killing it")
            self.proc.kill()
            self.proc.wait()


# A stage that dies is started again up to this many times within RESTART_WINDOW_S (it resumes from its
# committed offsets, a producer from its store-and-forward buffer); a stage that keeps dying stops the run.
# A window, not a total: a long run outlives many broker failures, each of which may take a stage down.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0


def _counts(state_dir: str, carried: dict[str, int] | None = None) -> dict[str, int]:
    """Every component's counters, summed over its processes (`processor`, `processor-2`, ...) and over their
    earlier, restarted incarnations (`carried`)."""
    merged: dict[str, int] = dict(carried or {})
    for comp, snap in runstats.read_all(state_dir).items():
        for k, v in snap.get("counts", {}).items():
            key = f"{runstats.base_component(comp)}.{k}"
            merged[key] = merged.get(key, 0) + int(v)
    return merged


def stop_together(children: list[Child], timeout: float) -> None:
    """SIGTERM to every child at once, then wait for each: workers of one group stopped one by one would hand
    their partitions to the next one just before it stops too."""
    for c in children:
        if c.alive() and c.proc is not None:
            c.proc.send_signal(signal.SIGTERM)
    for c in children:
        c.stop(timeout)


PRODUCERS = ("producer-modbus", "producer-opcua", "producer-mqtt", "producer-sparkplug")


def _produced(c: dict[str, int], what: str) -> int:
    return sum(c.get(f"{p}.{what}", 0) for p in PRODUCERS)


def summary(state_dir: str, duration: float, carried: dict[str, int] | None = None) -> dict[str, Any]:
    c = _counts(state_dir, carried)
    return {
        "frames_produced": _produced(c, "frames_produced"),
        "frames_acked": _produced(c, "frames_acked"),
        "frames_failed": _produced(c, "frames_failed"),
        **{f"{p.removeprefix('producer-')}_frames_acked": c.get(f"{p}.frames_acked", 0) for p in PRODUCERS},
        "kpi_windows": c.get("processor.kpi_windows", 0),
        "rows_stored": c.get("sink-storage.rows_stored", 0),
        "frames_stored": c.get("sink-storage.frames_stored", 0),
        "samples_stored": c.get("sink-storage.samples_stored", 0),
        "dead_letters": c.get("processor.dead_letters", 0),
        "oee_windows": c.get("processor.oee_windows", 0),
        "anomaly_scores": c.get("processor.anomaly_scores", 0),
        "alerts_raised": c.get("processor.alerts_raised", 0),
        "duration_s": round(duration, 1),
    }


class Orchestrator:
    def __init__(self, settings: Settings, config_path: str | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.state_dir = str(Path(settings.pipeline.state_dir).expanduser().resolve())
        self.started_kafka = False
        self.started_registry = False
        self.mosquitto: local_mosquitto.Mosquitto | None = None
        self.children: list[Child] = []
        self.stopping = False
        self.carried: dict[str, int] = {}  # counters of restarted components' earlier incarnations

    def start_stack(self) -> tuple[str, str]:
        s = self.settings
        if s.pipeline.kafka.bootstrap:
            bootstrap = s.pipeline.kafka.bootstrap
            say(f"kafka: using configured broker {bootstrap}")
        else:
            was = local_kafka.status(s).running
            say(
                "kafka: starting local broker (first run fetches Apache Kafka from Maven Central)..."
                if not was
                else "kafka: local broker already running"
            )
            st = local_kafka.start(s)
            self.started_kafka = not was
            bootstrap = st.bootstrap or ""
            say(f"kafka: ready on {bootstrap}")
        if s.pipeline.registry.url:
            url = s.pipeline.registry.url
            say(f"registry: using configured {url}")
        else:
            was = local_registry.status(s).running
            say("registry: starting local Apicurio registry..." if not was else "registry: already running")
            rst = local_registry.start(s)
            self.started_registry = not was
            url = rst.url or ""
            say(f"registry: ready on {url}")
        return bootstrap, url

    def start_mosquitto(self) -> None:
        """The local MQTT broker, when mqtt/sparkplug_b devices use a broker with host null."""
        if local_mosquitto.needed(self.settings):
            self.mosquitto = local_mosquitto.for_settings(self.settings)
            self.mosquitto.start()
            say(f"mqtt: local mosquitto on 127.0.0.1:{self.mosquitto.port} (log {self.mosquitto.log_path})")

    def tls_env(self) -> dict[str, str]:
        """Children get the bootstrap address explicitly, so they must also be told the local CA to trust."""
        k = self.settings.pipeline.kafka
        if self.settings.pipeline.kafka.bootstrap or "SSL" not in k.security_protocol or k.ssl_cafile:
            return {}
        return {"PLANTSTREAM_PIPELINE__KAFKA__SSL_CAFILE": str(local_stack.local_ca(self.settings))}

    def spawn(self, name: str, *args: str, env: dict[str, str]) -> Child:
        log = Path(self.state_dir) / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        child = Child(name, list(args), None, log, dict(env))
        self._start(child)
        self.children.append(child)
        return child

    def _start(self, child: Child) -> None:
        cmd = [sys.executable, "-m", "plantstream"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        cmd += child.args
        with open(child.log, "ab") as out:
            # own process group: the terminal's Ctrl-C reaches only `up`, which stops children in order
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **child.env},
                start_new_session=True,
            )
        child.proc = proc
        say(f"{child.name}: started (pid {proc.pid}, log {child.log})")

    def restart(self, child: Child) -> None:
        """Start a dead child again; its counters so far are carried over into the run's figures."""
        snap = runstats.read_all(self.state_dir).get(child.name, {})
        for k, v in snap.get("counts", {}).items():
            key = f"{runstats.base_component(child.name)}.{k}"
            self.carried[key] = self.carried.get(key, 0) + int(v)
        (Path(self.state_dir) / "run" / f"{child.name}.json").unlink(missing_ok=True)
        child.restarts += 1
        now = time.monotonic()
        child.restarted_at.append(now)
        # a broker or device that is down gets a moment to come back
        time.sleep(min(child.recent_restarts(now), 5))
        self._start(child)

    def run(self, duration: float | None) -> dict[str, Any]:
        t0 = time.monotonic()
        runstats.clear(self.state_dir)
        self.start_mosquitto()  # first: a port clash fails fast, before Kafka is up
        try:
            bootstrap, url = self.start_stack()
        except BaseException:
            if self.mosquitto is not None:
                self.mosquitto.stop()
            raise
        env = {
            **self.tls_env(),
            "KAFKA_BOOTSTRAP": bootstrap,
            "SCHEMA_REGISTRY_URL": url,
            "PLANTSTREAM_PIPELINE__STATE_DIR": self.state_dir,
        }
        os.environ.update(env)
        from confluent_kafka.admin import AdminClient

        for change in topics.apply(self.settings, AdminClient(kafka_clients.admin_config(self.settings))) or [
            "topics: up to date"
        ]:
            say(change)
        topics.register_schemas(self.settings, kafka_clients.registry(self.settings))
        p = self.settings.pipeline
        if p.workers > 1 or p.storage.sinks > 1:
            say(f"{p.workers} worker(s) and {p.storage.sinks} storage sink(s), each in its consumer group")
        sinks = [
            self.spawn(runstats.instance_name("sink-storage", i), "sink", "storage", "--instance", str(i), env=env)
            for i in range(1, p.storage.sinks + 1)
        ]
        processors = [
            self.spawn(runstats.instance_name("processor", i), "process", "--instance", str(i), env=env)
            for i in range(1, p.workers + 1)
        ]
        alert_sink = (
            self.spawn("sink-alerts", "sink", "alerts", env=env) if self.settings.pipeline.alerting.channels else None
        )
        from sinks.dashboard.server import url as dashboard_url

        dashboard = self.spawn("dashboard", "dashboard", env=env)
        token_note = " (open it once with ?token=<token>)" if self.settings.pipeline.dashboard.token else ""
        say(f"dashboard: {dashboard_url(self.settings)}{token_note}")
        simulator = self.spawn("simulator", "simulate", env=env)
        time.sleep(1.0)  # let the simulator bind before the first poll, so the log is not full of BAD reads
        producers = [
            self.spawn(f"producer-{kind}", "produce", kind, env=env)
            for kind in ("modbus", "opcua", "mqtt", "sparkplug")
            if any(d.protocol.startswith(kind) for d in self.settings.devices)
        ]
        exit_code = 0

        def on_signal(signum: int, _frame: Any) -> None:
            self.stopping = True

        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            last_print = 0.0
            prev: dict[str, Any] = {}
            while not self.stopping:
                if duration is not None and time.monotonic() - t0 >= duration:
                    break
                # the dashboard is a view, not a stage: if it dies (e.g. its port is taken) the pipeline runs on
                if dashboard.proc is not None and not dashboard.alive() and dashboard in self.children:
                    self.children.remove(dashboard)
                    code = dashboard.proc.returncode
                    say(f"dashboard exited (code {code}); the pipeline runs on. Its log:\n{tail(dashboard.log)}")
                dead = [c for c in self.children if not c.alive()]
                for c in dead:
                    code = c.proc.returncode if c.proc else "?"
                    recent = c.recent_restarts(time.monotonic())
                    if recent < MAX_RESTARTS:
                        say(
                            f"{c.name} exited unexpectedly (code {code}); restarting it ({recent + 1} of "
                            f"{MAX_RESTARTS}), it resumes where it left off (at most {MAX_RESTARTS} restarts per "
                            f"{RESTART_WINDOW_S / 60:.0f} min). Last log lines:\n{tail(c.log)}"
                        )
                        self.restart(c)
                    else:
                        say(
                            f"{c.name} exited unexpectedly (code {code}) after {MAX_RESTARTS} restarts within "
                            f"{RESTART_WINDOW_S / 60:.0f} min; stopping the pipeline. Fix the cause in its log "
                            f"{c.log}. Last log lines:\n{tail(c.log)}"
                        )
                        exit_code = 1
                if exit_code:
                    break
                if time.monotonic() - last_print >= 2.0:
                    now = summary(self.state_dir, time.monotonic() - t0, self.carried)
                    dt = time.monotonic() - last_print if last_print else 1.0
                    rate = (now["frames_acked"] - prev.get("frames_acked", 0)) / dt
                    srate = (now["samples_stored"] - prev.get("samples_stored", 0)) / dt
                    say(
                        f"[{now['duration_s']:6.1f}s] frames produced {now['frames_produced']} acked "
                        f"{now['frames_acked']} ({rate:.1f}/s) | samples stored {now['samples_stored']} "
                        f"({srate:.0f}/s) | kpi windows {now['kpi_windows']} | dead letters {now['dead_letters']}"
                    )
                    prev, last_print = now, time.monotonic()
                time.sleep(0.2)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            say("stopping: producer, simulator, then draining processor and sink...")
            for producer in producers:
                producer.stop(30)
            simulator.stop(10)
            self.drain(timeout=60)
            stop_together(processors, 30)
            stop_together(sinks, 30)
            if alert_sink is not None:
                alert_sink.stop(30)
            dashboard.stop(10)
            if self.mosquitto is not None:
                self.mosquitto.stop()
                say("mqtt: local mosquitto stopped")
            if self.started_registry:
                local_registry.stop(self.settings)
                say("registry: stopped")
            if self.started_kafka:
                local_kafka.stop(self.settings)
                say("kafka: stopped")
        result = summary(self.state_dir, time.monotonic() - t0, self.carried)
        result["exit_code"] = exit_code
        return result

    def drain(self, timeout: float, settings: Settings | None = None) -> bool:
        """Wait until the processor and the sink have consumed and committed every acknowledged frame;
        True if they did. `settings`: those the stages run with, when not the orchestrator's (a bench's
        own topics and groups)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            c = _counts(self.state_dir, self.carried)
            acked = _produced(c, "frames_acked")
            processed = c.get("processor.frames_in", 0) + c.get("processor.frames_skipped_redelivered", 0)
            # the counts are the cheap first test; after a restart they include frames seen twice, so the
            # word is the groups' committed offsets
            if (
                c.get("sink-storage.frames_stored", 0) >= acked
                and processed >= acked
                and self._committed_all(settings or self.settings)
            ):
                say(f"drain: everything processed and stored in {time.monotonic() - t0:.1f}s")
                return True
            time.sleep(0.3)
        say("drain: timed out; the processor or sink is behind (they resume from committed offsets next run)")
        return False

    def _committed_all(self, settings: Settings) -> bool:
        """The processor committed every reading (so its outputs are confirmed), then the storage sink committed
        every reading and every output: all of it is stored."""
        group = settings.pipeline.group_id
        sink_topics = (topics.READINGS, topics.KPI, topics.OEE, topics.ANOMALIES, topics.ALERTS)
        try:
            return all(
                consumer_lag.committed_lag(settings, f"{group}-{stage}", topic) == 0
                for stage, topic in [("processor", topics.READINGS), *(("sink-storage", t) for t in sink_topics)]
            )
        except KafkaException:  # broker busy or away for a moment: ask again
            return False


def up(settings: Settings, config_path: str | None, duration: float | None) -> int:
    orch = Orchestrator(settings, config_path)
    result = orch.run(duration)
    code = int(result.pop("exit_code"))
    print(json.dumps(result), flush=True)
    return code
