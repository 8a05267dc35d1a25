"""Compiled per-frame steps of the multivariate anomaly model (processors/anomaly/model.py).

Contract: each kernel performs, in place, the IEEE operations of the numpy expressions it replaces in the
same order (numba, no fast-math, so no fused multiply-adds and no reassociation): the model's state and
scores are bit for bit those of the numpy code, checked against a recorded sequence by
tests/unit/test_anomaly_recorded.py. NaN propagates as through np.minimum / np.maximum / ndarray.max, so
the model's non-finite guard still sees it. Matrix-vector products and sums stay in numpy (BLAS and
numpy's pairwise summation fix their own order).
"""

from __future__ import annotations

import math

import numba
import numpy as np

LOG_LO, LOG_HI, BINS = -3.0, 5.0, 320  # DecayedQuantile's histogram: 1e-3 .. 1e5 in steps of 2.5 % of a decade
_BIN_FLOOR = 10.0**LOG_LO
_BIN_STEP = (LOG_HI - LOG_LO) / BINS


@numba.njit(cache=True, nogil=True, inline="always")
def _minimum(a: float, b: float) -> float:  # pragma: no cover - compiled
    # np.minimum: NaN if either is NaN
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@numba.njit(cache=True, nogil=True, inline="always")
def _maximum(a: float, b: float) -> float:  # pragma: no cover - compiled
    if a != a or b != b:
        return a + b
    return a if a >= b else b


@numba.njit(cache=True, nogil=True, inline="always")
def quantile_bin(value: float) -> int:  # pragma: no cover - compiled
    """DecayedQuantile's bin of a value (Python's min/max semantics, as `DecayedQuantile._bin`)."""
    if not value > _BIN_FLOOR:
        return 0
    pos = (math.log10(value) - LOG_LO) / (LOG_HI - LOG_LO) * BINS
    pos = 0.0 if pos < 0.0 else pos  # Python's max(pos, 0.0)
    last = float(BINS - 1)
    pos = last if last < pos else pos  # min(pos, last)
    return int(pos)


@numba.njit(cache=True, nogil=True)
def quantiles_update(  # pragma: no cover - compiled
    counts: np.ndarray,
    idx: np.ndarray,
    cum: np.ndarray,
    total: np.ndarray,
    values: np.ndarray,
    keep: float,
    w: float,
    q: float,
    out: np.ndarray,
) -> None:
    """DecayedQuantiles.update: decay every row, add one value per row, move each row's quantile bin."""
    rows, bins = counts.shape
    for r in range(rows):
        for k in range(bins):
            counts[r, k] *= keep
    last = bins - 1
    for r in range(rows):
        b = quantile_bin(values[r])
        counts[r, b] += w
        i = idx[r]
        c = cum[r] * keep + (w if b <= i else 0.0)
        tot = total[r] * keep + w
        target = q * tot
        here = counts[r, i]
        while i > 0 and c - here >= target:
            c -= here
            i -= 1
            here = counts[r, i]
        while c < target and i < last:
            i += 1
            here = counts[r, i]
            c += here
        idx[r], cum[r], total[r] = i, c, tot
        frac = (target - (c - here)) / here if here > 0 else 1.0
        out[r] = 10.0 ** (LOG_LO + (i + frac) * _BIN_STEP)


@numba.njit(cache=True, nogil=True)
def learn_cov(mean: np.ndarray, cov: np.ndarray, dy: np.ndarray, a: float) -> None:  # pragma: no cover - compiled
    """mean += a dy; cov = (cov + (a dy) dy') (1 - a)."""
    m = dy.shape[0]
    keep = 1 - a
    for i in range(m):
        ad = a * dy[i]
        mean[i] += ad
        for j in range(m):
            cov[i, j] = (cov[i, j] + ad * dy[j]) * keep


@numba.njit(cache=True, nogil=True)
def features(  # pragma: no cover - compiled
    x: np.ndarray, filt: np.ndarray, gains: np.ndarray, mean: np.ndarray, y: np.ndarray, dy: np.ndarray
) -> None:
    """The slow filters step (filt += (x - filt) gain, per time constant), y = [x, filt, x²] and dy = y - mean."""
    p = x.shape[0]
    taus = gains.shape[0]
    for i in range(p):
        y[i] = x[i]
    for k in range(taus):
        g = gains[k]
        for i in range(p):
            f = filt[k * p + i]
            f += (x[i] - f) * g
            filt[k * p + i] = f
            y[(k + 1) * p + i] = f
    base = (taus + 1) * p
    for i in range(p):
        y[base + i] = x[i] * x[i]
    for i in range(y.shape[0]):
        dy[i] = y[i] - mean[i]


@numba.njit(cache=True, nogil=True)
def stuck(  # pragma: no cover - compiled
    x: np.ndarray,
    prev: np.ndarray,
    run_len: np.ndarray,
    max_run: np.ndarray,
    limit: np.ndarray,
    active: np.ndarray,
    has_prev: bool,
    learning: bool,
    set_limit: bool,
    stuck_frames: float,
    out: np.ndarray,
) -> None:
    """Runs of identical values per tag (0 without `has_prev`); with `learning`, the longest run; with
    `set_limit`, the stuck limit; `out`: the tags stuck (and active)."""
    for i in range(x.shape[0]):
        r = (run_len[i] + 1) * (1.0 if x[i] == prev[i] else 0.0) if has_prev else 0.0
        run_len[i] = r
        if learning:
            max_run[i] = _maximum(max_run[i], r)
        if set_limit:
            limit[i] = _maximum(stuck_frames, 3 * max_run[i])
        out[i] = r >= limit[i] and active[i]


@numba.njit(cache=True, nogil=True)
def learn_residual(  # pragma: no cover - compiled
    change: np.ndarray, d_var: np.ndarray, b: float, winsorise: bool, winsor: float, floor: float, scale: np.ndarray
) -> None:
    """d_var = (1 - b) d_var + b min(change², winsor d_var); scale = 1 / sqrt(max(d_var, floor))."""
    for i in range(change.shape[0]):
        sq = change[i] * change[i]
        if winsorise:
            sq = _minimum(sq, winsor * d_var[i])
        sq *= b
        d = d_var[i] * (1 - b)
        d += sq
        d_var[i] = d
        scale[i] = 1.0 / math.sqrt(_maximum(d, floor))


@numba.njit(cache=True, nogil=True)
def learn_detectors(  # pragma: no cover - compiled
    det: np.ndarray, det_mean: np.ndarray, det_var: np.ndarray, b: float, winsorise: bool, winsor: float
) -> None:
    """The detectors' normal mean and variance, each deviation clipped to sqrt(winsor var) once `winsorise`."""
    rows, cols = det.shape
    for r in range(rows):
        for i in range(cols):
            dev = det[r, i] - det_mean[r, i]
            if winsorise:
                lim = math.sqrt(winsor * det_var[r, i])
                dev = _minimum(dev, lim)
                dev = _maximum(dev, -lim)
            det_mean[r, i] += b * dev
            v = det_var[r, i] + b * dev * dev
            det_var[r, i] = v * (1 - b)


@numba.njit(cache=True, nogil=True)
def detect(  # pragma: no cover - compiled
    rd: np.ndarray, z_scale: np.ndarray, z_ref: np.ndarray, use_ref: bool, det: np.ndarray, alphas: np.ndarray
) -> None:
    """The three detectors' EWMA step: fast z², rough (dz)², slow z (or the residual against the reference)."""
    p = rd.shape[1]
    for i in range(p):
        z0 = rd[0, i] * z_scale[0, i]
        z1 = rd[1, i] * z_scale[1, i]
        now0 = z0 * z0
        now1 = z1 * z1
        now2 = z_ref[i] if use_ref else z0
        now0 -= det[0, i]
        now1 -= det[1, i]
        now2 -= det[2, i]
        det[0, i] += now0 * alphas[0]
        det[1, i] += now1 * alphas[1]
        det[2, i] += now2 * alphas[2]


@numba.njit(cache=True, nogil=True)
def judge(  # pragma: no cover - compiled
    det: np.ndarray,
    det_mean: np.ndarray,
    dm: np.ndarray,
    dv: np.ndarray,
    floor: float,
    u: np.ndarray,
    top: np.ndarray,
) -> None:
    """u: fast and rough over their normal level, slow's distance from normal in its spread; top: max per row."""
    p = det.shape[1]
    for r in range(2):
        for i in range(p):
            u[r, i] = det[r, i] / _maximum(det_mean[r, i], floor)
    for i in range(p):
        u[2, i] = abs(det[2, i] - dm[i]) / math.sqrt(_maximum(dv[i], floor))
    for r in range(3):
        m = u[r, 0]
        for i in range(1, p):
            m = _maximum(m, u[r, i])
        top[r] = m


@numba.njit(cache=True, nogil=True)
def ratios(  # pragma: no cover - compiled
    top: np.ndarray, u: np.ndarray, qs: np.ndarray, cap: float, weights: np.ndarray
) -> float:
    """-> max over detectors of top / qs; weights = min(max over detectors of u / qs, cap) per signal."""
    raw = top[0] / qs[0]
    for r in range(1, top.shape[0]):
        raw = _maximum(raw, top[r] / qs[r])
    for i in range(u.shape[1]):
        m = u[0, i] / qs[0]
        for r in range(1, u.shape[0]):
            m = _maximum(m, u[r, i] / qs[r])
        weights[i] = _minimum(m, cap)
    return raw


_warmed = False


def warm() -> None:
    """Compile (or load from numba's cache) every kernel for the types the model passes, once per process: a
    model's first frames then cost what the others do (compiling lazily took about 1 s on one frame, 3 s in all,
    with an empty cache)."""
    global _warmed
    if _warmed:
        return
    p, m = 2, 8
    v, mat, rd = np.ones(p), np.ones((m, m)), np.ones((2, p))
    det, flags = np.ones((3, p)), np.ones(p, dtype=bool)
    quantiles_update(
        np.ones((3, BINS)), np.zeros(3, dtype=np.int64), np.ones(3), np.ones(3), np.ones(3), 0.5, 0.5, 0.9, np.ones(3)
    )
    learn_cov(np.ones(m), mat, np.ones(m), 0.5)
    features(v, np.ones(2 * p), np.ones(2), np.ones(m), np.ones(m), np.ones(m))
    stuck(v, v, np.zeros(p), np.zeros(p), np.ones(p), flags, True, True, True, 3.0, flags.copy())
    learn_residual(rd[1], np.ones(p), 0.5, True, 9.0, 1e-12, rd[0].copy())
    learn_detectors(det, np.ones((3, p)), np.ones((3, p)), 0.5, True, 9.0)
    detect(rd, np.ones((2, p)), rd[0], False, det, np.ones(3))
    judge(det, det.copy(), det[2], det[2], 1e-12, np.empty((3, p)), np.empty(3))
    ratios(np.ones(3), det, np.ones(3), 1e9, np.empty(p))
    _warmed = True
