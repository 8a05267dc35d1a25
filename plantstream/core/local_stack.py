"""How clients find the services the local stack launcher (plantstream/stack/) runs.

Contract: service `<name>` ("kafka", "registry") keeps its files in `<state_dir>/<name>/`; while it
runs, `pid.json` there holds a ProcessInfo whose `endpoint` is its address (the broker's bootstrap
`host:port`, the registry's URL). The secured local broker's CA certificate is
`<state_dir>/kafka/tls/ca.pem`. The launcher writes these files; the core only reads them, so it
never imports the launcher.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from plantstream.core.config import Settings

KAFKA = "kafka"
REGISTRY = "registry"


@dataclass
class ProcessInfo:
    pid: int
    marker: str  # a string in the process's command line, so a recycled pid is not mistaken for ours
    started_at: float
    endpoint: str


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(info: ProcessInfo) -> bool:
    if info.pid <= 0:
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still answers kill(0); /proc says whether it is really running
    try:
        stat = Path(f"/proc/{info.pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        return False
    return info.marker in _cmdline(info.pid)


def read_info(pid_file: Path) -> ProcessInfo | None:
    try:
        return ProcessInfo(**json.loads(pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_info(pid_file: Path, info: ProcessInfo) -> None:
    pid_file.write_text(json.dumps(asdict(info)))


def service_home(settings: Settings, name: str) -> Path:
    """The folder of local service `name` (created when missing)."""
    p = Path(settings.pipeline.state_dir).expanduser().resolve() / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def running(settings: Settings, name: str) -> ProcessInfo | None:
    """The running local service `name`, or None when it is not running."""
    info = read_info(service_home(settings, name) / "pid.json")
    return info if info is not None and alive(info) else None


def local_ca(settings: Settings) -> Path:
    """The CA certificate clients of the local secured broker trust."""
    return service_home(settings, KAFKA) / "tls" / "ca.pem"


def cluster_dir(count: int | str) -> str:
    """The folder under `<state_dir>/kafka/` of a local cluster of `count` nodes (node n in `node-<n>/`)."""
    return f"cluster-{count}"


def kafka_bootstrap(settings: Settings) -> str | None:
    """The running local Kafka's bootstrap list: the single broker's endpoint, or every node of a local
    cluster (`kafka/cluster-<count>/node-<n>/pid.json`) while any of its nodes runs, a stopped one included
    (a client keeps the list to bootstrap again later). None when no local Kafka runs."""
    if info := running(settings, KAFKA):
        return info.endpoint
    home = service_home(settings, KAFKA)
    for cluster in sorted(home.glob(cluster_dir("[0-9]*"))):
        infos = [i for f in sorted(cluster.glob("node-*/pid.json")) if (i := read_info(f)) is not None]
        if any(alive(i) for i in infos):
            return ",".join(i.endpoint for i in infos)
    return None
