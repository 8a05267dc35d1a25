"""Pure building blocks of the multivariate anomaly model (processors/anomaly/model.py).

- `DecayedQuantile`: an adaptive quantile of a positive score over an exponential window, kept as a
  decayed histogram on log-spaced bins: O(bins) memory and a few numpy ops per update whatever the
  window, JSON-able, restored exactly (a rolling window of raw scores would cost 1800 floats per
  asset and per detector).
- `cross_coefficients`: for every signal, the ridge regression that predicts it from the features of
  the *other* signals (its own value, filtered copies and square left out), from one correlation
  matrix. Residuals of these predictions are what correlated faults break.
- `Debounce`: an alarm raised on accumulated evidence (a CUSUM of log score/threshold), cleared with hysteresis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from processors.anomaly import kernels

State = dict[str, Any]

_LOG_LO, _LOG_HI, _BINS = kernels.LOG_LO, kernels.LOG_HI, kernels.BINS  # 1e-3 .. 1e5 in steps of 2.5 % of a decade


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
        pos = (math.log10(value) - _LOG_LO) / (_LOG_HI - _LOG_LO) * _BINS
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

    One inverse of the regularised matrix serves all p regressions: with P = (corr + ridge I)^-1 and S the
    features owned by j, the regression of the S block on the rest is -P_SS^-1 P_S,rest (the Schur
    complement identity), so each signal costs a solve of |S| x |S| instead of (m - |S|)^3 / 3.
    """
    m = corr.shape[0]
    if corr.shape != (m, m) or owner.shape != (m,) or p > m or np.any(owner[:p] != np.arange(p)):
        raise ValueError(f"cross_coefficients: corr {corr.shape}, owner {owner.shape}, p={p} do not fit")
    prec = np.linalg.inv(corr + ridge * np.eye(m))
    groups = [np.flatnonzero(owner == j) for j in range(p)]
    sizes = {len(g) for g in groups}
    b = np.zeros((p, m))
    if len(sizes) == 1:
        idx = np.stack(groups)  # p x k, every signal owns k features (itself first)
        k = idx.shape[1]
        p_ss = prec[idx[:, :, None], idx[:, None, :]]  # p x k x k
        e0 = np.zeros((p, k, 1))
        e0[:, 0, 0] = 1.0
        # first row of P_SS^-1 (P_SS is symmetric): solve P_SS v = e0
        v = np.linalg.solve(p_ss, e0)[:, :, 0]  # p x k
        b = -np.einsum("pk,pkm->pm", v, prec[idx])
    else:
        for j, g in enumerate(groups):
            e0 = (g == j).astype(float)
            v = np.linalg.solve(prec[np.ix_(g, g)], e0)
            b[j] = -v @ prec[g]
    for j, g in enumerate(groups):
        b[j, g] = 0.0  # a signal's own features never predict it (exactly -1/0 up to rounding here)
    return b


class Debounce:
    """Raise on accumulated evidence, clear after `clear` frames in a row below `hysteresis` x threshold.

    The evidence is a CUSUM of log(score / threshold): it grows while the score is above the threshold, shrinks
    below it, and the alarm rises at k ln 2, i.e. after k frames at twice the threshold, a few frames far above it,
    many just above it. A fixed k-of-n count treats a score of 1.05 x threshold like one of 100 x: either it is
    short and noise at the threshold's edge makes alarms (operating-point transients, a young fit), or it is long
    and slow to raise on a clear fault. Each frame adds at most 0.34 of the bar, so it takes three: one wild frame
    never raises an alarm alone. One incident stays one alarm; `rearm` ends the current one so a new incident can
    raise its own.
    """

    def __init__(self, k: int, clear: int, hysteresis: float) -> None:
        if k < 1 or clear < 1 or not 0.0 < hysteresis <= 1.0:
            raise ValueError(f"Debounce needs k >= 1, clear >= 1 and 0 < hysteresis <= 1; got {k=}, {clear=}")
        self.k, self.clear, self.hysteresis = k, clear, hysteresis
        self.bar = k * math.log(2.0)
        self.active = False
        self.evidence = 0.0  # log-ratio CUSUM while not active
        self.below = 0  # frames in a row under the clear level while active
        self.above_run = 0  # frames in a row above the threshold (for relearning a lasting change)

    def step(self, score: float, threshold: float) -> bool:
        over = score > threshold
        self.above_run = self.above_run + 1 if over else 0
        if not self.active:
            gain = math.log(max(score, 1e-300) / threshold)
            self.evidence = max(0.0, self.evidence + min(gain, 0.34 * self.bar))
            self.active = self.evidence >= self.bar
            self.below = 0
        else:
            self.below = self.below + 1 if score <= self.hysteresis * threshold else 0
            if self.below >= self.clear:
                self.active = False
                self.evidence = 0.0
        return self.active

    def rearm(self) -> None:
        """End the current alarm without waiting for the score to fall: the next step gathers fresh evidence."""
        self.active, self.evidence, self.below = False, 0.0, 0

    def reset(self) -> None:
        self.rearm()
        self.above_run = 0

    def to_state(self) -> State:
        return {"active": self.active, "evidence": self.evidence, "below": self.below, "above_run": self.above_run}

    def load(self, st: State) -> None:
        self.active, self.evidence = bool(st["active"]), float(st["evidence"])
        self.below, self.above_run = int(st["below"]), int(st["above_run"])


class DecayedQuantiles:
    """`DecayedQuantile` for k statistics at once (one row each, updated together), cheap enough for every frame:
    one numpy pass decays all k histograms, and each row's quantile bin is tracked incrementally (the
    cumulative weight up to it moves by the decay and one added value, so the bin moves by a step or two)
    instead of summing 320 bins per row and frame."""

    def __init__(self, q: float, window: int, k: int) -> None:
        if not 0.0 < q < 1.0 or window < 1 or k < 1:
            raise ValueError(f"DecayedQuantiles needs 0 < q < 1, window >= 1 and k >= 1; got {q=}, {window=}, {k=}")
        self.q, self.window, self.k = q, window, k
        self.counts = np.zeros((k, _BINS))
        self.n = 0
        self.idx = np.zeros(k, dtype=np.int64)  # per row: the quantile's bin, the weight up to and including it,
        self.cum = np.zeros(k)  # and the total
        self.total = np.zeros(k)
        self._value = np.full(k, np.inf)

    def update(self, values: Sequence[float] | np.ndarray) -> None:
        keep = 1.0 - max(1.0 / (self.n + 1), 1.0 / self.window)
        out = np.empty(self.k)
        # the first bin whose cumulative weight reaches the target (numpy's searchsorted, side left), compiled
        kernels.quantiles_update(
            self.counts, self.idx, self.cum, self.total, np.asarray(values, dtype=float), keep, 1.0 - keep, self.q, out
        )
        self.n += 1
        self._value = out

    def get(self) -> np.ndarray:
        """The k quantiles (inf before any value), interpolated inside their bin as `DecayedQuantile.get`."""
        return self._value

    def to_state(self) -> State:
        return {
            "q": self.q,
            "window": self.window,
            "n": self.n,
            "counts": self.counts.tolist(),
            "idx": self.idx.tolist(),
            "cum": self.cum.tolist(),
            "total": self.total.tolist(),
            # strict JSON: no value yet (inf) is null, which a table's JSON codec would otherwise turn into NaN
            "value": [v if math.isfinite(v) else None for v in self._value.tolist()],
        }

    @classmethod
    def from_state(cls, st: State) -> DecayedQuantiles:
        counts = np.array(st["counts"], dtype=float)
        dq = cls(st["q"], st["window"], counts.shape[0])
        dq.n, dq.counts = st["n"], counts
        dq.idx = np.array(st["idx"], dtype=np.int64)
        dq.cum, dq.total = np.array(st["cum"], dtype=float), np.array(st["total"], dtype=float)
        dq._value = np.array([math.inf if v is None else v for v in st["value"]], dtype=float)
        return dq
