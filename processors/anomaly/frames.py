"""Frames into model inputs and model outputs into AnomalyScore records, shared by every anomaly model.

`FeatureVector` turns a ReadingFrame into a fixed-order vector of an asset's feature tags, carrying a tag's last
value while it is missing or BAD, treating NaN, inf, text, bools and absurd magnitudes as missing, and going on
without a configured tag that never had a value. `score_record` builds the AnomalyScore record, `shares` the
per-tag contributions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

Record = dict[str, Any]
Frame = Mapping[str, Any]  # a ReadingFrame (plantstream.core.records), decoded or built; read only
State = dict[str, Any]

# a value whose fourth power (the covariance of the squared features) overflows is no measurement: treated as missing
_MAX_ABS = 1e60
# frames a configured tag may stay without any value before the model goes on without it
_MISSING_TAG_FRAMES = 50


def scan_time_us(frame: Frame) -> int:
    t = frame["scan_time"]
    if isinstance(t, datetime):  # a decoder that keeps logical types
        return int(t.timestamp() * 1_000_000)
    return int(t)


def _number(value: Any) -> float | None:
    """A process value the models can square and multiply; None for bools, text, NaN, inf and absurd magnitudes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return f if -_MAX_ABS <= f <= _MAX_ABS else None


def numeric_good_values(frame: Frame) -> dict[str, float]:
    """tag -> value of the frame's GOOD numeric samples (bools and strings are not process values)."""
    out: dict[str, float] = {}
    for s in frame.get("samples", ()):
        if s.get("quality", "GOOD") != "GOOD":
            continue
        x = _number(s.get("value"))
        if x is not None:
            out[s["tag"]] = x
    return out


class FeatureVector:
    """Turns a frame into a fixed-order vector, carrying a tag's last value while it is missing or BAD."""

    def __init__(self, tags: Sequence[str] | None) -> None:
        self.tags: list[str] | None = list(tags) if tags else None
        self.last: list[float | None] = [None] * len(self.tags) if self.tags else []
        self.carried = 0  # samples filled in from the last value (missing or BAD): a data-quality note
        self._index: dict[str, int] = {t: i for i, t in enumerate(self.tags or ())}
        self._complete = False  # every tag seen once: from then on there is always a vector
        self.waited = 0  # frames seen while some tag had never had a value
        self.dropped: list[str] = []  # configured tags that never had a value: the model goes on without them

    def _fix_tags(self, tags: list[str]) -> None:
        self.tags = tags
        self.last = [None] * len(tags)
        self._index = {t: i for i, t in enumerate(tags)}

    def __call__(self, frame: Frame) -> np.ndarray | None:
        if self.tags is None:
            values = numeric_good_values(frame)
            if not values:
                return None
            # no configured tags: the first frame with numbers fixes them (sorted, so restarts agree)
            self._fix_tags(sorted(values))
        # one pass over the samples into the per-asset slots (no per-frame dict); the last sample of a tag wins
        index, last = self._index, self.last
        fresh = [False] * len(last)
        for s in frame.get("samples", ()):
            i = index.get(s["tag"])
            if i is None or s.get("quality", "GOOD") != "GOOD":
                continue
            v = s.get("value")
            if type(v) is not float:
                v = _number(v)
                if v is None:
                    continue
            elif not -_MAX_ABS <= v <= _MAX_ABS:  # nan, inf or an absurd magnitude
                continue
            last[i] = v
            fresh[i] = True
        if not all(fresh):
            self.carried += sum(1 for f, v in zip(fresh, last, strict=True) if not f and v is not None)
        if not self._complete:
            if any(v is None for v in last):
                self.waited += 1
                if self.waited < _MISSING_TAG_FRAMES or all(v is None for v in last):
                    return None  # a feature never seen yet: nothing to carry
                self._drop_missing()
            self._complete = True
        return np.array(self.last, dtype=float)

    def _drop_missing(self) -> None:
        """Go on without the tags that never had a usable value (all null, BAD, text or non-finite)."""
        assert self.tags is not None
        keep = [i for i, v in enumerate(self.last) if v is not None]
        self.dropped += [self.tags[i] for i in range(len(self.tags)) if i not in keep]
        values = [self.last[i] for i in keep]
        self._fix_tags([self.tags[i] for i in keep])
        self.last = values

    def keep_first(self) -> None:
        """Keep the first tag only (a univariate model given several)."""
        assert self.tags is not None
        first = self.last[0]
        self._fix_tags(self.tags[:1])
        self.last[0] = first

    def to_state(self) -> State:
        return {
            "tags": self.tags,
            "last": self.last,
            "carried": self.carried,
            "waited": self.waited,
            "dropped": self.dropped,
        }

    @classmethod
    def from_state(cls, st: State) -> FeatureVector:
        fv = cls(st["tags"])
        fv.last = list(st["last"])
        fv.carried = st["carried"]
        fv.waited = st.get("waited", 0)
        fv.dropped = list(st.get("dropped", []))
        return fv


def score_record(
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


def shares(tags: Sequence[str], weights: np.ndarray, active: np.ndarray | None = None) -> dict[str, float]:
    if active is not None and not active.all():
        tags = [t for t, a in zip(tags, active.tolist(), strict=True) if a]
        weights = weights[active]
    total = float(weights.sum())
    if not total > 0:
        return {}
    return dict(zip(tags, (weights / total).tolist(), strict=True))
