"""Event-time tumbling windows per asset with a watermark and a grace period.

Faust's windowed tables close windows on a wall-clock timer, so replayed history closes (or
loses) windows at once. Here the watermark is the newest scan time seen for the asset minus the
grace period; a window closes, exactly once, when its end is at or before the watermark. The whole
per-asset state is one JSON-able dict so it can live in a changelog-backed Faust table.
"""

from __future__ import annotations

from typing import Any

from processors import tag_stats

AssetState = dict[str, Any]


def new_state() -> AssetState:
    # offset: the last input offset applied, so a redelivered frame after a crash is not counted twice
    return {"wm": None, "max_t": None, "open": {}, "offset": -1, "late": 0}


def window_start(t: int, size: int) -> int:
    return t - (t % size)


def apply_frame(state: AssetState, frame: dict[str, Any], size: int, grace: int) -> list[dict[str, Any]]:
    """Add a frame's samples to their windows; return the KpiWindow records of windows that closed."""
    asset = frame["asset"]
    wm = state["wm"]
    for s in frame["samples"]:
        t = s["source_time"]
        start = window_start(t, size)
        if wm is not None and start + size <= wm:
            state["late"] += 1  # its window already closed and was emitted
            continue
        tags = state["open"].setdefault(str(start), {})
        acc = tags.get(s["tag"])
        if acc is None:
            acc = tags[s["tag"]] = tag_stats.new_acc(s.get("unit", ""))
        tag_stats.add(acc, t, s["value"], s["quality"] == "GOOD")
    newest = max([frame["scan_time"], *(s["source_time"] for s in frame["samples"])])
    if state["max_t"] is None or newest > state["max_t"]:
        state["max_t"] = newest
    state["wm"] = state["max_t"] - grace
    return close_until(state, asset, size, state["wm"])


def close_until(state: AssetState, asset: str, size: int, watermark: int) -> list[dict[str, Any]]:
    closed: list[dict[str, Any]] = []
    for key in sorted(state["open"], key=int):
        start = int(key)
        if start + size > watermark:
            break
        for tag, acc in sorted(state["open"].pop(key).items()):
            closed.append(
                {"asset": asset, "tag": tag, "window_start": start, "window_end": start + size, **tag_stats.result(acc)}
            )
    return closed
