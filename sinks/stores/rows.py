"""Frames and samples as every store keeps them (written once): a frame row, and a sample row per sample
with its value split into number and text and its quality as a small int.

A frame arrives as a ReadingFrame dict or as FrameColumns (plantstream/core/frame_codec.py: numbers only,
each also as a float): the rows are the same; the columns give them without a Python step per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

from plantstream.core.frame_codec import FrameColumns
from plantstream.core.records import QUALITIES

Frame = Mapping[str, Any] | FrameColumns

QUALITY = {"GOOD": 0, "UNCERTAIN": 1, "BAD": 2}
# FrameColumns carry quality as an index into QUALITIES; the stores' codes are QUALITY's
assert all(QUALITY[q] == i for i, q in enumerate(QUALITIES)), "records.QUALITIES and rows.QUALITY disagree"


def split_value(v: Any) -> tuple[float | None, str | None]:
    """(number, text): numbers and booleans go to the numeric column, anything else to the text one."""
    if v is None:
        return None, None
    if isinstance(v, bool):
        return (1.0 if v else 0.0), None
    if isinstance(v, int | float):
        return float(v), None
    return None, str(v)


def columns(record: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    """The record's values of these fields, in this order: a row for a table with these columns."""
    return tuple(record[n] for n in names)


FrameRow = tuple[str, str, int, str, int, int, bool, bool]  # producer_id, device, seq, asset, scan_time, n, hist, buf
SampleRow = tuple[str, str, int, float | None, str | None, int]  # asset, tag, source_time, number, text, quality


def scan_time(f: Frame) -> int:
    return f.scan_time if isinstance(f, FrameColumns) else int(f["scan_time"])


def sample_time_range(f: Frame) -> tuple[int, int]:
    """(earliest, latest) source time of a frame's samples; (scan_time, scan_time) when it has none."""
    if isinstance(f, FrameColumns):
        if not len(f):
            return f.scan_time, f.scan_time
        return f.time_min, f.time_max
    times = [s["source_time"] for s in f["samples"]] or [f["scan_time"]]
    return min(times), max(times)


def flatten(frames: Iterable[Frame]) -> tuple[list[FrameRow], list[SampleRow]]:
    """The frames table's rows and the samples table's rows of a batch of ReadingFrames, in one pass."""
    frame_rows: list[FrameRow] = []
    sample_rows: list[SampleRow] = []
    for f in frames:
        if isinstance(f, FrameColumns):
            n = len(f)
            frame_rows.append((f.producer_id, f.device, f.seq, f.asset, f.scan_time, n, f.historical, f.buffered))
            sample_rows.extend(
                zip(
                    repeat(f.asset, n),
                    f.tags,
                    f.times.tolist(),
                    f.values.tolist(),  # longs and booleans as floats, as split_value makes them
                    repeat(None, n),
                    f.quality.tolist(),
                    strict=True,
                )
            )
            continue
        asset = f["asset"]
        samples = f["samples"]
        frame_rows.append(
            (
                f["producer_id"],
                f["device"],
                f["seq"],
                asset,
                f["scan_time"],
                len(samples),
                bool(f.get("historical", False)),
                bool(f.get("buffered", False)),
            )
        )
        for s in samples:
            num, text = split_value(s["value"])
            sample_rows.append((asset, s["tag"], s["source_time"], num, text, QUALITY[s["quality"]]))
    return frame_rows, sample_rows


def newest_revisions(records: Iterable[Mapping[str, Any]], key: Sequence[str]) -> list[Mapping[str, Any]]:
    """One record per natural key, the one with the highest `revision` (a correction after late data
    supersedes the first result), in the order the keys first appeared. A store upserts these, keeping a
    stored row whose revision is higher, so the order of batches does not matter either."""
    out: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for r in records:
        k = tuple(r[c] for c in key)
        old = out.get(k)
        if old is None or int(r.get("revision") or 0) > int(old.get("revision") or 0):
            out[k] = r
    return list(out.values())


def revised_columns(record: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    """`columns` of a window record: one from before revisions and coverage existed is revision 0, coverage
    unknown."""
    return tuple(
        int(record.get(n) or 0) if n == "revision" else record.get(n) if n == "data_coverage" else record[n]
        for n in names
    )
