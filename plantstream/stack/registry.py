"""A Confluent-compatible schema registry: Apicurio Registry from Maven Central, H2 file storage."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from plantstream.core import local_stack
from plantstream.core.config import Settings
from plantstream.core.local_stack import ProcessInfo, alive, read_info, write_info
from plantstream.stack import maven
from plantstream.stack.kafka import HOST
from plantstream.stack.process import StackError, java, port_free, spawn, tail, terminate

CCOMPAT = "/apis/ccompat/v7"


@dataclass
class RegistryStatus:
    running: bool
    url: str | None
    pid: int | None


def home(settings: Settings) -> Path:
    return local_stack.service_home(settings, local_stack.REGISTRY)


def status(settings: Settings) -> RegistryStatus:
    info = read_info(home(settings) / "pid.json")
    running = info is not None and alive(info)
    return RegistryStatus(running, info.endpoint if running and info else None, info.pid if running and info else None)


def start(settings: Settings, timeout: float = 120.0) -> RegistryStatus:
    current = status(settings)
    if current.running:
        return current
    r = settings.pipeline.registry
    if not port_free(HOST, r.port):
        raise StackError(
            f"port {r.port} on {HOST} is taken, so the local schema registry cannot start. Fix: stop that "
            f"program or set PLANTSTREAM_PIPELINE__REGISTRY__PORT (or SCHEMA_REGISTRY_URL for a running registry)"
        )
    jar = maven.apicurio_app(r.version)
    h = home(settings)
    db = h / "db" / "registry"
    db.parent.mkdir(parents=True, exist_ok=True)
    marker = f"-Dplantstream.home={h}"
    cmd = [
        java(),
        f"-Xmx{r.heap_mb}m",
        "-XX:+UseSerialGC",
        marker,
        f"-Dquarkus.http.host={HOST}",
        f"-Dquarkus.http.port={r.port}",
        # the management interface would bind 0.0.0.0:9000 and clash between two registries
        "-Dquarkus.management.enabled=false",
        # file-backed H2 keeps registered schemas (and their ids) across restarts
        f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
        "-Dapicurio.datasource.jdbc.initial-size=2",
        "-Dapicurio.datasource.jdbc.min-size=2",
        "-Dapicurio.datasource.jdbc.max-size=16",
        "-Dquarkus.log.level=WARN",
        "-Dquarkus.banner.enabled=false",
        "-jar",
        str(jar),
    ]
    proc = spawn(cmd, h / "registry.log", cwd=jar.parent)
    url = f"http://{HOST}:{r.port}{CCOMPAT}"
    info = ProcessInfo(pid=proc.pid, marker=marker, started_at=time.time(), endpoint=url)
    write_info(h / "pid.json", info)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:  # exact for our own child, unlike /proc right after fork
                raise StackError(f"the schema registry exited during start-up:\n{tail(h / 'registry.log')}")
            if ready(url):
                return status(settings)
            time.sleep(0.3)
        raise StackError(f"the schema registry did not answer on {url} within {timeout:.0f}s; see {h / 'registry.log'}")
    except BaseException:
        # a failed start must not leave a half-started JVM behind (nobody would stop it)
        proc.kill()
        proc.wait()
        raise


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stop(settings: Settings) -> bool:
    info = read_info(home(settings) / "pid.json")
    if info is None or not alive(info):
        return False
    terminate(info, timeout=30)
    return True
