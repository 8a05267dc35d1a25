"""Per-tag window statistics of one pane as columns: many frames' samples added in one compiled loop.

Contract:
- `PaneAccs` holds the accumulators of processors/tag_stats.py for every tag of one asset's pane as
  arrays. `add_block(tags, values, times, quality)` adds frames of one layout (rows in arrival order,
  one column per tag) and gives bit for bit the accumulators `tag_stats.add` gives for the same samples
  in the same order (the same IEEE operations in the same order, compiled with numba, no fast-math):
  so the windows do not depend on how frames were batched, and a replay equals the live run.
- `items()` yields (tag, accumulator dict) in tag_stats' format, so event_windows' closing and merging,
  the changelog's JSON and everything reading panes see what they always saw; `from_accs` builds
  columns from that format (a pane restored from the changelog).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numba
import numpy as np

from processors import tag_stats

_NONE_T = np.iinfo(np.int64).min  # first_t/last_t of a tag without a good sample (None in tag_stats)


@numba.njit(cache=True, nogil=True)
def _accumulate(  # pragma: no cover - compiled; checked against tag_stats.add by the unit tests
    col: np.ndarray,
    values: np.ndarray,
    times: np.ndarray,
    good: np.ndarray,
    n: np.ndarray,
    bad: np.ndarray,
    mn: np.ndarray,
    mx: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    first: np.ndarray,
    first_t: np.ndarray,
    last: np.ndarray,
    last_t: np.ndarray,
    integ: np.ndarray,
) -> None:
    rows, cols = values.shape
    inf = np.inf
    for i in range(rows):
        for j in range(cols):
            a = col[j]
            x = values[i, j]
            if not good[i, j] or not (-inf < x < inf):
                bad[a] += 1
                continue
            t = times[i, j]
            had = n[a] > 0
            k = n[a] + 1
            mu = mean[a]
            delta = x - mu
            mu += delta / k
            n[a] = k
            mean[a] = mu
            m2[a] += delta * (x - mu)
            if not had or x < mn[a]:
                mn[a] = x
            if not had or x > mx[a]:
                mx[a] = x
            if not had or t < first_t[a]:
                first[a] = x
                first_t[a] = t
            if not had or t >= last_t[a]:
                if had:
                    integ[a] += last[a] * (t - last_t[a])
                last[a] = x
                last_t[a] = t


class PaneAccs:
    """tag_stats accumulators of many tags as arrays (see the module doc)."""

    __slots__ = (
        "_layouts",
        "bad",
        "first",
        "first_t",
        "index",
        "integ",
        "last",
        "last_t",
        "m2",
        "max",
        "mean",
        "min",
        "n",
        "tags",
        "units",
    )

    def __init__(self, capacity: int = 8) -> None:
        self.tags: list[str] = []
        self.units: list[str] = []
        self.index: dict[str, int] = {}
        self._layouts: dict[tuple[str, ...], np.ndarray] = {}  # a frame layout's tags -> their columns
        self.n = np.zeros(capacity, dtype=np.int64)
        self.bad = np.zeros(capacity, dtype=np.int64)
        self.min = np.zeros(capacity)
        self.max = np.zeros(capacity)
        self.mean = np.zeros(capacity)
        self.m2 = np.zeros(capacity)
        self.first = np.zeros(capacity)
        self.first_t = np.full(capacity, _NONE_T, dtype=np.int64)
        self.last = np.zeros(capacity)
        self.last_t = np.full(capacity, _NONE_T, dtype=np.int64)
        self.integ = np.zeros(capacity)

    def __len__(self) -> int:
        return len(self.tags)

    def _grow(self, need: int) -> None:
        cap = len(self.n)
        if need <= cap:
            return
        new = max(need, 2 * cap)
        for name in ("n", "bad", "min", "max", "mean", "m2", "first", "first_t", "last", "last_t", "integ"):
            old = getattr(self, name)
            fill = _NONE_T if name in ("first_t", "last_t") else 0
            arr = np.full(new, fill, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def columns(self, tags: Sequence[str], units: Sequence[str]) -> np.ndarray:
        """The accumulator index of each tag, adding tags not seen yet (with their unit)."""
        known = self._layouts.get(tags) if isinstance(tags, tuple) else None
        if known is not None:
            return known
        index = self.index
        out = np.empty(len(tags), dtype=np.int64)
        for j, tag in enumerate(tags):
            i = index.get(tag)
            if i is None:
                i = index[tag] = len(self.tags)
                self.tags.append(tag)
                self.units.append(units[j])
                self._grow(i + 1)
            out[j] = i
        if isinstance(tags, tuple):
            self._layouts[tags] = out
        return out

    def add_block(self, col: np.ndarray, values: np.ndarray, times: np.ndarray, good: np.ndarray) -> None:
        """Rows of samples (k frames x their columns `col`, from `columns`), in arrival order."""
        _accumulate(
            col,
            values,
            times,
            good,
            self.n,
            self.bad,
            self.min,
            self.max,
            self.mean,
            self.m2,
            self.first,
            self.first_t,
            self.last,
            self.last_t,
            self.integ,
        )

    def add(self, tag: str, unit: str, t: int, value: Any, good: bool) -> None:
        """One sample of any value type (bools count 0/1, text and non-finite values are bad), as tag_stats.add."""
        x = tag_stats.as_number(value) if good else None
        col = self.columns((tag,), (unit,))
        self.add_block(
            col,
            np.array([[x if x is not None else np.nan]]),
            np.array([[t]], dtype=np.int64),
            np.array([[x is not None]]),
        )

    def acc(self, i: int) -> tag_stats.Acc:
        n = int(self.n[i])
        has = n > 0
        return {
            "n": n,
            "bad": int(self.bad[i]),
            "unit": self.units[i],
            "min": float(self.min[i]) if has else None,
            "max": float(self.max[i]) if has else None,
            "mean": float(self.mean[i]),
            "m2": float(self.m2[i]),
            "first": float(self.first[i]) if has else None,
            "first_t": int(self.first_t[i]) if has else None,
            "last": float(self.last[i]) if has else None,
            "last_t": int(self.last_t[i]) if has else None,
            "integ": float(self.integ[i]),
        }

    def items(self) -> Iterator[tuple[str, tag_stats.Acc]]:
        for i, tag in enumerate(self.tags):
            yield tag, self.acc(i)

    def to_json(self) -> dict[str, tag_stats.Acc]:
        return dict(self.items())

    @classmethod
    def from_accs(cls, accs: Mapping[str, tag_stats.Acc]) -> PaneAccs:
        p = cls(max(8, len(accs)))
        for tag, a in accs.items():
            i = p.columns((tag,), (a.get("unit", ""),))[0]
            has = a["n"] > 0
            p.n[i], p.bad[i] = a["n"], a["bad"]
            p.mean[i], p.m2[i], p.integ[i] = a["mean"], a["m2"], a["integ"]
            if has:
                p.min[i], p.max[i] = a["min"], a["max"]
                p.first[i], p.first_t[i] = a["first"], a["first_t"]
                p.last[i], p.last_t[i] = a["last"], a["last_t"]
        return p
