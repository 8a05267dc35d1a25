"""Pure building blocks of the multivariate anomaly model (processors/anomaly.py).

- `DecayedQuantile`: an adaptive quantile of a positive score over an exponential window, kept as a
  decayed histogram on log-spaced bins: O(bins) memory and a few numpy ops per update whatever the
  window, JSON-able, restored exactly (a rolling window of raw scores would cost 1800 floats per
  asset and per detector).
- `cross_coefficients`: for every signal, the ridge regression that predicts it from the features of
  the *other* signals (its own value, filtered copies and square left out), from one correlation
  matrix. Residuals of these predictions are what correlated faults break.
- `Debounce`: k-of-n raise and hysteresis clear of an alarm.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

State = dict[str, Any]

_LOG_LO, _LOG_HI, _BINS = -3.0, 5.0, 320  # 1e-3 .. 1e5 in steps of 2.5 % of a decade (~6 %)


class DecayedQuantile:
    """q-quantile of recent positive values, each older value weighing (1 - 1/window) less per update."""

    def __init__(self, q: float, window: int) -> None:
        if not 0.0 < q < 1.0 or window < 1:
            raise ValueError(f"DecayedQuantile needs 0 < q < 1 and window >= 1, got q={q}, window={window}")
        self.q, self.window = q, window
        self.counts = np.zeros(_BINS)
        self.n = 0

    @staticmethod
    def _bin(value: float) -> int:
        if not value > 10.0**_LOG_LO:
            return 0
        pos = (np.log10(value) - _LOG_LO) / (_LOG_HI - _LOG_LO) * _BINS
        return int(min(max(pos, 0.0), _BINS - 1))

    def update(self, value: float) -> None:
        # exact weights while young (a plain histogram), then an exponential window
        keep = 1.0 - max(1.0 / (self.n + 1), 1.0 / self.window)
        self.counts *= keep
        self.counts[self._bin(value)] += 1.0 - keep
        self.n += 1

    def get(self) -> float | None:
        """The quantile (upper edge of its bin, interpolated inside the bin); None before any value."""
        if self.n == 0:
            return None
        cum = np.cumsum(self.counts)
        target = self.q * cum[-1]
        i = int(np.searchsorted(cum, target))
        i = min(i, _BINS - 1)
        below = cum[i - 1] if i > 0 else 0.0
        frac = (target - below) / self.counts[i] if self.counts[i] > 0 else 1.0
        step = (_LOG_HI - _LOG_LO) / _BINS
        return float(10.0 ** (_LOG_LO + (i + frac) * step))

    def to_state(self) -> State:
        return {"q": self.q, "window": self.window, "n": self.n, "counts": self.counts.tolist()}

    @classmethod
    def from_state(cls, st: State) -> DecayedQuantile:
        dq = cls(st["q"], st["window"])
        dq.n, dq.counts = st["n"], np.array(st["counts"], dtype=float)
        return dq


def cross_coefficients(corr: np.ndarray, owner: np.ndarray, p: int, ridge: float) -> np.ndarray:
    """p x m matrix B: row j predicts standardised signal j from the standardised features not owned by j.

    `corr` is the m x m correlation matrix of the features, `owner[i]` the signal feature i derives
    from (features 0..p-1 are the signals themselves). Ridge (in correlation units, so scale-free)
    keeps collinear features (many sensors tracking one load, as in real plants) from blowing up.
    """
    m = corr.shape[0]
    if corr.shape != (m, m) or owner.shape != (m,) or p > m:
        raise ValueError(f"cross_coefficients: corr {corr.shape}, owner {owner.shape}, p={p} do not fit")
    b = np.zeros((p, m))
    eye = np.eye(m)
    reg = corr + ridge * eye
    for j in range(p):
        others = np.flatnonzero(owner != j)
        if others.size == 0:
            continue
        sub = reg[np.ix_(others, others)]
        b[j, others] = np.linalg.solve(sub, corr[others, j])
    return b


class Debounce:
    """Raise after `k` of the last `n` frames above the threshold; clear after `clear` frames in a row below
    `hysteresis` x threshold. One stray frame neither raises nor clears; one incident stays one alarm."""

    def __init__(self, k: int, n: int, clear: int, hysteresis: float) -> None:
        self.k, self.n, self.clear, self.hysteresis = k, max(n, k), clear, hysteresis
        self.recent: deque[bool] = deque(maxlen=self.n)
        self.active = False
        self.below = 0  # frames in a row under the clear level while active
        self.above_run = 0  # frames in a row above the threshold (for relearning a lasting change)

    def step(self, score: float, threshold: float) -> bool:
        over = score > threshold
        self.recent.append(over)
        self.above_run = self.above_run + 1 if over else 0
        if not self.active:
            self.active = sum(self.recent) >= self.k
            self.below = 0
        else:
            self.below = self.below + 1 if score <= self.hysteresis * threshold else 0
            if self.below >= self.clear:
                self.active = False
                self.recent.clear()
        return self.active

    def reset(self) -> None:
        self.recent.clear()
        self.active, self.below, self.above_run = False, 0, 0

    def to_state(self) -> State:
        return {"recent": list(self.recent), "active": self.active, "below": self.below, "above_run": self.above_run}

    def load(self, st: State) -> None:
        self.recent = deque((bool(v) for v in st["recent"]), maxlen=self.n)
        self.active, self.below, self.above_run = bool(st["active"]), int(st["below"]), int(st["above_run"])
