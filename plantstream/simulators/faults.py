"""Labelled faults for simulated process values, and normal multivariate operation to inject them into.

Pure and reproducible from a seed: `make_schedule` draws the ground truth (asset, kind, start, end,
tags), `FaultInjector.apply(asset, t, values)` (or `apply_faults`) changes one scan's values, and
`NormalOperation` generates a pump's correlated signals so benchmarks need no sockets. The plant
simulator applies them to its own values (fault_schedule.py).

Normal operation of a centrifugal pump at relative speed s (affinity laws): flow ~ s, head/pressure
~ s², shaft power/current ~ s³; vibration grows with s²; bearing temperature follows the power with
a thermal lag of minutes. The speed setpoint steps between operating points every 2-15 minutes (demand) on
top of a daily load curve; each signal has its own sensor noise (some autocorrelated).

Fault kinds: single-sensor drift, spike, stuck (flatline), noise burst; and correlated multi-sensor
faults: bearing wear (vibration, temperature and current creep up), cavitation (flow drops, pressure
oscillates, vibration gets noisy), clogged filter (pressure up while flow falls).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from plantstream.core.config import FAULT_KINDS

PUMP_TAGS = ("flow", "discharge_pressure", "motor_current", "vibration_rms", "bearing_temperature")
# nominal level of each signal at full speed; faults are sized relative to these
NOMINAL = {
    "flow": 100.0,  # m3/h
    "discharge_pressure": 4.0,  # bar
    "motor_current": 30.0,  # A
    "vibration_rms": 2.0,  # mm/s
    "bearing_temperature": 50.0,  # degC
}
UNITS = {
    "flow": "m3/h",
    "discharge_pressure": "bar",
    "motor_current": "A",
    "vibration_rms": "mm/s",
    "bearing_temperature": "degC",
}
_COLLECTIVE_TAGS = {
    "bearing_wear": ("vibration_rms", "bearing_temperature", "motor_current"),
    "cavitation": ("flow", "discharge_pressure", "vibration_rms"),
    "clogged_filter": ("discharge_pressure", "flow"),
}
# (min, max) duration in seconds per kind
_DURATION_S = {
    "drift": (1200, 2400),
    "spike": (10, 30),
    "stuck": (900, 1800),
    "noise_burst": (180, 600),
    "bearing_wear": (1200, 2400),
    "cavitation": (300, 900),
    "clogged_filter": (1200, 2400),
}


@dataclass(frozen=True)
class Fault:
    """One ground-truth fault: on `asset`, `kind`, in [start_s, end_s) seconds of simulated time, on `tags`."""

    asset: str
    kind: str
    start_s: float
    end_s: float
    tags: tuple[str, ...]
    sign: float = 1.0  # direction of single-sensor drifts and spikes

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    def progress(self, t: float) -> float:
        return min(1.0, max(0.0, (t - self.start_s) / max(self.end_s - self.start_s, 1e-9)))

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


def make_schedule(
    seed: int,
    assets: Sequence[str],
    hours: float,
    *,
    first_s: float = 1800.0,
    gap_s: tuple[float, float] = (900.0, 2400.0),
    kinds: Sequence[str] = FAULT_KINDS,
    tags: Sequence[str] = PUMP_TAGS,
) -> list[Fault]:
    """Faults one after another per asset, separated by normal periods; none before `first_s` (warm-up)."""
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {bad}; use some of {list(FAULT_KINDS)}")
    rng = np.random.default_rng(seed)
    end_of_run = hours * 3600.0
    out: list[Fault] = []
    for asset in assets:
        t = first_s + float(rng.uniform(0, gap_s[0]))
        order = list(rng.permutation(list(kinds)))
        i = 0
        while True:
            kind = str(order[i % len(order)])
            i += 1
            lo, hi = _DURATION_S[kind]
            dur = float(rng.uniform(lo, hi))
            if t + dur > end_of_run:
                break
            fault_tags = _COLLECTIVE_TAGS.get(kind) or (str(rng.choice(list(tags))),)
            sign = float(rng.choice([-1.0, 1.0])) if kind in ("drift", "spike") else 1.0
            out.append(Fault(asset, kind, round(t, 3), round(t + dur, 3), tuple(fault_tags), sign))
            t += dur + float(rng.uniform(*gap_s))
    return sorted(out, key=lambda f: (f.start_s, f.asset))


class FaultInjector:
    """Applies a schedule to scans in time order; keeps what a stuck sensor froze at."""

    def __init__(self, schedule: Sequence[Fault], seed: int = 0) -> None:
        self.by_asset: dict[str, list[Fault]] = {}
        for f in schedule:
            self.by_asset.setdefault(f.asset, []).append(f)
        self.seed = seed
        self.frozen: dict[tuple[str, float, str], float] = {}

    def _noise(self, fault: Fault, t: float, k: int) -> float:
        # a pure function of (seed, fault, time): replays give the same noise
        key = (self.seed, int(fault.start_s * 1000), round(t * 1000), k)
        return float(np.random.default_rng(key).standard_normal())

    def apply(self, asset: str, t: float, values: dict[str, float]) -> dict[str, float]:
        out = dict(values)
        for f in self.by_asset.get(asset, ()):
            if f.active(t):
                _apply_one(f, t, out, self)
        return out


def _apply_one(f: Fault, t: float, v: dict[str, float], inj: FaultInjector) -> None:
    r = f.progress(t)
    # ease in: slow faults start invisible and grow, as wear and fouling do
    ramp = r * r * (3 - 2 * r)
    present = [g for g in f.tags if g in v]
    if f.kind == "drift":
        for g in present:
            v[g] += f.sign * 0.06 * NOMINAL.get(g, abs(v[g]) or 1.0) * ramp
    elif f.kind == "spike":
        for g in present:
            v[g] += f.sign * 0.25 * NOMINAL.get(g, abs(v[g]) or 1.0)
    elif f.kind == "stuck":
        for g in present:
            v[g] = inj.frozen.setdefault((f.asset, f.start_s, g), v[g])
    elif f.kind == "noise_burst":
        for i, g in enumerate(present):
            v[g] += 0.04 * NOMINAL.get(g, abs(v[g]) or 1.0) * inj._noise(f, t, i)
    elif f.kind == "bearing_wear":
        if "vibration_rms" in v:
            v["vibration_rms"] += 0.5 * ramp
        if "bearing_temperature" in v:
            v["bearing_temperature"] += 3.0 * ramp
        if "motor_current" in v:
            v["motor_current"] += 0.8 * ramp
    elif f.kind == "cavitation":
        if "flow" in v:
            v["flow"] *= 0.93
        if "discharge_pressure" in v:
            v["discharge_pressure"] += 0.2 * math.sin(2 * math.pi * t / 7.0)
        if "vibration_rms" in v:
            v["vibration_rms"] += 0.3 * abs(inj._noise(f, t, 0))
    elif f.kind == "clogged_filter":
        if "discharge_pressure" in v:
            v["discharge_pressure"] += 0.3 * ramp
        if "flow" in v:
            v["flow"] -= 6.0 * ramp


def apply_faults(
    values: dict[str, float], t: float, asset: str, schedule: Sequence[Fault], memory: FaultInjector | None = None
) -> dict[str, float]:
    """`values` of one scan at simulated time t with the active faults applied (a new dict).

    Pass the same `memory` (a FaultInjector over the schedule) for every scan so stuck sensors hold.
    """
    inj = memory or FaultInjector(schedule)
    return inj.apply(asset, t, values)


class NormalOperation:
    """Normal pump operation sampled every `dt_s` seconds, reproducible from (seed, asset index)."""

    def __init__(self, seed: int, index: int = 0, dt_s: float = 1.0) -> None:
        self.rng = np.random.default_rng((seed, index, 7919))
        self.dt = dt_s
        # each pump is a slightly different machine: own size and own sensors
        self.size = float(self.rng.uniform(0.85, 1.15))
        self.phase = float(self.rng.uniform(0, 2 * math.pi))

    def generate(self, seconds: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """-> (times in s, tag -> values) for `seconds` of operation."""
        rng, dt = self.rng, self.dt
        n = int(seconds / dt)
        t = np.arange(n) * dt
        # operating points: setpoint steps every 10-40 min, on a daily load curve
        setpoint = np.empty(n)
        i = 0
        while i < n:
            j = min(n, i + int(rng.uniform(120, 900) / dt))
            setpoint[i:j] = rng.uniform(0.7, 1.0)
            i = j
        daily = 0.06 * np.sin(2 * math.pi * t / 86400.0 + self.phase)
        target = np.clip(setpoint + daily, 0.5, 1.05)
        s = _lag(target, tau_s=15.0, dt=dt)  # the drive ramps
        heat = _lag(s**3, tau_s=600.0, dt=dt)  # bearing temperature follows power, slowly
        size = self.size
        out = {
            "flow": 100.0 * size * s * (1 + 0.01 * rng.standard_normal(n)),
            "discharge_pressure": 4.0 * s**2 + 0.03 * rng.standard_normal(n),
            "motor_current": 6.0 + 24.0 * size * s**3 + 0.25 * rng.standard_normal(n),
            "vibration_rms": 0.6 + 1.4 * s**2 + 0.06 * _ar1(rng, n, 0.8),
            "bearing_temperature": 28.0
            + 25.0 * heat
            + 0.5 * np.sin(2 * math.pi * t / 86400.0)
            + 0.15 * _ar1(rng, n, 0.9),
        }
        return t, out


def _lag(x: np.ndarray, tau_s: float, dt: float) -> np.ndarray:
    a = 1.0 - math.exp(-dt / tau_s)
    y = np.empty_like(x)
    acc = float(x[0]) if len(x) else 0.0
    for i, xi in enumerate(x.tolist()):
        acc += a * (xi - acc)
        y[i] = acc
    return y


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Unit-variance autocorrelated noise (sensor filtering makes real noise correlated in time)."""
    e = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
    y = np.empty(n)
    acc = 0.0
    for i, ei in enumerate(e.tolist()):
        acc = phi * acc + ei
        y[i] = acc
    return y


def faulty_series(
    seed: int, assets: Sequence[str], hours: float, dt_s: float = 1.0, **schedule_kw: object
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], list[Fault]]:
    """Normal operation of each asset with the labelled faults applied: (times, asset -> tag -> values, truth)."""
    schedule = make_schedule(seed, assets, hours, **schedule_kw)  # type: ignore[arg-type]
    inj = FaultInjector(schedule, seed)
    data: dict[str, dict[str, np.ndarray]] = {}
    times = np.zeros(0)
    for idx, asset in enumerate(assets):
        times, clean = NormalOperation(seed, idx, dt_s).generate(hours * 3600.0)
        series = {k: v.copy() for k, v in clean.items()}
        for f in inj.by_asset.get(asset, ()):
            i0, i1 = math.ceil(f.start_s / dt_s), math.ceil(f.end_s / dt_s)
            for i in range(i0, min(i1, len(times))):
                row = {k: float(series[k][i]) for k in series}
                _apply_one(f, float(times[i]), row, inj)
                for k, x in row.items():
                    series[k][i] = x
        data[asset] = series
    return times, data, schedule
