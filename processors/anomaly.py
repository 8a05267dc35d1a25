"""Online anomaly detection per asset: one model update per ReadingFrame, scores as AnomalyScore records.

Pure logic, no Faust: the worker keeps one `AnomalyStage`, calls `score(asset, frame)` per frame and
checkpoints `checkpoint(asset)` (JSON-able) into its table; `restore(asset, state)` continues exactly.

Multivariate model (`MultivariateModel`, "pca-t2-spe/1"): an exponentially weighted mean/covariance of
the asset's process values, standardised by its own running spread (so units and scales do not matter)
and decomposed into principal components of the correlation matrix. Each frame gets Hotelling's T²
on the retained components (unusual *levels* along the normal directions of variation) and the squared
prediction error SPE/Q off them (broken *correlations*: one sensor drifting against the others, a
clogged filter raising pressure while flow falls). Both are normalised by their expectation, the
larger taken, EWMA-smoothed (collective and slow faults add up; single-frame noise does not) and
compared with an adaptive threshold: margin x a rolling quantile (river) of recent normal scores. An
alarm needs `debounce_frames` frames in a row above it. While a frame is above the threshold the model
does not learn, so a slow drift is not absorbed as normal; after `relearn_after_frames` in alarm it
learns again (a lasting change becomes the new normal). A stuck sensor (a tag that normally varies,
repeating one value for `stuck_frames` frames) is flagged too, since it breaks no level or correlation
while the load is steady.

Univariate baseline (`RobustBaseline`, "rolling-median-mad/1"): |x - rolling median| / (1.4826 MAD),
smoothed and thresholded the same way, for assets with a single signal.

Per-tag contributions: the T² and SPE decompositions per variable, normalised to sum 1 and smoothed
like the score, so an alert names the signals that drove it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from river import stats

from plantstream.config import AnomalySettings, Settings, TagRole, TagType

Record = dict[str, Any]
State = dict[str, Any]

_NUMERIC_TYPES = {t for t in TagType if t not in (TagType.BOOL, TagType.STRING)}
_STATE_VERSION = 1
_QUANTILE_WINDOW = 1800  # recent normal scores the threshold quantile looks at
_PCA_REFRESH = 25  # frames between eigen-decompositions; the covariance moves slowly
_EXPLAINED = 0.9  # share of variance the retained components explain
_SLOW_TAUS = (300.0,)  # frames: time constants of the slow filtered copies of each feature
# T² (levels along the normal directions) counts less than SPE: a new operating point moves every
# signal along the load direction, which is unusual but not a fault; broken correlations are
_T2_WEIGHT = 0.25
_SQUARES = True
_RESID_NORM = True
_MIN_EIG = 1e-6  # floor of correlation eigenvalues: a perfectly collinear pair must not divide by 0


class AnomalyModel(Protocol):
    name: str

    def update(self, frame: Record) -> Record | None:
        """Score one frame and learn from it; None when the frame holds none of the model's features."""

    def to_state(self) -> State:
        """JSON-able state from which `from_state` rebuilds a model that continues identically."""


def scan_time_us(frame: Record) -> int:
    t = frame["scan_time"]
    if isinstance(t, datetime):  # a decoder that keeps logical types
        return int(t.timestamp() * 1_000_000)
    return int(t)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def numeric_good_values(frame: Record) -> dict[str, float]:
    """tag -> value of the frame's GOOD numeric samples (bools and strings are not process values)."""
    out: dict[str, float] = {}
    for s in frame.get("samples", ()):
        if s.get("quality", "GOOD") != "GOOD":
            continue
        x = _number(s.get("value"))
        if x is not None:
            out[s["tag"]] = x
    return out


class _FeatureVector:
    """Turns a frame into a fixed-order vector, carrying a tag's last value while it is missing or BAD."""

    def __init__(self, tags: Sequence[str] | None) -> None:
        self.tags: list[str] | None = list(tags) if tags else None
        self.last: list[float | None] = [None] * len(self.tags) if self.tags else []
        self.carried = 0  # samples filled in from the last value (missing or BAD): a data-quality note

    def __call__(self, frame: Record) -> np.ndarray | None:
        values = numeric_good_values(frame)
        if self.tags is None:
            if not values:
                return None
            # no configured tags: the first frame with numbers fixes them (sorted, so restarts agree)
            self.tags = sorted(values)
            self.last = [None] * len(self.tags)
        for i, tag in enumerate(self.tags):
            if tag in values:
                self.last[i] = values[tag]
            elif self.last[i] is not None:
                self.carried += 1
        if any(v is None for v in self.last):
            return None  # a feature never seen yet: nothing to carry
        return np.array(self.last, dtype=float)

    def to_state(self) -> State:
        return {"tags": self.tags, "last": self.last, "carried": self.carried}

    @classmethod
    def from_state(cls, st: State) -> _FeatureVector:
        fv = cls(st["tags"])
        fv.tags = st["tags"]
        fv.last = list(st["last"])
        fv.carried = st["carried"]
        return fv


class _Threshold:
    """margin x rolling quantile of recent normal scores (river), with its window kept for checkpoints."""

    def __init__(self, q: float, margin: float, window: int = _QUANTILE_WINDOW) -> None:
        self.q, self.margin, self.window = q, margin, window
        self._rq = stats.RollingQuantile(q=q, window_size=window)
        self._recent: deque[float] = deque(maxlen=window)

    def learn(self, score: float) -> None:
        self._rq.update(score)
        self._recent.append(score)

    def value(self) -> float:
        v = self._rq.get()
        return self.margin * float(v) if v is not None else math.inf

    def to_state(self) -> State:
        return {"q": self.q, "margin": self.margin, "window": self.window, "recent": list(self._recent)}

    @classmethod
    def from_state(cls, st: State) -> _Threshold:
        th = cls(st["q"], st["margin"], st["window"])
        for s in st["recent"]:  # replaying the window rebuilds the rolling quantile exactly
            th.learn(s)
        return th


class _Alarm:
    """Smoothing, debounce and the learn/freeze decision shared by both models."""

    def __init__(self, cfg: AnomalySettings) -> None:
        self.smoothing = cfg.smoothing
        self.debounce = cfg.debounce_frames
        self.relearn_after = cfg.relearn_after_frames
        self.score = 0.0
        self.above = 0  # consecutive frames above the threshold

    def step(self, raw: float, threshold: float) -> tuple[float, bool, bool]:
        """-> (smoothed score, is_anomaly, learn from this frame)."""
        self.score = (1 - self.smoothing) * self.score + self.smoothing * raw
        self.above = self.above + 1 if self.score > threshold else 0
        return self.score, self.above >= self.debounce, self.above == 0

    def relearn_due(self) -> bool:
        return self.relearn_after > 0 and self.above > self.relearn_after

    def to_state(self) -> State:
        return {"score": self.score, "above": self.above}

    def load(self, st: State) -> None:
        self.score, self.above = st["score"], st["above"]


def _record(
    asset: str,
    t: int,
    model: str,
    score: float,
    threshold: float,
    anomaly: bool,
    warming: bool,
    contributions: dict[str, float],
) -> Record:
    return {
        "asset": asset,
        "time": t,
        "model": model,
        "score": float(score),
        "threshold": float(threshold) if math.isfinite(threshold) else 0.0,
        "is_anomaly": bool(anomaly),
        "warming_up": bool(warming),
        "contributions": contributions,
    }


def _shares(tags: Sequence[str], weights: np.ndarray) -> dict[str, float]:
    total = float(weights.sum())
    if not total > 0:
        return {}
    return {t: float(w / total) for t, w in zip(tags, weights, strict=True)}


class MultivariateModel:
    """Hotelling T² + SPE on an exponentially weighted mean/covariance (see the module doc)."""

    name = "pca-t2-spe/1"

    def __init__(self, asset: str, cfg: AnomalySettings, tags: Sequence[str] | None = None) -> None:
        self.asset, self.cfg = asset, cfg
        self.features = _FeatureVector(cfg.tags or tags)
        self.threshold = _Threshold(cfg.quantile, cfg.threshold_margin)
        self.alarm = _Alarm(cfg)
        self.n = 0  # frames learned
        self.frames = 0  # frames scored
        self.mean: np.ndarray | None = None
        self.cov: np.ndarray | None = None
        self.loadings: np.ndarray | None = None  # p x k retained principal directions
        self.eig: np.ndarray | None = None  # their eigenvalues
        self.rest = 1.0  # sum of the discarded eigenvalues: the expected SPE
        self.contrib: np.ndarray | None = None
        self.run_len: np.ndarray | None = None  # identical values in a row, per tag
        self.max_run: np.ndarray | None = None  # longest such run seen while learning
        self.slow: np.ndarray | None = None  # slow filter of the features (see update)
        self.resid_var: np.ndarray | None = None  # typical squared residual per feature
        self.resid_n = 0
        self._last_resid: np.ndarray | None = None
        self.rebaselines = 0

    # -- learning ------------------------------------------------------------------------------

    def _learn(self, x: np.ndarray) -> None:
        assert self.mean is not None and self.cov is not None
        # exact average while young, then an exponential window of `window_frames`
        a = max(1.0 / (self.n + 1), 1.0 / self.cfg.window_frames)
        d = x - self.mean
        self.mean = self.mean + a * d
        self.cov = (1 - a) * (self.cov + a * np.outer(d, d))
        self.n += 1
        r = self._last_resid
        if r is not None:
            b = max(1.0 / (self.resid_n + 1), 1.0 / self.cfg.window_frames)
            rv = r * r if self.resid_var is None else (1 - b) * self.resid_var + b * r * r
            self.resid_var = np.maximum(rv, 1e-6)
            self.resid_n += 1
            self._last_resid = None
        if self.n % _PCA_REFRESH == 0 or self.loadings is None:
            self._decompose()

    def _spread(self) -> np.ndarray:
        assert self.mean is not None and self.cov is not None
        # a constant sensor has no spread: floor relative to its level keeps scale invariance
        floor = 1e-9 * np.abs(self.mean) + 1e-300
        return np.sqrt(np.maximum(np.diag(self.cov), floor**2))

    def _decompose(self) -> None:
        assert self.cov is not None
        sd = self._spread()
        corr = self.cov / np.outer(sd, sd)
        w, v = np.linalg.eigh(corr)
        w, v = np.maximum(w[::-1], _MIN_EIG), v[:, ::-1]
        # a deterministic sign per component, so restores and reruns agree bit for bit
        v = v * np.where(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])] < 0, -1.0, 1.0)
        p = len(w)
        k = int(np.searchsorted(np.cumsum(w) / w.sum(), _EXPLAINED) + 1)
        k = max(1, min(k, p - 1)) if p > 1 else 1
        # contiguous copies: restored arrays are contiguous, and BLAS must take the same path for both
        self.loadings, self.eig = np.ascontiguousarray(v[:, :k]), np.ascontiguousarray(w[:k])
        self.rest = max(float(w[k:].sum()), _MIN_EIG * max(p - k, 1))

    # -- scoring -------------------------------------------------------------------------------

    def _raw(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        assert self.mean is not None and self.loadings is not None and self.eig is not None
        z = (x - self.mean) / self._spread()
        t = self.loadings.T @ z
        t2 = float(np.sum(t * t / self.eig))
        resid = z - self.loadings @ t
        k = len(self.eig)
        self._last_resid = resid
        if _RESID_NORM and self.resid_var is not None:
            # each residual against its own typical size: a signal the linear model fits loosely (a
            # lagging temperature) does not drown the tight ones (pressure against flow)
            rs = resid / np.sqrt(self.resid_var)
            c_spe = rs * rs
            spen = float(c_spe.sum()) / len(rs)
        else:
            c_spe = resid * resid
            spen = float(c_spe.sum()) / self.rest
        t2n = t2 / k
        # per-variable parts: T² = sum_j z_j * (P Λ⁻¹ t)_j; SPE = sum_j e_j²
        c_t2 = np.abs(z * (self.loadings @ (t / self.eig)))
        weights = _T2_WEIGHT * t2n * c_t2 / max(c_t2.sum(), 1e-300) + spen * c_spe / max(c_spe.sum(), 1e-300)
        return max(_T2_WEIGHT * t2n, spen), weights

    def _stuck(self, x: np.ndarray, prev: np.ndarray | None, learning: bool) -> np.ndarray:
        assert self.run_len is not None and self.max_run is not None
        same = prev is not None and x == prev
        self.run_len = np.where(same, self.run_len + 1, 0)
        if learning:  # warm-up only: later, a long run is exactly what we look for
            self.max_run = np.maximum(self.max_run, self.run_len)
        # a tag that repeats normally (quantised, idle) needs a much longer run to count as stuck
        limit = np.maximum(self.cfg.stuck_frames, 3 * self.max_run)
        return self.run_len >= limit

    def update(self, frame: Record) -> Record | None:
        prev = None if self.features.tags is None or None in self.features.last else np.array(self.features.last)
        x = self.features(frame)
        if x is None:
            return None
        t = scan_time_us(frame)
        tags = self.features.tags or []
        self.frames += 1
        # a slow first-order filter of every tag joins the features: lagging relations (a bearing
        # temperature following the power over minutes) become linear ones the covariance can hold
        xs = np.tile(x, len(_SLOW_TAUS))
        gains = np.repeat(1.0 / np.asarray(_SLOW_TAUS), len(x))
        self.slow = xs if self.slow is None else self.slow + (xs - self.slow) * gains
        # squares make curved relations (pressure ~ flow², power ~ speed³) closer to linear ones
        y = np.concatenate([x, self.slow, x * x]) if _SQUARES else np.concatenate([x, self.slow])
        p = len(x)
        if self.mean is None:
            self.mean, self.cov = y.copy(), np.zeros((len(y), len(y)))
            self.run_len, self.max_run = np.zeros(p), np.zeros(p)
            self.contrib = np.zeros(p)
        if self.n < self.cfg.warmup_frames * 3 // 4:
            # first three quarters of warm-up: learn the mean and covariance only
            self._stuck(x, prev, learning=True)
            self._learn(y)
            return _record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        raw, dyn_weights = self._raw(y)
        weights = dyn_weights.reshape(-1, p).sum(axis=0)
        stuck = self._stuck(x, prev, learning=self.n < self.cfg.warmup_frames)
        threshold = self.threshold.value()
        if self.n >= self.cfg.warmup_frames and stuck.any() and math.isfinite(threshold):
            # a stuck sensor reads "perfectly normal": raise it explicitly and name it
            raw = max(raw, 3.0 * threshold / self.cfg.threshold_margin)
            weights = np.where(stuck, 1.0, 0.0)
        assert self.contrib is not None
        shares = weights / max(float(weights.sum()), 1e-300)
        self.contrib = (1 - self.cfg.smoothing) * self.contrib + self.cfg.smoothing * shares
        if self.n < self.cfg.warmup_frames:
            # last quarter: scores seed the threshold quantile; nothing is judged yet
            score = self.alarm.step(raw, math.inf)[0]
            self.threshold.learn(score)
            self._learn(y)
            return _record(self.asset, t, self.name, score, 0.0, False, True, {})
        score, is_anomaly, learn = self.alarm.step(raw, threshold)
        shares_now = _shares(tags, self.contrib)
        if self.alarm.relearn_due():
            # a change that lasts this long is the new normal: warm up again on it
            self._rebaseline()
        elif learn:
            self.threshold.learn(score)
            self._learn(y)
        return _record(self.asset, t, self.name, score, threshold, is_anomaly, False, shares_now)

    def _rebaseline(self) -> None:
        self.n = 0
        self.mean = self.cov = self.loadings = self.eig = self.contrib = self.run_len = self.max_run = None
        self.slow = self.resid_var = self._last_resid = None
        self.resid_n = 0
        self.rest = 1.0
        self.threshold = _Threshold(self.cfg.quantile, self.cfg.threshold_margin)
        self.alarm = _Alarm(self.cfg)
        self.rebaselines += 1

    # -- checkpoints ---------------------------------------------------------------------------

    def to_state(self) -> State:
        def arr(a: np.ndarray | None) -> Any:
            return None if a is None else a.tolist()

        return {
            "kind": "multivariate",
            "version": _STATE_VERSION,
            "asset": self.asset,
            "config": self.cfg.model_dump(),
            "features": self.features.to_state(),
            "threshold": self.threshold.to_state(),
            "alarm": self.alarm.to_state(),
            "n": self.n,
            "rebaselines": self.rebaselines,
            "frames": self.frames,
            "mean": arr(self.mean),
            "cov": arr(self.cov),
            "loadings": arr(self.loadings),
            "eig": arr(self.eig),
            "rest": self.rest,
            "contrib": arr(self.contrib),
            "slow": arr(self.slow),
            "resid_var": arr(self.resid_var),
            "resid_n": self.resid_n,
            "last_resid": arr(self._last_resid),
            "run_len": arr(self.run_len),
            "max_run": arr(self.max_run),
        }

    @classmethod
    def from_state(cls, st: State) -> MultivariateModel:
        _check_state(st, "multivariate")

        def arr(a: Any) -> np.ndarray | None:
            return None if a is None else np.array(a, dtype=float)

        m = cls(st["asset"], AnomalySettings(**st["config"]))
        m.features = _FeatureVector.from_state(st["features"])
        m.threshold = _Threshold.from_state(st["threshold"])
        m.alarm.load(st["alarm"])
        m.n, m.frames, m.rest, m.rebaselines = st["n"], st["frames"], st["rest"], st["rebaselines"]
        m.mean, m.cov, m.contrib = arr(st["mean"]), arr(st["cov"]), arr(st["contrib"])
        m.loadings, m.eig = arr(st["loadings"]), arr(st["eig"])
        m.run_len, m.max_run, m.slow = arr(st["run_len"]), arr(st["max_run"]), arr(st["slow"])
        m.resid_var, m.resid_n, m._last_resid = arr(st["resid_var"]), st["resid_n"], arr(st["last_resid"])
        if m.loadings is not None and m.loadings.ndim == 1:
            m.loadings = m.loadings.reshape(-1, 1)
        return m


class RobustBaseline:
    """|x - rolling median| / (1.4826 rolling MAD) of one signal; river's rolling quantiles do the medians."""

    name = "rolling-median-mad/1"

    def __init__(self, asset: str, cfg: AnomalySettings, tags: Sequence[str] | None = None) -> None:
        self.asset, self.cfg = asset, cfg
        wanted = list(cfg.tags or tags or [])
        self.features = _FeatureVector(wanted[:1] or None)
        self.window = min(cfg.window_frames, max(cfg.warmup_frames, 50))
        self.threshold = _Threshold(cfg.quantile, cfg.threshold_margin)
        self.alarm = _Alarm(cfg)
        self.n = 0
        self._median = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._mad = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._values: deque[float] = deque(maxlen=self.window)
        self._devs: deque[float] = deque(maxlen=self.window)
        self.rebaselines = 0

    def _learn(self, x: float, dev: float) -> None:
        self._median.update(x)
        self._values.append(x)
        self._mad.update(dev)
        self._devs.append(dev)
        self.n += 1

    def update(self, frame: Record) -> Record | None:
        vec = self.features(frame)
        if vec is None:
            return None
        if self.features.tags and len(self.features.tags) > 1:
            # the first frame fixed the tags: a univariate model keeps one
            self.features.tags, self.features.last = self.features.tags[:1], self.features.last[:1]
            vec = vec[:1]
        x = float(vec[0])
        t = scan_time_us(frame)
        tag = (self.features.tags or ["value"])[0]
        med = self._median.get()
        mad = self._mad.get()
        if med is None or mad is None:
            self._learn(x, 0.0)
            return _record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        dev = abs(x - float(med))
        # a flat signal has MAD 0: floor relative to its level keeps the score finite and scale-free
        raw = dev / max(1.4826 * float(mad), 1e-9 * abs(float(med)), 1e-300)
        if self.n < self.cfg.warmup_frames:
            score = self.alarm.step(raw, math.inf)[0]
            if self.n >= self.cfg.warmup_frames // 2:
                self.threshold.learn(score)
            self._learn(x, dev)
            return _record(self.asset, t, self.name, score, 0.0, False, True, {})
        threshold = self.threshold.value()
        score, is_anomaly, learn = self.alarm.step(raw, threshold)
        if self.alarm.relearn_due():
            self._rebaseline()
        elif learn:
            self.threshold.learn(score)
            self._learn(x, dev)
        return _record(self.asset, t, self.name, score, threshold, is_anomaly, False, {tag: 1.0})

    def _rebaseline(self) -> None:
        self.n = 0
        self._median = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._mad = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._values.clear()
        self._devs.clear()
        self.threshold = _Threshold(self.cfg.quantile, self.cfg.threshold_margin)
        self.alarm = _Alarm(self.cfg)
        self.rebaselines += 1

    def to_state(self) -> State:
        return {
            "kind": "robust_baseline",
            "version": _STATE_VERSION,
            "asset": self.asset,
            "config": self.cfg.model_dump(),
            "features": self.features.to_state(),
            "threshold": self.threshold.to_state(),
            "alarm": self.alarm.to_state(),
            "n": self.n,
            "rebaselines": self.rebaselines,
            "values": list(self._values),
            "devs": list(self._devs),
        }

    @classmethod
    def from_state(cls, st: State) -> RobustBaseline:
        _check_state(st, "robust_baseline")
        m = cls(st["asset"], AnomalySettings(**st["config"]))
        m.features = _FeatureVector.from_state(st["features"])
        m.threshold = _Threshold.from_state(st["threshold"])
        m.alarm.load(st["alarm"])
        for x, d in zip(st["values"], st["devs"], strict=True):  # replay rebuilds the rolling medians
            m._learn(x, d)
        m.n, m.rebaselines = st["n"], st["rebaselines"]
        return m


def _check_state(st: State, kind: str) -> None:
    if st.get("kind") != kind or st.get("version") != _STATE_VERSION:
        raise ValueError(
            f"anomaly checkpoint is kind={st.get('kind')!r} version={st.get('version')!r}, expected {kind!r} "
            f"version {_STATE_VERSION}; drop the checkpoint so the model warms up again"
        )


def model_for(
    asset: str, cfg: AnomalySettings | None = None, tags: Sequence[str] | None = None
) -> MultivariateModel | RobustBaseline | None:
    """The model an asset's settings ask for; None when detection is off (or it has no feature tags)."""
    cfg = cfg or AnomalySettings()
    chosen = list(cfg.tags or tags or [])
    kind = cfg.model
    if kind == "auto":
        # unknown tags (e.g. browsed OPC UA nodes) are learned from the first frame: assume several
        kind = "robust_baseline" if len(chosen) == 1 else "multivariate"
    if kind == "off":
        return None
    if kind == "robust_baseline":
        return RobustBaseline(asset, cfg, chosen or None)
    if len(chosen) == 1:
        raise ValueError(
            f"asset {asset}: anomaly model multivariate needs >= 2 tags, got {chosen}; "
            "use model: robust_baseline for a single signal"
        )
    return MultivariateModel(asset, cfg, chosen or None)


def model_from_state(st: State) -> MultivariateModel | RobustBaseline:
    if st.get("kind") == "robust_baseline":
        return RobustBaseline.from_state(st)
    return MultivariateModel.from_state(st)


def feature_tags(settings: Settings, asset: str) -> list[str]:
    """The asset's numeric process-value tags across its devices, in config order."""
    out: list[str] = []
    for d in settings.devices:
        if d.asset != asset:
            continue
        for tag in d.tags:
            if tag.role is TagRole.PROCESS_VALUE and tag.type in _NUMERIC_TYPES and tag.name not in out:
                out.append(tag.name)
    return out


class AnomalyStage:
    """One model per asset, created on first use from the asset's config; the worker's whole API."""

    def __init__(self, settings: Settings | None = None, overrides: dict[str, AnomalySettings] | None = None) -> None:
        self.settings = settings
        self.overrides = dict(overrides or {})
        self.models: dict[str, MultivariateModel | RobustBaseline | None] = {}

    def _config(self, asset: str) -> tuple[AnomalySettings | None, list[str]]:
        if asset in self.overrides:
            tags = feature_tags(self.settings, asset) if self.settings else []
            return self.overrides[asset], tags
        if self.settings is None:
            return None, []
        try:
            cfg = self.settings.asset(asset).anomaly
        except KeyError:
            cfg = None  # an asset the config does not declare: defaults, tags learned from the frame
        return cfg, feature_tags(self.settings, asset)

    def _model(self, asset: str) -> MultivariateModel | RobustBaseline | None:
        if asset not in self.models:
            cfg, tags = self._config(asset)
            self.models[asset] = model_for(asset, cfg, tags)
        return self.models[asset]

    def score(self, asset: str, frame: Record) -> Record | None:
        """An AnomalyScore record for this frame, or None (detection off, or no feature value yet)."""
        model = self._model(asset)
        return model.update(frame) if model is not None else None

    def checkpoint(self, asset: str) -> State | None:
        model = self.models.get(asset)
        return model.to_state() if model is not None else None

    def restore(self, asset: str, state: State | None) -> None:
        """Continue from a checkpoint (after a restart or a rebalance); None drops the asset's model."""
        if state is None:
            self.models.pop(asset, None)
            return
        self.models[asset] = model_from_state(state)

    def assets(self) -> Iterable[str]:
        return list(self.models)
