"""River anomaly detectors (or a user's own River-style estimator) behind the same interface as the built-in models.

`RiverModel` feeds each frame's feature tags as a River dict to `preprocessing | detector` (or, for River's
univariate detectors such as `anomaly.GaussianScorer`, one detector per tag on its value), learns during warm-up
and then from normal frames only, and turns the detector's score into the same AnomalyScore as the built-in
model: score = detector score / threshold, where the threshold is the `quantile` of recent normal scores
(`adaptive`, the built-in model's decayed histogram) or the threshold of River's `anomaly.QuantileFilter` /
`ThresholdFilter`; an alarm needs `threshold_margin` and the same evidence debounce; contributions are each tag's
share of the standardised deviation (univariate detectors: of the per-tag scores).

Checkpoints are JSON with the River objects pickled (base64): River estimators have no other serialisation. The
checkpoint lives in the worker's own changelog topic, which is as trusted as the worker's state.
"""

from __future__ import annotations

import base64
import math
import pickle
from typing import Any

import numpy as np

from plantstream.core.config import AnomalySettings, RiverDetectorSettings, resolve_class
from processors.anomaly.estimators import Debounce, DecayedQuantile
from processors.anomaly.frames import FeatureVector, Frame, scan_time_us, score_record, shares

Record = dict[str, Any]
State = dict[str, Any]

_STATE_VERSION = 1
# River detectors whose score is bounded in [0, 1] (1 = most anomalous): a ratio to a quantile near 1 cannot reach a
# margin, so their score is judged as surprise -log(1 - score) (HalfSpaceTrees: -log of the mass a point falls in;
# GaussianScorer: -log of twice the tail probability, ~ z^2 / 2)
_BOUNDED = frozenset({"HalfSpaceTrees", "GaussianScorer"})
_HYSTERESIS = 0.9
_SCORE_CAP = 1e9
_TINY = 1e-12


def _build(settings: RiverDetectorSettings) -> tuple[Any, bool]:
    """(the detector pipeline, whether it is univariate: one detector per tag, fed y)."""
    from river import anomaly, base

    cls = resolve_class(settings.detector)
    per_tag = issubclass(cls, base.SupervisedAnomalyDetector)
    detector: Any = cls(**settings.params)
    if not per_tag and settings.preprocessing:
        detector = resolve_class(settings.preprocessing)() | detector
    if settings.threshold == "quantile_filter":
        detector = ("quantile", anomaly.QuantileFilter, detector)
    elif settings.threshold == "threshold_filter":
        detector = ("threshold", anomaly.ThresholdFilter, detector)
    return detector, per_tag


class RiverModel:
    """An asset's anomaly model made of a River detector; see the module doc."""

    def __init__(self, asset: str, cfg: AnomalySettings, tags: list[str] | None = None) -> None:
        self.asset, self.cfg = asset, cfg
        self.settings = cfg.river or RiverDetectorSettings()
        self.name = f"river:{self.settings.detector}"
        self.features = FeatureVector(cfg.tags or tags)
        self.template, self.per_tag = _build(self.settings)
        self.bounded = self.settings.detector.rpartition(".")[2] in _BOUNDED
        self.detectors: dict[str, Any] = {}  # tag -> detector (per tag) or "" -> the multivariate pipeline
        self.filter: Any = None
        self.quantile = DecayedQuantile(cfg.quantile, 1800)
        self.debounce = Debounce(k=cfg.debounce_frames, clear=max(3 * cfg.debounce_frames, 30), hysteresis=_HYSTERESIS)
        self.n = 0
        self.frames = 0
        self.rebaselines = 0
        self.mean: np.ndarray | None = None  # EW mean/variance of the features, for the contributions
        self.var: np.ndarray | None = None
        self.contrib: np.ndarray | None = None

    # -- the River side --------------------------------------------------------------------------

    def _detector(self, key: str) -> Any:
        if key not in self.detectors:
            t = self.template
            if isinstance(t, tuple):  # a River filter wraps a fresh clone of the detector
                kind, filter_cls, inner = t
                wrapped = inner.clone()
                if kind == "quantile":
                    self.detectors[key] = filter_cls(wrapped, q=self.cfg.quantile)
                else:
                    self.detectors[key] = filter_cls(wrapped, threshold=self.settings.threshold_value)
            else:
                self.detectors[key] = t.clone()
        return self.detectors[key]

    def _surprise(self, score: float) -> float:
        return -math.log(max(1.0 - score, _TINY)) if self.bounded else score

    def _scores(self, x: dict[str, float]) -> dict[str, float]:
        if self.per_tag:
            return {tag: self._surprise(float(self._detector(tag).score_one(None, y))) for tag, y in x.items()}
        return {"": self._surprise(float(self._detector("").score_one(x)))}

    def _learn(self, x: dict[str, float]) -> None:
        if self.per_tag:
            for tag, y in x.items():
                self._detector(tag).learn_one(None, y)
        else:
            self._detector("").learn_one(x)

    def _limit(self) -> float:
        """The score at the threshold: River's filter's own, or the quantile of recent normal scores."""
        if self.settings.threshold == "threshold_filter":
            return self._surprise(float(self.settings.threshold_value or 0.0))
        if self.settings.threshold == "quantile_filter":
            some = next(iter(self.detectors.values()), None)
            q = some.quantile.get() if some is not None else None
            return self._surprise(float(q)) if q is not None else math.inf
        q = self.quantile.get()
        return q if q is not None else math.inf

    # -- the model interface ---------------------------------------------------------------------

    def update(self, frame: Frame) -> Record | None:
        vec = self.features(frame)
        if vec is None:
            return None
        tags = self.features.tags or []
        x = dict(zip(tags, vec.tolist(), strict=True))
        t = scan_time_us(frame)
        self.frames += 1
        self._track(vec)
        raw = self._scores(x)
        top = max(raw.values()) if raw else 0.0
        if not math.isfinite(top):
            top = _SCORE_CAP
        if self.n < self.cfg.warmup_frames:
            self._learn(x)
            if self.n >= self.cfg.warmup_frames // 2:
                self.quantile.update(max(top, _TINY))
            self.n += 1
            return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        limit = max(self._limit(), _TINY)
        ratio = min(top / limit, _SCORE_CAP) if math.isfinite(limit) else 0.0
        margin = self.cfg.threshold_margin
        is_anomaly = self.debounce.step(ratio, margin)
        weights = self._weights(vec, raw, tags)
        self.contrib = (
            weights
            if self.contrib is None
            else (1 - self.cfg.smoothing) * self.contrib + (self.cfg.smoothing * weights)
        )
        if self.cfg.relearn_after_frames > 0 and self.debounce.above_run > self.cfg.relearn_after_frames:
            self._rebaseline()
        elif ratio <= margin and not is_anomaly:
            self._learn(x)
            self.quantile.update(max(top, _TINY))
            self.n += 1
        return score_record(self.asset, t, self.name, ratio, margin, is_anomaly, False, shares(tags, self.contrib))

    def _track(self, vec: np.ndarray) -> None:
        a = max(1.0 / (self.n + 1), 1.0 / self.cfg.window_frames)
        if self.mean is None or self.var is None:
            self.mean, self.var = vec.copy(), np.zeros_like(vec)
            return
        d = vec - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)

    def _weights(self, vec: np.ndarray, raw: dict[str, float], tags: list[str]) -> np.ndarray:
        if self.per_tag:
            w = np.array([max(raw.get(tag, 0.0), 0.0) for tag in tags])
        else:
            assert self.mean is not None and self.var is not None
            w = np.abs(vec - self.mean) / np.sqrt(np.maximum(self.var, _TINY))
        w = np.minimum(np.nan_to_num(w, nan=0.0, posinf=_SCORE_CAP), _SCORE_CAP)
        total = float(w.sum())
        return w / total if total > 0 else np.zeros_like(w)

    def _rebaseline(self) -> None:
        self.detectors.clear()
        self.quantile = DecayedQuantile(self.cfg.quantile, 1800)
        self.debounce.reset()
        self.n = 0
        self.rebaselines += 1

    def readiness(self) -> State:
        return {
            "model": self.name,
            "ready": self.n >= self.cfg.warmup_frames,
            "frames": self.n,
            "warmup_frames": self.cfg.warmup_frames,
            "trained": False,
            "left_out": self.features.dropped,
            "rebaselines": self.rebaselines,
        }

    # -- checkpoints -----------------------------------------------------------------------------

    def to_state(self) -> State:
        river = pickle.dumps(self.detectors, protocol=pickle.HIGHEST_PROTOCOL)
        return {
            "kind": "river",
            "version": _STATE_VERSION,
            "asset": self.asset,
            "config": self.cfg.model_dump(),
            "features": self.features.to_state(),
            "river": base64.b64encode(river).decode("ascii"),
            "quantile": self.quantile.to_state(),
            "debounce": self.debounce.to_state(),
            "n": self.n,
            "frames": self.frames,
            "rebaselines": self.rebaselines,
            "mean": None if self.mean is None else self.mean.tolist(),
            "var": None if self.var is None else self.var.tolist(),
            "contrib": None if self.contrib is None else self.contrib.tolist(),
        }

    @classmethod
    def from_state(cls, st: State) -> RiverModel:
        if st.get("kind") != "river" or st.get("version") != _STATE_VERSION:
            raise ValueError(
                f"anomaly checkpoint is kind={st.get('kind')!r} version={st.get('version')!r}, expected 'river' "
                f"version {_STATE_VERSION}; drop the checkpoint so the model warms up again"
            )
        m = cls(st["asset"], AnomalySettings(**st["config"]))
        m.features = FeatureVector.from_state(st["features"])
        m.detectors = pickle.loads(base64.b64decode(st["river"]))
        m.quantile = DecayedQuantile.from_state(st["quantile"])
        m.debounce.load(st["debounce"])
        m.n, m.frames, m.rebaselines = st["n"], st["frames"], st["rebaselines"]
        for k in ("mean", "var", "contrib"):
            setattr(m, k, None if st[k] is None else np.array(st[k], dtype=float))
        return m
