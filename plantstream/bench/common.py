"""What every benchmark shares: the machine it ran on, a process's CPU and RSS, and a run of its own on the
local stack (topics, schemas, a run folder with its config) that `close` tears down."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.stack import kafka as local_kafka
from plantstream.stack import registry as local_registry
from plantstream.up import Child, Orchestrator

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, RSS bytes) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError, StopIteration):
        mem = int(
            next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1]
        )
    cpu = ""
    try:
        cpu = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        cpu = cpu.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@dataclass
class BenchRun:
    """A benchmark's own run: the local stack (started unless configured), a run dir with its own
    config file, topics and schemas. `close` stops what was started for it."""

    base: Settings  # the caller's settings: they name the local stack
    orch: Orchestrator
    settings: Settings  # the run's
    raw: dict[str, Any]
    run_dir: Path

    def spawn(self, component: str, *args: str) -> Child:
        return self.orch.spawn(component, *args, env={"PLANTSTREAM_PIPELINE__STATE_DIR": str(self.run_dir)})

    def close(self) -> None:
        if self.orch.started_registry:
            local_registry.stop(self.base)
        if self.orch.started_kafka:
            local_kafka.stop(self.base)


def open_run(settings: Settings, name: str, build: Callable[[str, str, Path], dict[str, Any]]) -> BenchRun:
    """Start the stack, make the run dir and apply the config `build(bootstrap, registry_url, run_dir)` returns."""
    orch = Orchestrator(settings, None)
    bootstrap, url = orch.start_stack()
    run_dir = Path(orch.state_dir) / f"bench-{name}-{int(time.time())}"
    run_dir.mkdir(parents=True)
    raw = build(bootstrap, url, run_dir)
    config = run_dir / "bench.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_settings = Settings(**raw)
    topics.apply(run_settings, AdminClient(kafka_clients.admin_config(run_settings)))
    topics.register_schemas(run_settings, kafka_clients.registry(run_settings))
    orch.state_dir, orch.config_path = str(run_dir), str(config)
    return BenchRun(settings, orch, run_settings, raw, run_dir)


def run_pipeline_section(name: str, bootstrap: str, url: str, run_dir: Path, partitions: int = 6) -> dict[str, Any]:
    """The `pipeline` settings every bench run shares: its own topic prefix and group, SQLite in its run
    folder. Callers add windows, alert rules and the like."""
    stamp = int(time.time())
    return {
        "kafka": {"bootstrap": bootstrap, "topic_prefix": f"{name}{stamp}.", "partitions": partitions},
        "registry": {"url": url},
        "storage": {"kind": "sqlite", "sqlite_path": str(run_dir / "bench.db")},
        "state_dir": str(run_dir),
        "group_id": f"{name}{stamp}",
    }
