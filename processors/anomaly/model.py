"""Online anomaly detection per asset: one model update per ReadingFrame, scores as AnomalyScore records.

Pure logic, no Faust: the worker keeps one `AnomalyStage`, calls `score(asset, frame)` per frame and
checkpoints `checkpoint(asset)` (JSON-able) into its table; `restore(asset, state)` continues exactly.

Multivariate model (`MultivariateModel`, "xreg-multiscale/5"; docs/anomaly.md has the figures):

1. Features: each signal, two slow first-order filters of it (30 and 300 frames: lagging relations such
   as a bearing temperature following the power become linear) and its square (curved relations such
   as pressure ~ flow²). An exponentially weighted mean/covariance of them is learned online.
2. Cross-signal regression: every `_REFRESH` frames (`_REFRESH_WARM` once warm), a ridge regression on the
   correlation matrix (scale-free: sensors in bar and in m³/h weigh the same) predicts each signal from the features of
   the *other* signals. Its residual is what a correlated fault breaks (a clogged filter: pressure up
   while flow falls; cavitation: flow down at the same speed) and what a single sensor's fault shows.
3. Three detectors per signal on the residual standardised by its typical size under the current fit:
   fast (EWMA of z² with weight `smoothing`: spikes), rough (EWMA of the squared frame-to-frame change
   of the residual: noise bursts, oscillation) and slow (EWMA of the signed residual over ~120 frames:
   drifts, wear). Each is compared with its own normal level, learned on normal frames only. Once the live
   fit has seen a whole window, the slow one judges against a reference 20-40 minutes old (a snapshot of the
   fit and of its normal level, see `_REF_EVERY`): the live fit learns a drift as it grows, the reference
   does not.
4. Thresholds: per detector, `quantile` of its recent normal maximum over signals (a decayed
   histogram, O(1) memory); score = max over detectors of (statistic / quantile). The alarm level is
   `threshold_margin`, raised while the thresholds are young (right after warm-up they rest on a few
   hundred frames). An alarm rises on accumulated evidence (a CUSUM of log(score / level): `debounce_frames`
   frames at twice the level, fewer far above it, many just above it) and clears after max(3 x debounce, 30)
   frames below 0.9 x the level (one incident stays one alarm); it re-arms when a signal that was not among
   its own turns far anomalous, so a long alarm does not hide the next fault.
5. Learning: the residual sizes, detector levels and thresholds learn only from frames under the
   threshold, so a slow fault is not absorbed as normal; the relations (covariance) keep learning
   during an alarm, so an operating point the warm-up never saw does not keep a false alarm up.
   After `relearn_after_frames` in alarm the model warms up again (a lasting change is the new normal).
6. Stuck sensors (a tag that normally varies repeating one value for `stuck_frames` frames) are
   flagged explicitly: they break no relation while the load is steady.
7. Machine state: `AnomalyStage` reads the asset's machine_state tag (config role); while the machine
   is not RUNNING the model neither learns nor judges, and after a restart it settles for a while.

Univariate baseline (`RobustBaseline`, "rolling-median-mad/1"): |x - rolling median| / (1.4826 MAD),
smoothed and thresholded the same way, for assets with a single signal.

Per-tag contributions: each signal's largest detector ratio, normalised to sum 1 and smoothed with
`smoothing`, so an alert names the signals that drove it.
"""

from __future__ import annotations

import itertools
import math
import pickle
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
from river import stats

from plantstream.core import logs
from plantstream.core import machine_state as ms
from plantstream.core.config import AnomalySettings, ReplayTag, Settings, TagRole, TagType
from processors import oee
from processors.anomaly import kernels
from processors.anomaly.estimators import Debounce, DecayedQuantiles, cross_coefficients
from processors.anomaly.frames import FeatureVector, Frame, numeric_good_values, scan_time_us, score_record, shares
from processors.anomaly.river_detectors import RiverModel

Record = dict[str, Any]
State = dict[str, Any]
log = logs.get(__name__)

_NUMERIC_TYPES = {t for t in TagType if t not in (TagType.BOOL, TagType.STRING)}
# multivariate: 1 was the PCA T²/SPE model, 2 xreg-multiscale/2, 3 xreg-multiscale/3, 4 xreg-multiscale/4
_STATE_VERSION = 5
_BASELINE_STATE_VERSION = 1
_QUANTILE_WINDOW = 1800  # recent normal scores the threshold quantile looks at (robust baseline)
_REFRESH = 25  # frames between refits of the cross-signal regression while warming up
_REFRESH_WARM = 100  # and once warm: the covariance then moves with a window of `window_frames`
_TAUS = (30.0, 300.0)  # frames: time constants of the slow filtered copies of each signal
_GAINS = 1.0 - np.exp(-1.0 / np.asarray(_TAUS))
# in correlation units: keeps collinear sensors from blowing up the regression; small, because curved relations
# (pressure ~ flow²) live in the small-eigenvalue directions that a larger ridge shrinks into the residual
_RIDGE = 0.003
_DETECTORS = ("fast", "rough", "slow")
_ROUGH_ALPHA = 1.0 / 20  # EWMA weight of the roughness (squared change of the residual) detector
_SLOW_ALPHA = 1.0 / 120  # EWMA weight of the drift (signed residual) detector
_VAR_FLOOR = 1e-12
# a feature whose spread over the covariance window is below this share of its level (or exactly 0) carries no
# information: it is left out of the fit instead of dividing by a zero variance (issue 15: a tag at 0.0 made NaN)
_DEGENERATE_REL = 1e-9
_DEGENERATE_ABS = 1e-150
_SAY_LEFT_OUT_AFTER = 20  # frames: fewer cannot show whether a signal varies
_MIN_WARMUP = 120  # frames: the shortest warm-up however slow the sampling (relations, then sizes, then thresholds)
_PLAN_GAPS = 10  # frame intervals looked at before the warm-up's length is fixed
_TRAIN_WARMUP_SHARE = 0.6  # of a training history: warm-up; the rest settles the thresholds
# scores are capped: a ratio to the threshold beyond this says nothing more and must stay finite through smoothing
_SCORE_CAP = 1e9
_WINSOR = 9.0  # squared deviations beyond 9x the typical one (3 sigma) are clipped while learning sizes
_DETECTOR_MEMORY = 3  # x window_frames: memory of the detectors' normal levels
_HYSTERESIS = 0.9  # an alarm clears below this share of the threshold
# drift reference: a snapshot of the fit (and of the drift detector's normal level) every _REF_EVERY frames; the drift
# detector judges against the snapshot before the latest, so its reference is _REF_EVERY to 2 x _REF_EVERY frames
# old and a drift growing over the last 20-40 minutes has not been learned into it
_REF_EVERY = 1200
# the drift detector's statistic is in units of its normal spread at the reference, so its threshold has a known
# scale (max over signals of a standardised deviation: ~3.3-3.9 at the 0.995 quantile for 5-50 Gaussian signals);
# capped there with room for heavy tails, a threshold learned from a young model's wander cannot blind it for hours
_SLOW_Q_CAP = 6.0
_REF_ARRAYS = ("proj", "mean", "dm", "dv")
# a young threshold needs stronger evidence: the margin grows by this much per unit of the quantile's excess relative
# uncertainty over its settled one (1/sqrt(expected exceedances): 0.82 at the 300 warm-up seeds of q 0.995, 0.24 once
# settled), so it is x5.6 right after warm-up, x2.4 after 900 normal frames and back to 1 after ~3000
_YOUNG_MARGIN = 8.0
# during an alarm, a signal that was not among the alarm's own and is this many thresholds above for
# `debounce_frames` frames in a row is a new incident: the alarm re-arms, so a long alarm does not hide the next fault
_REARM_STRENGTH = 4.0


class AnomalyModel(Protocol):
    name: str

    def update(self, frame: Frame) -> Record | None:
        """Score one frame and learn from it; None when the frame holds none of the model's features."""

    def to_state(self) -> State:
        """JSON-able state from which `from_state` rebuilds a model that continues identically."""


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


class MultivariateModel:
    """Cross-signal regression residuals watched on three time scales (see the module doc)."""

    name = "xreg-multiscale/5"

    def __init__(self, asset: str, cfg: AnomalySettings, tags: Sequence[str] | None = None) -> None:
        self.asset, self.cfg = asset, cfg
        self.features = FeatureVector(cfg.tags or tags)
        self.quantiles = DecayedQuantiles(cfg.quantile, _QUANTILE_WINDOW, len(_DETECTORS))
        self.debounce = _debounce(cfg)
        self._alpha = np.array([cfg.smoothing, _ROUGH_ALPHA, _SLOW_ALPHA])  # EWMA weight per detector
        self.n = 0  # frames learned
        self.frames = 0  # frames scored
        self.rebaselines = 0
        self.settle = 0  # frames left to ignore after the machine resumed running
        self.stopped = False
        self.score = 0.0
        self.x_prev: np.ndarray | None = None  # last feature vector (stuck-sensor runs)
        self.mean: np.ndarray | None = None  # EW mean/covariance of the augmented features
        self.cov: np.ndarray | None = None
        self.coef: np.ndarray | None = None  # p x m cross-signal regression (standardised)
        self.sd_fit: np.ndarray | None = None  # feature spreads the regression was fitted with
        self.proj: np.ndarray | None = None  # p x m: residual = proj @ (y - mean), from coef and sd_fit
        self.fit_var: np.ndarray | None = None  # the fitted regression's residual variance (its window)
        self.filt: np.ndarray | None = None  # slow first-order filters of the signals, one block per tau
        self.r_prev: np.ndarray | None = None  # last residual (standardised units of each signal)
        self.d_var: np.ndarray | None = None  # typical squared frame-to-frame change of the residual
        self.z_scale: np.ndarray | None = None  # 2 x p: 1 / typical size of the residual and of its change
        self.res_n = 0
        self.det: np.ndarray | None = None  # 3 x p detector states: fast z², rough dz², slow z
        self.det_mean: np.ndarray | None = None  # their normal mean and variance, 3 x p
        self.det_var: np.ndarray | None = None
        self.det_n = 0
        self.contrib: np.ndarray | None = None
        # drift reference (see _REF_EVERY): the fit's projection (scaled to the residual sizes of then), its mean and
        # the drift detector's normal mean/variance, as judged against (ref_*) and as the next reference (cand_*)
        self.ref_proj: np.ndarray | None = None
        self.ref_mean: np.ndarray | None = None
        self.ref_dm: np.ndarray | None = None
        self.ref_dv: np.ndarray | None = None
        self.cand_proj: np.ndarray | None = None
        self.cand_mean: np.ndarray | None = None
        self.cand_dm: np.ndarray | None = None
        self.cand_dv: np.ndarray | None = None
        self.ref_age = 0  # frames judged since the last snapshot
        # the signals of the current alarm (those above the threshold in its first frames), frames of the alarm so
        # far, and frames in a row that another signal has been far above the threshold (see _REARM_STRENGTH)
        self.alarm_tags: np.ndarray | None = None
        self.alarm_age = 0
        self.new_run = 0
        self.run_len: np.ndarray | None = None  # identical values in a row, per tag
        self.max_run: np.ndarray | None = None  # longest such run seen while warming up
        self._stuck_limit: np.ndarray | None = None  # run length that means stuck (from max_run)
        self.active: np.ndarray | None = None  # signals in the model (a constant one is left out), from the last fit
        # readiness: the warm-up's length in frames once planned (0: not yet, see _plan_warmup), the first frame's
        # time, the time the model became ready (0: warming up), and whether it was trained from a normal history
        self.warmup = 0
        self.first_t = 0
        self.ready_at = 0
        self.trained = False
        self.gaps: list[int] = []  # the first frame intervals (us), from which the warm-up is planned
        self.last_t = 0
        self._said_out: list[str] = []  # the left-out tags last logged

    # -- learning ------------------------------------------------------------------------------

    def _learn_cov(self, dy: np.ndarray) -> None:
        """Learn from one frame given its deviation from the mean, `dy` = y - mean."""
        assert self.mean is not None and self.cov is not None
        # exact average while young, then an exponential window of `window_frames`
        a = max(1.0 / (self.n + 1), 1.0 / self.cfg.window_frames)
        # in place: mean += a d; cov = (1 - a) (cov + a d d')
        kernels.learn_cov(self.mean, self.cov, dy, a)
        self.n += 1
        # the covariance moves slowly: refit often while it is being learned, less once warm
        every = _REFRESH if self.n < self._w() else _REFRESH_WARM
        if self.n % every == 0 or self.coef is None:
            self._refit()

    def _refit(self) -> None:
        assert self.cov is not None and self.mean is not None
        sd = np.sqrt(np.maximum(np.diag(self.cov), 0.0))
        # a feature without spread (a closed valve at 0.0, an idle motor, a signal's square when it only takes +-1)
        # carries no information: it neither predicts nor is predicted; a signal whose own value has no spread is
        # left out of the model (its residual is 0) until it varies
        flat = sd <= _DEGENERATE_REL * np.abs(self.mean) + _DEGENERATE_ABS
        p = len(self.features.tags or [])
        if flat.any():
            sd = np.where(flat, 1.0, sd)
            corr = self.cov / np.outer(sd, sd)
            corr[flat, :] = 0.0
            corr[:, flat] = 0.0
            corr[flat, flat] = 1.0
        else:
            corr = self.cov / np.outer(sd, sd)
        owner = np.tile(np.arange(p), len(corr) // p)
        self.coef = np.ascontiguousarray(cross_coefficients(corr, owner, p, _RIDGE))
        self.sd_fit = sd
        self._set_active(~flat[:p])
        self._project()
        assert self.proj is not None
        # the residual's size under *this* fit, over the covariance's window: it follows the fit as it improves
        # (a size learned from the residuals of earlier, rougher fits stays inflated for hours and hides drifts)
        self.fit_var = np.einsum("im,mk,ik->i", self.proj, self.cov, self.proj)
        self._scale_residual()

    def _set_active(self, active: np.ndarray) -> None:
        """Signals in the model; a signal joining after being left out starts its detectors at their normal level."""
        tags = self.features.tags or []
        before = self.active
        self.active = active
        if before is not None and np.array_equal(before, active):
            return
        out = [t for t, a in zip(tags, active.tolist(), strict=True) if not a]
        if out and self.n >= _SAY_LEFT_OUT_AFTER and out != self._said_out:
            self._said_out = out
            log.warning(
                "asset %s: tag(s) %s have no spread (constant) over the model's window: left out of the anomaly "
                "model until they vary",
                self.asset,
                out,
            )
        if before is None:
            return
        joined = active & ~before
        if joined.any():
            log.info(
                "asset %s: tag(s) %s vary now: back in the anomaly model", self.asset, list(np.array(tags)[joined])
            )
            self._neutral_detectors(joined)

    def _neutral_detectors(self, idx: np.ndarray) -> None:
        """Detector states of the signals `idx` reset to the typical normal level of the others (their own were
        learned on a residual fixed at 0, so any motion would read as infinitely anomalous)."""
        others = self.active & ~idx if self.active is not None else ~idx
        if not others.any():
            others = np.ones_like(idx)

        def typical(a: np.ndarray | None, neutral: float) -> None:
            if a is None:
                return
            if a.ndim == 1:
                a[idx] = float(np.median(a[others])) if others.any() else neutral
            else:
                a[:, idx] = np.median(a[:, others], axis=1)[:, None]

        typical(self.det_mean, 1.0)
        typical(self.det_var, 1.0)
        for pre in ("ref", "cand"):
            typical(getattr(self, pre + "_dm"), 0.0)
            typical(getattr(self, pre + "_dv"), 1.0)
        if self.det is not None and self.det_mean is not None:
            self.det[:, idx] = self.det_mean[:, idx]
        if self.d_var is not None and self.fit_var is not None:
            self.d_var[idx] = 2.0 * np.maximum(self.fit_var[idx], _VAR_FLOOR)  # a white residual's change
            self._scale_change()
        if self.r_prev is not None:
            self.r_prev = self.r_prev.copy()
            self.r_prev[idx] = 0.0

    def left_out(self) -> list[str]:
        """The tags the model does not use: never had a value, or no spread over the model's window."""
        tags = self.features.tags or []
        flat = [] if self.active is None else [t for t, a in zip(tags, self.active.tolist(), strict=True) if not a]
        return self.features.dropped + flat

    def _project(self) -> None:
        # standardising and predicting folded into one p x m matrix: one product per frame
        assert self.coef is not None and self.sd_fit is not None
        p = self.coef.shape[0]
        own = np.zeros_like(self.coef)
        own[:, :p] = np.eye(p)
        proj = (own - self.coef) / self.sd_fit
        if self.active is not None and not self.active.all():
            proj[~self.active, :] = 0.0
        self.proj = np.ascontiguousarray(proj)

    def _learn_residual(self, rd: np.ndarray) -> None:
        """Learn the typical squared frame-to-frame change of the residual (`rd`: 2 x p, residual and change)."""
        b = max(1.0 / (self.res_n + 1), 1.0 / self.cfg.window_frames)
        if self.d_var is None:
            self.d_var = rd[1] * rd[1]
            self.res_n += 1
            self._scale_change()
            return
        if self.z_scale is None:
            self.z_scale = np.ones((2, len(self.d_var)))
        # winsorised: one wild frame that slipped through must not inflate the normal size for an hour
        kernels.learn_residual(rd[1], self.d_var, b, self.res_n >= 20, _WINSOR, _VAR_FLOOR, self.z_scale[1])
        self.res_n += 1

    def _scale_change(self) -> None:
        assert self.d_var is not None
        if self.z_scale is None:
            self.z_scale = np.ones((2, len(self.d_var)))
        self.z_scale[1] = 1.0 / np.sqrt(np.maximum(self.d_var, _VAR_FLOOR))

    def _scale_residual(self) -> None:
        assert self.fit_var is not None
        if self.z_scale is None:
            self.z_scale = np.ones((2, len(self.fit_var)))
        self.z_scale[0] = 1.0 / np.sqrt(np.maximum(self.fit_var, _VAR_FLOOR))

    def _learn_detectors(self) -> None:
        assert self.det is not None
        # a longer memory than the model's, and winsorised: a fault creeping in below the threshold
        # must not teach the detectors that its deviations are normal
        b = max(1.0 / (self.det_n + 1), 1.0 / (_DETECTOR_MEMORY * self.cfg.window_frames))
        if self.det_mean is None or self.det_var is None:
            self.det_mean, self.det_var = self.det.copy(), np.zeros_like(self.det)
        else:
            kernels.learn_detectors(self.det, self.det_mean, self.det_var, b, self.det_n >= 20, _WINSOR)
        self.det_n += 1

    # -- scoring -------------------------------------------------------------------------------

    def _residual(self, dy: np.ndarray) -> np.ndarray:
        """-> 2 x p: the residual of each signal against the others' prediction, and its change since the
        last frame (standardised units of each signal)."""
        assert self.proj is not None
        rd = np.empty((2, self.proj.shape[0]))
        np.matmul(self.proj, dy, out=rd[0])
        if self.r_prev is None:
            rd[1] = 0.0
        else:
            np.subtract(rd[0], self.r_prev, out=rd[1])
        self.r_prev = rd[0]
        return rd

    def _detect(self, rd: np.ndarray, z_ref: np.ndarray | None = None) -> None:
        """Update the detectors; `z_ref` (the residual against the drift reference) feeds the slow one when given."""
        assert self.z_scale is not None
        if self.det is None:
            self.det = np.zeros((3, rd.shape[1]))
            self.det[:2] = 1.0  # each detector starts at its normal level
        else:
            # the residual in the fit's own residual size, its change in the learned one
            ref = rd[0] if z_ref is None else z_ref
            kernels.detect(rd, self.z_scale, ref, z_ref is not None, self.det, self._alpha)

    def _judge(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (per detector: max over signals of the standardised statistic, per detector and signal)."""
        assert self.det is not None and self.det_mean is not None and self.det_var is not None
        # fast and rough are energies (heavy-tailed, positive): their ratio to the normal level; slow is a
        # signed mean: its distance from normal in its own normal spread, either way (drifts go up or down)
        if self.ref_dm is not None and self.ref_dv is not None:
            # against the normal level as it was at the reference: a drift creeping in under the threshold widens
            # the live spread (winsorised at 3 sigma, it can grow by e every ~1/(8 b) frames) and would hide itself
            dm, dv = self.ref_dm, self.ref_dv
        else:
            dm, dv = self.det_mean[2], self.det_var[2]
        u = np.empty_like(self.det)
        top = np.empty(3)
        kernels.judge(self.det, self.det_mean, dm, dv, _VAR_FLOOR, u, top)
        return top, u

    def _stuck(self, x: np.ndarray, prev: np.ndarray | None, learning: bool) -> np.ndarray:
        assert self.run_len is not None and self.max_run is not None
        set_limit = learning or self._stuck_limit is None
        if self._stuck_limit is None:
            self._stuck_limit = np.empty_like(self.max_run)
        # a tag left out for having no spread is constant by nature, not stuck
        active = self.active if self.active is not None else np.ones(len(x), dtype=bool)
        stuck = np.empty(len(x), dtype=bool)
        # the longest run is learned in warm-up only: later, a long run is exactly what we look for; a tag that
        # repeats normally (quantised, idle) needs a much longer run to count as stuck
        kernels.stuck(
            x,
            x if prev is None else prev,
            self.run_len,
            self.max_run,
            self._stuck_limit,
            active,
            prev is not None,
            learning,
            set_limit,
            float(self.cfg.stuck_frames),
            stuck,
        )
        return stuck

    def update(self, frame: Frame, running: bool = True) -> Record | None:
        """Score one frame and learn from it; `running` False (machine stopped) pauses the model."""
        x = self.features(frame)
        if x is None:
            return None
        prev, self.x_prev = self.x_prev, x
        t = scan_time_us(frame)
        tags = self.features.tags or []
        self.frames += 1
        if not running:
            return self._pause(t)
        p = len(x)
        if self.stopped:
            # back to running: the filters restart from here and a short settling period is not judged
            self.stopped, self.filt, self.r_prev, self.det = False, None, None, None
            self.settle = _settle_frames(self.cfg)
        # slow first-order filters of every signal join the features: lagging relations (a bearing
        # temperature following the power over minutes) become linear ones a regression can hold
        # squares make curved relations (pressure ~ flow², power ~ speed³) closer to linear ones: y = [x, filt, x²]
        dy: np.ndarray | None = None
        if self.filt is None or self.mean is None:
            if self.filt is None:
                self.filt = np.tile(x, len(_TAUS))
            else:
                blocks = self.filt.reshape(len(_TAUS), p)  # a view: one row per time constant
                blocks += (x - blocks) * _GAINS[:, None]
            y = np.concatenate([x, self.filt, x * x])
        else:
            y, dy = np.empty(len(self.mean)), np.empty(len(self.mean))
            kernels.features(x, self.filt, _GAINS, self.mean, y, dy)
        if self.mean is None:
            self.mean, self.cov = y.copy(), np.zeros((len(y), len(y)))
            self.run_len, self.max_run, self.contrib = np.zeros(p), np.zeros(p), np.zeros(p)
        if self.warmup == 0:
            self._plan_warmup(t)
        w = self._w()
        warming = self.n < w
        if not warming and not self.ready_at:
            self.ready_at = t
            log.info(
                "asset %s: anomaly model ready after %d frames (%.0f min of data)%s",
                self.asset,
                self.n,
                (t - self.first_t) / 60e6,
                f"; left out: {self.left_out()}" if self.left_out() else "",
            )
        stuck = self._stuck(x, prev, learning=warming)
        if dy is None:
            dy = y - self.mean
        if self.n < w // 2:
            # first half of warm-up: the mean, covariance and regression only
            self._learn_cov(dy)
            return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        had_prev = self.r_prev is not None
        rd = self._residual(dy)
        if self.ref_proj is None and not warming and self.n >= self.cfg.window_frames and self.det_n >= _REF_EVERY:
            # the live fit has seen a whole window and the drift detector's normal spread is no longer young (a
            # snapshot of a young, narrow spread would hold a false alarm): from here it judges against references
            self._snapshot()
        z_ref = self._residual_vs_reference(y)
        if self.settle > 0 and not warming:
            self.settle -= 1
            if self.d_var is not None:
                self._detect(rd, z_ref)
            return score_record(self.asset, t, self.name, 0.0, self.cfg.threshold_margin, False, True, {})
        if warming:
            # second half: residual sizes and the detectors' normal ranges, then the thresholds
            if had_prev:  # the first residual has no change to learn from
                self._learn_residual(rd)
            if self.d_var is None:
                self._learn_cov(dy)
                return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
            self._detect(rd)
            self._learn_detectors()
            if self.n >= w * 3 // 4:
                top, _ = self._judge()
                self.quantiles.update(top)
            self._learn_cov(dy)
            return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        self._detect(rd, z_ref)
        top, u = self._judge()
        qs = np.maximum(self.quantiles.get(), _VAR_FLOOR)  # a new array: capping it leaves the histogram alone
        if z_ref is not None:
            qs[2] = min(qs[2], _SLOW_Q_CAP)
        weights = np.empty(len(x))
        raw = kernels.ratios(top, u, qs, _SCORE_CAP, weights)
        if not raw <= _SCORE_CAP:
            if raw != raw:  # NaN: a numeric state this guard's callers never expected; start over, do not stop
                log.error("asset %s: the anomaly model's state turned non-finite; it warms up again", self.asset)
                self._rebaseline()
                return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
            raw = _SCORE_CAP
        base = self.cfg.threshold_margin
        margin = base * self._young_factor()
        any_stuck = bool(stuck.any())
        if any_stuck:
            # a stuck sensor reads "perfectly normal": raise it explicitly and name it
            raw = max(raw, 3.0 * margin)
            weights = np.where(stuck, 1.0, 0.0)
        self.score = raw
        is_anomaly = self._alarm(raw, margin, weights, stuck)
        assert self.contrib is not None
        now = weights / max(float(weights.sum()), 1e-300)
        self.contrib = (1 - self.cfg.smoothing) * self.contrib + self.cfg.smoothing * now
        shares_now = shares(tags, self.contrib, self.active)
        if self.cfg.relearn_after_frames > 0 and self.debounce.above_run > self.cfg.relearn_after_frames:
            # a change that lasts this long is the new normal: warm up again on it
            log.warning(
                "asset %s: anomaly model in alarm for %d frames: the change is taken as the new normal, warming up "
                "again",
                self.asset,
                self.cfg.relearn_after_frames,
            )
            self._rebaseline()
        elif raw <= base and not is_anomaly:
            # learn from normal frames only, so a slow fault is not absorbed as the new normal (judged by the settled
            # margin: what a young threshold lets pass is not normal enough to teach it)
            self._learn_residual(rd)
            self._learn_detectors()
            self.quantiles.update(top)
            self._learn_cov(dy)
        elif not any_stuck and not self.trained:
            # in alarm the relations still learn: an operating point the warm-up never saw must not keep a
            # false alarm up for an hour. A model trained from a history declared normal (`train`) knows the
            # operating points: it holds the alarm while the fault lasts (until `relearn_after_frames`)
            self._learn_cov(dy)
        if self.ref_proj is not None:
            self.ref_age += 1
            if self.ref_age >= _REF_EVERY:
                self._snapshot()
        return score_record(self.asset, t, self.name, raw, margin, is_anomaly, False, shares_now)

    def _w(self) -> int:
        return self.warmup or self.cfg.warmup_frames

    def _plan_warmup(self, t: int) -> None:
        """Warm up for `warmup_minutes` of data or `warmup_frames` frames, whichever comes first (never fewer than
        _MIN_WARMUP frames), judged from the first frames' intervals: a slow-sampled asset (one frame per minute)
        is not kept waiting 20 hours, a 1 Hz one still learns on 20 minutes."""
        if not self.first_t:
            self.first_t = t
        elif len(self.gaps) < _PLAN_GAPS:
            self.gaps.append(t - self.last_t)
        self.last_t = t
        if len(self.gaps) >= _PLAN_GAPS:
            self.warmup = planned_warmup(self.cfg, self.gaps)

    def fit_history(self, frames: Iterable[Frame], count: int) -> int:
        """Train on `count` frames of history declared normal: warm up on the first 60 % (at most `warmup_frames`),
        let the thresholds settle on the rest, and hold alarms from then on (see `trained`). -> frames used."""
        if count < 2 * _MIN_WARMUP:
            raise ValueError(
                f"asset {self.asset}: {count} frames of history are too few to train on; need >= {2 * _MIN_WARMUP}"
            )
        self.warmup = min(self.cfg.warmup_frames, max(_MIN_WARMUP, int(count * _TRAIN_WARMUP_SHARE)))
        used = 0
        for f in frames:
            if self.update(f) is not None:
                used += 1
        if self.n < self.warmup:
            raise ValueError(
                f"asset {self.asset}: only {self.n} of {count} frames carried every feature tag; the model needs "
                f"{self.warmup} to be ready. Check the tags of the history"
            )
        self.trained = True
        return used

    def readiness(self) -> State:
        """What the model is doing, for logs, metrics and the dashboard."""
        w = self._w()
        return {
            "model": self.name,
            "ready": self.n >= w and self.frames > 0,
            "frames": self.n,
            "warmup_frames": w,
            "trained": self.trained,
            "left_out": self.left_out(),
            "rebaselines": self.rebaselines,
        }

    def _young_factor(self) -> float:
        """How much more than `threshold_margin` an alarm needs while the thresholds are young.

        The thresholds are 0.995 quantiles learned from a few hundred warm-up frames when judging starts: ~1.5
        expected exceedances, so the quantile itself is uncertain by ~80 % (1/sqrt of the exceedances), and the young
        fit meets operating points the warm-up never saw. The margin grows with that uncertainty beyond its settled
        level (the histogram's effective size is ~2 x its window) and returns to `threshold_margin` as normal frames
        come in; frames in alarm do not count, so a young model stays cautious until it has seen enough normal."""
        settled = 2 * _QUANTILE_WINDOW - 1
        if self.quantiles.n >= settled:
            return 1.0
        tail = 1.0 - self.cfg.quantile
        n = max(self.quantiles.n, 1)
        excess = 1.0 / math.sqrt(n * tail) - 1.0 / math.sqrt(settled * tail)
        return 1.0 + _YOUNG_MARGIN * max(excess, 0.0)

    def _alarm(self, raw: float, margin: float, weights: np.ndarray, stuck: np.ndarray) -> bool:
        """Debounce the score; re-arm when a signal outside the current alarm's set turns far anomalous.

        The score is a max over signals, so without re-arming a fault that starts during another's alarm (or during
        the return to normal after it) raises no alarm of its own and is lost."""
        k = self.cfg.debounce_frames
        if self.alarm_tags is None:
            self.alarm_tags = np.zeros(len(weights), dtype=bool)
        if self.debounce.active:
            fresh = ((weights > _REARM_STRENGTH * margin) | stuck) & ~self.alarm_tags
            self.new_run = self.new_run + 1 if fresh.any() else 0
            if self.new_run >= k:
                self.debounce.rearm()
        is_anomaly = self.debounce.step(raw, margin)
        if not is_anomaly:
            if self.alarm_age or self.new_run:
                self.alarm_tags[:] = False
                self.alarm_age = self.new_run = 0
        elif self.alarm_age < max(3 * k, 30):
            # the alarm's own signals: those above the threshold in its first frames
            self.alarm_age += 1
            self.alarm_tags |= (weights > margin) | stuck
        return is_anomaly

    def _residual_vs_reference(self, y: np.ndarray) -> np.ndarray | None:
        """The residual of each signal under the drift reference's fit and mean, in its residual size then; None
        before the first reference. The live fit learns a drift as it grows (its mean follows it and its residual
        size widens); the reference is older than the drift and sees all of it."""
        if self.ref_proj is None or self.ref_mean is None:
            return None
        z: np.ndarray = self.ref_proj @ (y - self.ref_mean)
        return z

    def _snapshot(self) -> None:
        """The next drift reference from the live fit; the previous snapshot becomes the reference."""
        assert self.proj is not None and self.mean is not None and self.z_scale is not None
        assert self.det_mean is not None and self.det_var is not None
        proj = np.ascontiguousarray(self.proj * self.z_scale[0][:, None])  # standardised residuals in one product
        snap = (proj, self.mean.copy(), self.det_mean[2].copy(), self.det_var[2].copy())
        first = self.cand_proj is None
        for k, v in zip(_REF_ARRAYS, snap, strict=True):
            if not first:
                setattr(self, "ref_" + k, getattr(self, "cand_" + k))
            else:
                setattr(self, "ref_" + k, v)
            setattr(self, "cand_" + k, v)
        self.ref_age = 0

    def _pause(self, t: int) -> Record:
        # a stopped machine is not a faulty one: no learning, no judging, and no alarm carried over
        self.stopped = True
        self.debounce.reset()
        self.score = 0.0
        warming = self.n < self._w()
        return score_record(
            self.asset, t, self.name, 0.0, 0.0 if warming else self.cfg.threshold_margin, False, warming, {}
        )

    def _rebaseline(self) -> None:
        self.n = self.res_n = self.det_n = 0
        self.mean = self.cov = self.coef = self.sd_fit = self.proj = self.fit_var = self.filt = self.r_prev = None
        self.d_var = self.z_scale = self.det = self.det_mean = self.det_var = None
        self.contrib = self.run_len = self.max_run = self._stuck_limit = self.alarm_tags = self.active = None
        self.alarm_age = self.new_run = 0
        for k in _REF_ARRAYS:
            setattr(self, "ref_" + k, None)
            setattr(self, "cand_" + k, None)
        self.ref_age = 0
        self.quantiles = DecayedQuantiles(self.cfg.quantile, _QUANTILE_WINDOW, len(_DETECTORS))
        self.debounce = _debounce(self.cfg)
        self.rebaselines += 1
        self.warmup, self.first_t, self.ready_at, self.trained, self.gaps = 0, 0, 0, False, []

    # -- checkpoints ---------------------------------------------------------------------------

    _ARRAYS = (
        "mean",
        "cov",
        "coef",
        "sd_fit",
        "fit_var",
        "filt",
        "r_prev",
        "d_var",
        "det",
        "det_mean",
        "det_var",
        "contrib",
        "run_len",
        "max_run",
        *(f"{pre}_{k}" for pre in ("ref", "cand") for k in _REF_ARRAYS),
    )
    _SCALARS = (
        "n",
        "frames",
        "rebaselines",
        "settle",
        "stopped",
        "score",
        "res_n",
        "det_n",
        "ref_age",
        "alarm_age",
        "new_run",
        "warmup",
        "first_t",
        "ready_at",
        "trained",
        "gaps",
        "last_t",
    )

    def to_state(self) -> State:
        st: State = {
            "kind": "multivariate",
            "version": _STATE_VERSION,
            "asset": self.asset,
            "config": self.cfg.model_dump(),
            "features": self.features.to_state(),
            "quantiles": self.quantiles.to_state(),
            "debounce": self.debounce.to_state(),
        }
        for k in self._SCALARS:
            st[k] = getattr(self, k)
        for k in self._ARRAYS:
            a = getattr(self, k)
            st[k] = None if a is None else a.tolist()
        st["alarm_tags"] = None if self.alarm_tags is None else self.alarm_tags.tolist()
        st["active"] = None if self.active is None else self.active.tolist()
        return st

    @classmethod
    def from_state(cls, st: State) -> MultivariateModel:
        _check_state(st, "multivariate")
        m = cls(st["asset"], AnomalySettings(**st["config"]))
        m.features = FeatureVector.from_state(st["features"])
        last = m.features.last
        m.x_prev = None if not last or any(v is None for v in last) else np.array(last, dtype=float)
        m.quantiles = DecayedQuantiles.from_state(st["quantiles"])
        m.debounce.load(st["debounce"])
        for k in cls._SCALARS:
            setattr(m, k, st.get(k, getattr(m, k)))  # readiness fields are newer than version 5: their defaults
        for k in cls._ARRAYS:
            # contiguous float arrays, as the live model has, so BLAS takes the same path bit for bit
            setattr(m, k, None if st[k] is None else np.ascontiguousarray(np.array(st[k], dtype=float)))
        m.alarm_tags = None if st["alarm_tags"] is None else np.array(st["alarm_tags"], dtype=bool)
        m.active = None if st.get("active") is None else np.array(st["active"], dtype=bool)
        if m.coef is not None:
            m._project()
        if m.fit_var is not None:
            m._scale_residual()
        if m.d_var is not None:
            m._scale_change()
        return m


def planned_warmup(cfg: AnomalySettings, gaps: Sequence[int]) -> int:
    """Warm-up frames: `warmup_minutes` of data at the median frame interval `gaps` (us) or `warmup_frames`,
    whichever is fewer, never under _MIN_WARMUP."""
    frames = cfg.warmup_frames
    dt = sorted(gaps)[len(gaps) // 2]
    if cfg.warmup_minutes is not None and dt > 0:
        frames = min(frames, max(_MIN_WARMUP, round(cfg.warmup_minutes * 60e6 / dt)))
    return frames


def _debounce(cfg: AnomalySettings) -> Debounce:
    k = cfg.debounce_frames
    return Debounce(k=k, clear=max(3 * k, 30), hysteresis=_HYSTERESIS)


def _settle_frames(cfg: AnomalySettings) -> int:
    return min(cfg.warmup_frames // 4, int(max(_TAUS)) // 5)


class RobustBaseline:
    """|x - rolling median| / (1.4826 rolling MAD) of one signal; river's rolling quantiles do the medians."""

    name = "rolling-median-mad/1"

    def __init__(self, asset: str, cfg: AnomalySettings, tags: Sequence[str] | None = None) -> None:
        self.asset, self.cfg = asset, cfg
        wanted = list(cfg.tags or tags or [])
        self.features = FeatureVector(wanted[:1] or None)
        self.window = min(cfg.window_frames, max(cfg.warmup_frames, 50))
        self.threshold = _Threshold(cfg.quantile, cfg.threshold_margin)
        self.alarm = _Alarm(cfg)
        self.n = 0
        self._median = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._mad = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._values: deque[float] = deque(maxlen=self.window)
        self._devs: deque[float] = deque(maxlen=self.window)
        self.rebaselines = 0
        self.warmup = 0  # planned from the first frame intervals, as the multivariate model's
        self.gaps: list[int] = []
        self.last_t = 0

    def _learn(self, x: float, dev: float) -> None:
        self._median.update(x)
        self._values.append(x)
        self._mad.update(dev)
        self._devs.append(dev)
        self.n += 1

    def update(self, frame: Frame) -> Record | None:
        vec = self.features(frame)
        if vec is None:
            return None
        if self.features.tags and len(self.features.tags) > 1:
            # the first frame fixed the tags: a univariate model keeps one
            self.features.keep_first()
            vec = vec[:1]
        x = float(vec[0])
        t = scan_time_us(frame)
        if not self.warmup:
            if self.last_t and len(self.gaps) < _PLAN_GAPS:
                self.gaps.append(t - self.last_t)
            self.last_t = t
            if len(self.gaps) >= _PLAN_GAPS:
                self.warmup = planned_warmup(self.cfg, self.gaps)
                self._resize(min(self.cfg.window_frames, max(self.warmup, 50)))
        w = self.warmup or self.cfg.warmup_frames
        tag = (self.features.tags or ["value"])[0]
        med = self._median.get()
        mad = self._mad.get()
        if med is None or mad is None:
            self._learn(x, 0.0)
            return score_record(self.asset, t, self.name, 0.0, 0.0, False, True, {})
        dev = abs(x - float(med))
        # a flat signal has MAD 0: floor relative to its level keeps the score finite and scale-free
        raw = dev / max(1.4826 * float(mad), 1e-9 * abs(float(med)), 1e-300)
        if self.n < w:
            score = self.alarm.step(raw, math.inf)[0]
            if self.n >= w // 2:
                self.threshold.learn(score)
            self._learn(x, dev)
            return score_record(self.asset, t, self.name, score, 0.0, False, True, {})
        threshold = self.threshold.value()
        score, is_anomaly, learn = self.alarm.step(raw, threshold)
        if self.alarm.relearn_due():
            self._rebaseline()
        elif learn:
            self.threshold.learn(score)
            self._learn(x, dev)
        return score_record(self.asset, t, self.name, score, threshold, is_anomaly, False, {tag: 1.0})

    def readiness(self) -> State:
        return {
            "model": self.name,
            "ready": self.n >= (self.warmup or self.cfg.warmup_frames),
            "frames": self.n,
            "warmup_frames": self.warmup or self.cfg.warmup_frames,
            "trained": False,
            "left_out": self.features.dropped,
            "rebaselines": self.rebaselines,
        }

    def _resize(self, window: int) -> None:
        """The rolling median's window follows the planned warm-up (a slow-sampled signal's normal is shorter in
        frames); the few values seen so far are replayed into it."""
        if window == self.window:
            return
        values, devs, n = list(self._values), list(self._devs), self.n
        self.window = window
        self._median = stats.RollingQuantile(q=0.5, window_size=window)
        self._mad = stats.RollingQuantile(q=0.5, window_size=window)
        self._values, self._devs = deque(maxlen=window), deque(maxlen=window)
        for x, d in zip(values, devs, strict=True):
            self._learn(x, d)
        self.n = n

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
            "version": _BASELINE_STATE_VERSION,
            "asset": self.asset,
            "config": self.cfg.model_dump(),
            "features": self.features.to_state(),
            "threshold": self.threshold.to_state(),
            "alarm": self.alarm.to_state(),
            "n": self.n,
            "rebaselines": self.rebaselines,
            "values": list(self._values),
            "devs": list(self._devs),
            "warmup": self.warmup,
            "gaps": self.gaps,
            "last_t": self.last_t,
        }

    @classmethod
    def from_state(cls, st: State) -> RobustBaseline:
        _check_state(st, "robust_baseline")
        m = cls(st["asset"], AnomalySettings(**st["config"]))
        m.features = FeatureVector.from_state(st["features"])
        m.threshold = _Threshold.from_state(st["threshold"])
        m.alarm.load(st["alarm"])
        if st.get("warmup"):
            m._resize(min(m.cfg.window_frames, max(st["warmup"], 50)))
        for x, d in zip(st["values"], st["devs"], strict=True):  # replay rebuilds the rolling medians
            m._learn(x, d)
        m.n, m.rebaselines = st["n"], st["rebaselines"]
        m.warmup, m.gaps, m.last_t = st.get("warmup", 0), list(st.get("gaps", [])), st.get("last_t", 0)
        return m


def _check_state(st: State, kind: str) -> None:
    version = _STATE_VERSION if kind == "multivariate" else _BASELINE_STATE_VERSION
    if st.get("kind") != kind or st.get("version") != version:
        raise ValueError(
            f"anomaly checkpoint is kind={st.get('kind')!r} version={st.get('version')!r}, expected {kind!r} "
            f"version {version}; drop the checkpoint so the model warms up again"
        )


AnyModel = MultivariateModel | RobustBaseline | RiverModel


def model_for(asset: str, cfg: AnomalySettings | None = None, tags: Sequence[str] | None = None) -> AnyModel | None:
    """The model an asset's settings ask for; None when detection is off (or it has no feature tags)."""
    cfg = cfg or AnomalySettings()
    chosen = list(cfg.tags or tags or [])
    kind = cfg.model
    if kind == "auto":
        # unknown tags (e.g. browsed OPC UA nodes) are learned from the first frame: assume several
        kind = "robust_baseline" if len(chosen) == 1 else "multivariate"
    if kind == "off":
        return None
    if kind == "river":
        return RiverModel(asset, cfg, chosen or None)
    if kind == "robust_baseline":
        return RobustBaseline(asset, cfg, chosen or None)
    if len(chosen) == 1:
        raise ValueError(
            f"asset {asset}: anomaly model multivariate needs >= 2 tags, got {chosen}; "
            "use model: robust_baseline for a single signal"
        )
    return MultivariateModel(asset, cfg, chosen or None)


def model_from_state(st: State) -> AnyModel:
    if st.get("kind") == "robust_baseline":
        return RobustBaseline.from_state(st)
    if st.get("kind") == "river":
        return RiverModel.from_state(st)
    return MultivariateModel.from_state(st)


def feature_tags(settings: Settings, asset: str) -> list[str]:
    """The asset's numeric process-value tags across its devices, in config order."""
    out: list[str] = []
    for tag in settings.asset_tags(asset):
        kind = getattr(tag, "type", None)
        numeric = kind in _NUMERIC_TYPES or (kind is None and isinstance(tag, ReplayTag))  # replayed: untyped
        if tag.role is TagRole.PROCESS_VALUE and numeric and tag.name not in out:
            out.append(tag.name)
    return out


class AnomalyStage:
    """One model per asset, created on first use from the asset's config; the worker's whole API."""

    def __init__(self, settings: Settings | None = None, overrides: dict[str, AnomalySettings] | None = None) -> None:
        kernels.warm()  # at start-up, not on some asset's first frames
        self.settings = settings
        self.overrides = dict(overrides or {})
        self.models: dict[str, AnyModel | None] = {}
        self.state_tags: dict[str, tuple[frozenset[str], ms.StateMap] | None] = {}
        self.last_running: dict[str, bool] = {}  # the state holds between frames that carry no state sample

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

    def _model(self, asset: str, frame: Frame) -> AnyModel | None:
        if asset not in self.models:
            cfg, tags = self._config(asset)
            if not (cfg and cfg.tags) and not tags and (cfg is None or cfg.model == "auto"):
                # tags learned from the data (a replayed or browsed asset): the first frame with numbers decides
                seen = numeric_good_values(frame)
                if not seen:
                    return None
                if len(seen) == 1:
                    tags = list(seen)
            self.models[asset] = model_for(asset, cfg, tags)
        return self.models[asset]

    def _running(self, asset: str, frame: Frame) -> bool:
        """False when the frame's machine_state sample says the asset is not RUNNING; True when unknown."""
        if asset not in self.state_tags:
            profile = oee.profile_for(self.settings, asset) if self.settings is not None else None
            self.state_tags[asset] = (profile.state_tags, profile.codes) if profile is not None else None
        spec = self.state_tags[asset]
        if spec is None:
            return self.last_running.get(asset, True)
        tags, codes = spec
        for s in frame.get("samples", ()):
            if s.get("tag") in tags and s.get("quality", "GOOD") == "GOOD":
                cls = ms.classify(s.get("value"), codes)
                if cls is not None:
                    self.last_running[asset] = cls[0] == ms.RUNNING
        return self.last_running.get(asset, True)

    def score(self, asset: str, frame: Frame) -> Record | None:
        """An AnomalyScore record for this frame, or None (detection off, or no feature value yet)."""
        model = self._model(asset, frame)
        if model is None:
            return None
        if isinstance(model, MultivariateModel):
            return model.update(frame, running=self._running(asset, frame))
        return model.update(frame)

    def readiness(self) -> dict[str, State]:
        """asset -> what its model is doing (warming up or ready, frames, left-out tags); for metrics and pages."""
        return {a: m.readiness() for a, m in self.models.items() if m is not None}

    def readiness_counts(self) -> dict[str, int]:
        """Models by state, for the worker's metrics (gauge plantstream_anomaly_models{state=ready|warming_up})."""
        states = [m["ready"] for m in self.readiness().values()]
        return {"ready": sum(states), "warming_up": len(states) - sum(states)}

    def train(self, asset: str, frames: Iterable[Frame], count: int) -> State:
        """A model for `asset` fitted on `count` frames of normal history (see `MultivariateModel.fit_history`); it
        replaces the asset's model and is returned as a checkpoint the worker restores."""
        self.models.pop(asset, None)
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise ValueError(f"asset {asset}: no frames to train on")
        model = self._model(asset, first)
        if model is None:
            raise ValueError(f"asset {asset}: anomaly detection is off or the history has no numeric tag")
        if not isinstance(model, MultivariateModel):
            raise ValueError(f"asset {asset}: only the multivariate model trains from history (this one: {model.name})")
        model.fit_history(itertools.chain([first], it), count)
        return model.to_state()

    def checkpoint(self, asset: str) -> State | None:
        model = self.models.get(asset)
        return model.to_state() if model is not None else None

    def restore(self, asset: str, state: State | None) -> None:
        """Continue from a checkpoint (after a restart or a rebalance); None drops the asset's model."""
        if state is None:
            self.models.pop(asset, None)
            return
        try:
            self.models[asset] = model_from_state(state)
        except (ValueError, KeyError, TypeError, AttributeError, ImportError, pickle.UnpicklingError) as exc:
            # a checkpoint of an older model version (an upgrade): that model cannot continue; warm up afresh
            log.warning("asset %s: %s", asset, exc)
            self.models.pop(asset, None)

    def assets(self) -> Iterable[str]:
        return list(self.models)
