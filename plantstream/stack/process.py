"""Detached JVM processes with pid files: start once, find again, stop cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


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


def spawn(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # own session: Ctrl-C in the terminal that ran `kafka start` must not kill the broker
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def terminate(info: ProcessInfo, timeout: float = 30.0) -> bool:
    """SIGTERM, wait, SIGKILL. Returns True when it had to kill."""
    if not alive(info):
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(info):
            _reap(info.pid)
            return False
        time.sleep(0.1)
    os.kill(info.pid, signal.SIGKILL)
    _reap(info.pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
