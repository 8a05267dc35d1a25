"""Sample rows as every store keeps them: a value split into number and text, quality as a small int.

A frame arrives as a ReadingFrame dict or as FrameColumns (plantstream/core/frame_codec.py, every value a
double): the rows are the same; the columns give them without a Python step per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

from plantstream.core.frame_codec import FrameColumns

Frame = Mapping[str, Any] | FrameColumns

QUALITY = {"GOOD": 0, "UNCERTAIN": 1, "BAD": 2}


def split_value(v: Any) -> tuple[float | None, str | None]:
    """(number, text): numbers and booleans go to the numeric column, anything else to the text one."""
    if v is None:
        return None, None
    if isinstance(v, bool):
        return (1.0 if v else 0.0), None
    if isinstance(v, int | float):
        return float(v), None
    return None, str(v)


def frame_row(f: Frame) -> tuple[Any, ...]:
    """(producer_id, device, seq, asset, scan_time, n_samples, historical, buffered)"""
    if isinstance(f, FrameColumns):
        return (f.producer_id, f.device, f.seq, f.asset, f.scan_time, len(f), f.historical, f.buffered)
    return (
        f["producer_id"],
        f["device"],
        f["seq"],
        f["asset"],
        f["scan_time"],
        len(f["samples"]),
        bool(f.get("historical", False)),
        bool(f.get("buffered", False)),
    )


def scan_time(f: Frame) -> int:
    return f.scan_time if isinstance(f, FrameColumns) else int(f["scan_time"])


def sample_rows(f: Frame) -> Iterable[tuple[Any, ...]]:
    """(asset, tag, source_time, value_num, value_text, quality) per sample."""
    if isinstance(f, FrameColumns):
        n = len(f)
        return zip(
            repeat(f.asset, n),
            f.tags,
            f.times.tolist(),
            f.values.tolist(),
            repeat(None, n),
            f.quality.tolist(),
            strict=True,
        )
    asset = f["asset"]
    rows = []
    for s in f["samples"]:
        num, text = split_value(s["value"])
        rows.append((asset, s["tag"], s["source_time"], num, text, QUALITY[s["quality"]]))
    return rows


def sample_time_range(f: Frame) -> tuple[int, int]:
    """(earliest, latest) source time of a frame's samples; (scan_time, scan_time) when it has none."""
    if isinstance(f, FrameColumns):
        if not len(f):
            return f.scan_time, f.scan_time
        return int(f.times.min()), int(f.times.max())
    times = [s["source_time"] for s in f["samples"]] or [f["scan_time"]]
    return min(times), max(times)
