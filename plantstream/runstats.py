"""Counters of a long-running component, written to <state_dir>/run/<component>.json.

`plantstream up` reads these files for its live progress line and its closing JSON summary, so
the figures come from the components themselves, not from guesses in the orchestrator.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any


class RunStats:
    def __init__(self, component: str, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.component = component
        self.started = time.time()
        self._counts: Counter[str] = Counter()
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._path: Path | None = None
        if state_dir is not None:
            self._path = Path(state_dir).expanduser() / "run" / f"{component}.json"
            self._path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def put(self, name: str, value: int) -> None:
        """Set a level (e.g. frames waiting in a buffer) rather than count events."""
        with self._lock:
            self._counts[name] = value

    def observe(self, name: str, value: float) -> None:
        """Record a measurement (e.g. a latency); snapshots report quantiles of the most recent ones."""
        with self._lock:
            window = self._samples.get(name)
            if window is None:
                window = self._samples[name] = deque(maxlen=20_000)
            window.append(value)

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            quantiles = {name: _quantiles(list(w)) for name, w in self._samples.items() if w}
        return {
            "component": self.component,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counts": counts,
            "quantiles": quantiles,
        }

    def flush(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self._path)  # atomic, so readers never see half a file


def _quantiles(values: list[float]) -> dict[str, float]:
    values.sort()
    n = len(values)

    def q(p: float) -> float:
        return values[min(n - 1, int(p * n))]

    return {"n": n, "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": values[-1]}


def read_all(state_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in sorted((Path(state_dir).expanduser() / "run").glob("*.json")):
        try:
            out[f.stem] = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
    return out


def clear(state_dir: str | os.PathLike[str]) -> None:
    for f in (Path(state_dir).expanduser() / "run").glob("*.json"):
        f.unlink(missing_ok=True)
