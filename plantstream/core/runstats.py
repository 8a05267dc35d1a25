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
        # levels (set with put) by label set; Prometheus exports them as gauges, counts as counters
        self._levels: dict[str, dict[tuple[tuple[str, str], ...], int]] = {}
        self._lock = threading.Lock()
        self._path: Path | None = None
        if state_dir is not None:
            self._path = Path(state_dir).expanduser() / "run" / f"{component}.json"
            self._path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def put(self, name: str, value: int, **labels: str) -> None:
        """Set a level (e.g. frames waiting in a buffer) rather than count events.

        Labels split a level into series (e.g. consumer lag per topic); `counts[name]` holds their sum,
        so readers of the JSON file see one figure. Every series of a name must use the same label names.
        """
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._levels.setdefault(name, {})
            if series and {k for k, _ in next(iter(series))} != {k for k, _ in key}:
                raise ValueError(
                    f"level {name!r} was set with labels {sorted(k for k, _ in next(iter(series)))}, now with "
                    f"{sorted(labels)}; use the same label names for every series of a level"
                )
            series[key] = value
            self._counts[name] = sum(series.values())

    def put_all(self, name: str, label: str, values: dict[str, int]) -> None:
        """Set every series of a level labelled by one label at once; series not in `values` are dropped
        (e.g. one per alarm of the assets a worker owns now: a moved asset's series go with it)."""
        with self._lock:
            self._levels[name] = {((label, k),): v for k, v in values.items()}
            self._counts[name] = sum(values.values())

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
            levels = {
                name: [{"labels": dict(key), "value": v} for key, v in sorted(series.items())]
                for name, series in self._levels.items()
            }
        return {
            "component": self.component,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counts": counts,
            "quantiles": quantiles,
            "levels": levels,
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


def instance_name(component: str, instance: int) -> str:
    """The name of one of several processes of a component (`up --workers/--sinks`): the first keeps the
    plain name, the n-th is `<component>-<n>`."""
    return component if instance == 1 else f"{component}-{instance}"


def base_component(name: str) -> str:
    """`processor-2` -> `processor`; a name without an instance number is returned as is."""
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() else name


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
