"""Event-time tumbling and hopping windows per asset and tag, with a watermark and a grace period.

Faust's windowed tables close windows on a wall-clock timer, so replayed history closes (or
loses) windows at once. Here the watermark is the newest event time seen for the asset minus the
grace period; a window closes, exactly once, when its end is at or before the watermark. The
watermark is per asset (each asset's frames are in order within its partition), so one slow
machine never holds back the windows of the others on the same partition.

Samples are accumulated in panes of `hop` µs; a window of `size` is the merge of its size/hop
panes (tumbling: hop == size, one pane, no merge). A sample is late when the first window that
contains it has already been emitted: it then enters no window at all (so every emitted window is
consistent), is counted, and is handed back to the caller to be routed, never silently dropped.

When an asset goes silent its watermark would stop, and its last windows would never close;
`advance_idle` moves the watermark on with the wall clock once the asset has been idle for longer
than the grace period (the worker calls it only for partitions it has read to the end).
The whole per-asset state is one JSON-able dict so it can live in a changelog-backed Faust table;
`apply_columns` (frames as columns, processors/kpi_columns.py) keeps a pane's accumulators as arrays in
memory, and `pane_json` gives such a pane in the same JSON form.

Coverage: every window says which share of it had data (`data_coverage`). A report (a frame with a
GOOD sample) at t covers [t, next report), but at most `silence` µs (the asset's allowed silence,
plantstream.core.reporting); None: until the next report. Kept per pane, cut at pane boundaries.

Corrections: the state before a silence's first idle close is kept (`snap`). A frame that then falls
inside the stretch the silence closed (store-and-forward data, delayed rather than missing) rolls the
state back to that copy, within `allowed_lateness` of the watermark, and the closed windows are
emitted again with `revision` one higher (processors/oee.py does the same for OEE).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from plantstream.core.frame_codec import FrameColumns
from processors import tag_stats
from processors.kpi_columns import PaneAccs

AssetState = dict[str, Any]


def new_state() -> AssetState:
    # offset: the last input offset applied, so a redelivered frame after a crash is not counted twice;
    # done: windows ending at or before this event time have been emitted ("open" keys are pane starts)
    # seen: scan time of the last report; cov: covered µs per pane start; snap, revs: see the module doc
    return {
        "wm": None,
        "max_t": None,
        "open": {},
        "offset": -1,
        "late": 0,
        "done": None,
        "seen": None,
        "cov": {},
        "snap": None,
        "revs": {},
    }


def _upgrade(state: AssetState) -> None:
    for key, value in (("seen", None), ("cov", {}), ("snap", None), ("revs", {})):
        state.setdefault(key, value)


def window_start(t: int, size: int) -> int:
    return t - (t % size)


def check_sizes(size: int, hop: int) -> None:
    if hop <= 0 or hop > size or size % hop:
        raise ValueError(f"window hop {hop} µs must divide the window size {size} µs (hop <= size)")


def _emitted_until(state: AssetState) -> int | None:
    # states written before "done" existed closed windows up to their watermark at every frame
    return state["done"] if state.get("done") is not None else state["wm"]


def apply_frame(
    state: AssetState,
    frame: dict[str, Any],
    size: int,
    grace: int,
    hop: int | None = None,
    late: list[dict[str, Any]] | None = None,
    silence: int | None = None,
    allowed_lateness: int | None = None,
) -> list[dict[str, Any]]:
    """Add a frame's samples to their panes; return the KpiWindow records of windows that closed.

    Late samples are appended to `late` when it is given. `silence` and `allowed_lateness`: see the
    module doc (None: without limit)."""
    hop = hop or size
    asset = frame["asset"]
    if "revs" not in state:  # a state written before coverage and corrections were kept
        _upgrade(state)
    t_frame = frame["scan_time"]
    if state["snap"] is not None:
        _resolve_silence(state, t_frame, size, allowed_lateness)
    done = _emitted_until(state)
    panes = state["open"]
    add = tag_stats.add
    newest = t_frame
    samples = frame["samples"]
    # the samples of a frame mostly share one source time, hence one pane: look it up once
    last_pane: int | None = None
    tags: dict[str, Any] = {}
    for s in samples:
        t = s["source_time"]
        if t > newest:
            newest = t
        pane = t - (t % hop)
        if pane != last_pane:
            if done is not None and pane + hop <= done:
                state["late"] += 1  # the first window holding it was already emitted
                if late is not None:
                    late.append(s)
                continue
            key = str(pane)
            tags = panes.get(key)
            if tags is None:
                tags = panes[key] = {}
            last_pane = pane
        if isinstance(tags, PaneAccs):  # a pane frames as columns went into
            tags.add(s["tag"], s.get("unit", ""), t, s["value"], s["quality"] == "GOOD")
            continue
        acc = tags.get(s["tag"])
        if acc is None:
            acc = tags[s["tag"]] = tag_stats.new_acc(s.get("unit", ""))
        add(acc, t, s["value"], s["quality"] == "GOOD")
    if any(s["quality"] == "GOOD" for s in samples):
        _cover(state, t_frame, size, hop, silence)
    if state["max_t"] is None or newest > state["max_t"]:
        state["max_t"] = newest
    wm = state["max_t"] - grace
    if state["wm"] is None or wm > state["wm"]:
        state["wm"] = wm  # never backwards (advance_idle may have moved it further)
    return close_until(state, asset, size, state["wm"], hop, silence)


def _cover(state: AssetState, t: int, size: int, hop: int, silence: int | None) -> None:
    """A report at t: the previous one covered [seen, min(t, seen + silence)); add that to its panes."""
    seen = state["seen"]
    if seen is not None and t > seen:
        end = t if silence is None else min(t, seen + silence)
        done = _emitted_until(state)
        cov = state["cov"]
        a = seen
        while a < end:
            pane = a - a % hop
            b = min(end, pane + hop)
            if done is None or pane + size > done:  # a pane every window of which was emitted needs none
                key = str(pane)
                cov[key] = cov.get(key, 0) + b - a
            a = b
    if seen is None or t > seen:
        state["seen"] = t


def _resolve_silence(state: AssetState, t: int, size: int, allowed_lateness: int | None) -> None:
    """A frame at t after the idle timer closed windows: roll back to the state before the silence when
    t falls inside what the silence closed (the data was delayed, not missing), else forget the copy."""
    snap = state["snap"]
    before = _emitted_until(snap)
    if before is not None and t <= before:
        return  # late even before the silence: nothing to correct, keep the copy for what follows
    done = _emitted_until(state)
    if done is not None and t <= done and (allowed_lateness is None or state["wm"] - t <= allowed_lateness):
        revs = state["revs"]
        state.clear()
        state.update(snap)
        state["snap"], state["revs"] = None, revs
        return
    _forget_silence(state, size)


def _forget_silence(state: AssetState, size: int) -> None:
    state["snap"] = None
    done = _emitted_until(state)
    # emitted windows can be emitted again only through a rollback: keep the revisions of open ones
    state["revs"] = {k: v for k, v in state["revs"].items() if done is None or int(k) + size > done}


def advance_idle(
    state: AssetState,
    asset: str,
    size: int,
    grace: int,
    idle_us: int,
    hop: int | None = None,
    silence: int | None = None,
    allowed_lateness: int | None = None,
) -> list[dict[str, Any]]:
    """Close windows of an asset silent for `idle_us` of wall time: event time is taken to have moved on
    as much. Nothing happens until the silence is longer than the grace period. The state before the
    first such close of a silence is kept for a rollback (module doc), until the silence is longer than
    `allowed_lateness`."""
    if "revs" not in state:
        _upgrade(state)
    if state["max_t"] is None or idle_us <= grace:
        return []
    if state["snap"] is not None and allowed_lateness is not None and idle_us > allowed_lateness:
        _forget_silence(state, size)  # data this late would go to the late topic anyway
    wm = state["max_t"] + idle_us - grace
    if state["wm"] is not None and wm <= state["wm"]:
        return []
    if state["snap"] is None and (allowed_lateness is None or idle_us <= allowed_lateness):
        state["snap"] = copy.deepcopy({k: v for k, v in state.items() if k not in ("snap", "revs")})
    state["wm"] = wm
    return close_until(state, asset, size, wm, hop or size, silence)


def close_until(
    state: AssetState,
    asset: str,
    size: int,
    watermark: int,
    hop: int | None = None,
    silence: int | None = None,
) -> list[dict[str, Any]]:
    hop = hop or size
    done = _emitted_until(state)
    panes = state["open"]
    closed: list[dict[str, Any]] = []
    if not panes:
        state["done"] = watermark if done is None else max(done, watermark)
        _forget_covered(state, size, watermark)
        return closed
    starts = sorted(int(k) for k in panes)
    # windows that end in (done, watermark] and hold at least one open pane
    due: set[int] = set()
    for p in starts:
        for w in range(p - size + hop, p + 1, hop):
            if w + size <= watermark and (done is None or w + size > done):
                due.add(w)
    cov = state.get("cov")
    revs = state.get("revs")
    seen = state.get("seen")
    for w in sorted(due):
        parts = [panes[str(p)] for p in range(w, w + size, hop) if str(p) in panes]
        merged: dict[str, tag_stats.Acc] = {}
        for part in parts:
            for tag, acc in part.items():
                merged[tag] = tag_stats.merge(merged[tag], acc) if tag in merged else acc
        coverage = None
        if cov is not None:
            covered = sum(cov.get(str(p), 0) for p in range(w, w + size, hop))
            if seen is not None:  # the last report's stretch: no later report came before the watermark
                hi = w + size if silence is None else min(w + size, seen + silence)
                covered += max(0, hi - max(seen, w))
            coverage = min(1.0, covered / size)
        rev = 0
        if revs is not None:
            rev = revs.pop(str(w), -1) + 1
            if state.get("snap") is not None:  # a rollback may emit it again
                revs[str(w)] = rev
        for tag, acc in sorted(merged.items()):
            closed.append(
                {
                    "asset": asset,
                    "tag": tag,
                    "window_start": w,
                    "window_end": w + size,
                    **tag_stats.result(acc),
                    "revision": rev,
                    "data_coverage": coverage,
                }
            )
    # a pane is needed until the last window holding it (the one starting at the pane) is emitted
    for p in starts:
        if p + size <= watermark:
            del panes[str(p)]
    state["done"] = watermark if done is None else max(done, watermark)
    _forget_covered(state, size, watermark)
    return closed


def _forget_covered(state: AssetState, size: int, watermark: int) -> None:
    cov = state.get("cov")
    if cov:
        for key in [k for k in cov if int(k) + size <= watermark]:
            del cov[key]


# --- frames as columns -------------------------------------------------------------------------------


def apply_columns(
    state: AssetState,
    frames: Sequence[FrameColumns],
    size: int,
    grace: int,
    hop: int | None = None,
    late: dict[int, list[dict[str, Any]]] | None = None,
    silence: int | None = None,
    allowed_lateness: int | None = None,
) -> list[dict[str, Any]]:
    """`apply_frame` for each of one asset's frames in order, with the same windows, late samples and state
    (bit for bit), adding the samples of consecutive frames of one layout and pane in one compiled loop.
    Late samples go to `late[i]`, i the index of their frame in `frames`. `silence` and
    `allowed_lateness` as for `apply_frame` (coverage and corrections hold for columns too).

    Frames are taken in segments that end where the watermark enters a new hop (only there can a window
    close, and only there does a pane become late), so each segment is added whole and closed once; while
    a silence's copy is kept (`snap`), one frame at a time, as each frame may roll the state back."""
    hop = hop or size
    if "revs" not in state:
        _upgrade(state)
    closed: list[dict[str, Any]] = []
    i, total = 0, len(frames)
    while i < total:
        if state["snap"] is not None:
            _resolve_silence(state, frames[i].scan_time, size, allowed_lateness)
        done = _emitted_until(state)
        max_t, wm = state["max_t"], state["wm"]
        bucket = None if done is None else done // hop
        j = i
        while j < total:
            f = frames[j]
            newest = max(f.scan_time, f.time_max)
            max_t = newest if max_t is None or newest > max_t else max_t
            wm = max_t - grace if wm is None or max_t - grace > wm else wm
            j += 1
            if bucket is None or wm // hop != bucket or state["snap"] is not None:
                break
        _add_segment(state, frames, i, j, hop, done, late)
        for f in frames[i:j]:  # GOOD is quality code 0
            if len(f) and bool((f.quality == 0).any()):
                _cover(state, f.scan_time, size, hop, silence)
        state["max_t"], state["wm"] = max_t, wm
        if done is not None and wm // hop <= done // hop:
            state["done"] = max(done, wm)  # no window ends in (done, wm]: nothing to close
        else:
            closed += close_until(state, frames[i].asset, size, wm, hop, silence)
        i = j
    return closed


def _add_segment(
    state: AssetState,
    frames: Sequence[FrameColumns],
    start: int,
    end: int,
    hop: int,
    done: int | None,
    late: dict[int, list[dict[str, Any]]] | None,
) -> None:
    panes = state["open"]
    run: list[FrameColumns] = []
    run_pane = 0

    def flush() -> None:
        if not run:
            return
        key = str(run_pane)
        pane = panes.get(key)
        if not isinstance(pane, PaneAccs):
            pane = panes[key] = PaneAccs.from_accs(pane or {})
        first = run[0]
        col = pane.columns(first.tags, first.units)
        if len(run) == 1:
            values, times, good = first.values[None, :], first.times[None, :], first.quality[None, :] == 0
        else:
            values = np.stack([f.values for f in run])
            times = np.stack([f.times for f in run])
            good = np.stack([f.quality for f in run]) == 0
        pane.add_block(col, values, times, good)
        run.clear()

    for index in range(start, end):
        f = frames[index]
        if not len(f):
            continue
        pane_lo = f.time_min - f.time_min % hop
        if pane_lo == f.time_max - f.time_max % hop:  # the whole frame in one pane: the common case
            if done is not None and pane_lo + hop <= done:
                flush()
                state["late"] += len(f)
                if late is not None:
                    late.setdefault(index, []).extend(dict(s) for s in f.to_frame()["samples"])
                continue
            if run and (pane_lo != run_pane or f.tags is not run[0].tags):
                flush()
            run_pane = pane_lo
            run.append(f)
            continue
        flush()
        for s in f.to_frame()["samples"]:  # a frame across panes, sample by sample
            t = s["source_time"]
            pane_t = t - t % hop
            if done is not None and pane_t + hop <= done:
                state["late"] += 1
                if late is not None:
                    late.setdefault(index, []).append(dict(s))
                continue
            key = str(pane_t)
            pane = panes.get(key)
            if not isinstance(pane, PaneAccs):
                pane = panes[key] = PaneAccs.from_accs(pane or {})
            pane.add(s["tag"], s["unit"], t, s["value"], s["quality"] == "GOOD")
    flush()


def pane_json(pane: Any) -> Any:
    """A pane as the changelog keeps it (tag -> tag_stats accumulator), whichever form it is in memory."""
    return pane.to_json() if isinstance(pane, PaneAccs) else pane
