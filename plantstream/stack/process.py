"""Detached JVM processes: start once (pid files in plantstream.core.local_stack), stop cleanly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from plantstream.core.errors import ToolError
from plantstream.core.local_stack import ProcessInfo, alive


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


class StackError(ToolError, RuntimeError):
    """The local stack cannot start or stop; the message names the problem and the fix."""


def java() -> str:
    """The `java` executable on PATH."""
    exe = shutil.which("java")
    if exe is None:
        raise StackError("Java is not on PATH. Fix: install a Java 17+ runtime (Debian: openjdk-17-jre-headless)")
    return exe
