"""`plantstream produce replay`: historian exports (CSV or Parquet, wide or long) as historical frames.

Rows are read in batches with pyarrow, so months of data stream through in bounded memory. Frames
keep the export's timestamps (source_time = scan_time = the row's time) and carry historical=True;
they are replayed at the original pace, accelerated, or as fast as Kafka takes them.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from plantstream.core import logs, records
from plantstream.core.config import ReplaySource
from plantstream.core.errors import ProducerError
from plantstream.core.records import QUALITIES, Quality, ReadingFrame, Sample, Value

log = logs.get(__name__)


class ReplayError(ProducerError, ValueError):
    """An export that cannot be replayed as configured; the text names the file, row or column and the fix."""


# --- reading ---------------------------------------------------------------------------------------


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _existing(src: ReplaySource) -> Path:
    path = Path(src.path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ReplayError(
            f"replay source {src.name!r}: {path} {what} (working directory {Path.cwd()}). Fix: correct replay[].path"
        )
    return path


_DELIMITERS = (",", ";", "\t", "|")


def columns(src: ReplaySource) -> list[str]:
    """The export's column names (CSV header or Parquet schema); ReplayError when it cannot be read."""
    path = _existing(src)
    if _is_parquet(path):
        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as e:
            raise ReplayError(f"replay source {src.name!r}: {path} is not a readable Parquet file: {e}") from e
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ReplayError(f"replay source {src.name!r}: cannot read {path}: {e}. Fix: a UTF-8 CSV file") from e
    return [c.strip().strip('"') for c in header.split(src.delimiter)]


def check_columns(src: ReplaySource, cols: list[str]) -> None:
    """ReplayError naming the fix when the configured columns are not in the export (a wrong delimiter shows as one
    long column; a typo in a tags: key would otherwise drop that column silently)."""
    if src.timestamp_column not in cols:
        hint = f"Fix: set replay[].timestamp_column to one of {cols[:20]}"
        if len(cols) == 1:
            others = [d for d in _DELIMITERS if d != src.delimiter and d in cols[0]]
            if others:
                hint = (
                    f"the header reads as one column with delimiter {src.delimiter!r} but contains {others[0]!r}. "
                    f"Fix: set replay[].delimiter: {others[0]!r}"
                )
        raise ReplayError(f"replay source {src.name!r}: no column {src.timestamp_column!r} in {src.path}: {hint}")
    needed = {"asset_column": src.asset_column, "quality_column": src.quality_column}
    if src.format == "long":
        needed |= {"tag_column": src.tag_column, "value_column": src.value_column}
    for field, col in needed.items():
        if col and col not in cols:
            raise ReplayError(
                f"replay source {src.name!r}: no {field.replace('_', ' ')} {col!r} in {src.path} "
                f"(columns: {cols[:20]}). Fix: set replay[].{field}"
            )
    if src.format == "wide":
        unknown = sorted(set(src.tags) - set(cols)) + sorted(set(src.skip_columns) - set(cols))
        if unknown:
            raise ReplayError(
                f"replay source {src.name!r}: tags/skip_columns name column(s) {unknown} that {src.path} does not "
                f"have (columns: {cols[:20]}). Fix: correct the spelling in replay[].tags or skip_columns"
            )


def check_source(src: ReplaySource) -> list[str]:
    """What `check-config` checks of a replay source before anything is sent: the file, its columns, the first
    rows' timestamps and qualities. Returns the export's columns; ReplayError with the fix otherwise."""
    cols = columns(src)
    check_columns(src, cols)
    for rows, _ in enumerate(frames_from_batches(src, read_batches(src, batch_rows=64), "check-config"), 1):
        if rows >= 64:
            break
    return cols


def read_batches(src: ReplaySource, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    path = _existing(src)
    if _is_parquet(path):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    # timestamps as text: their format is ours to parse, not pyarrow's to guess
    convert = pacsv.ConvertOptions(column_types={src.timestamp_column: pa.string()}, strings_can_be_null=True)
    try:
        reader = pacsv.open_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=src.delimiter),
            convert_options=convert,
            read_options=pacsv.ReadOptions(block_size=4 << 20),
        )
        yield from reader
    except pa.ArrowInvalid as e:
        if f"'{src.timestamp_column}'" in str(e) or "column" in str(e).lower():
            check_columns(src, columns(src))  # a column named in the config that the file lacks: say which
        raise ReplayError(
            f"replay source {src.name!r}: {path} is not a readable CSV with delimiter "
            f"{src.delimiter!r}: {str(e).splitlines()[0]}. Fix: check replay[].delimiter"
        ) from e


def count_rows(src: ReplaySource) -> int | None:
    path = _existing(src)
    if _is_parquet(path):
        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return max(0, lines - 1)  # the header


# --- parsing ---------------------------------------------------------------------------------------


def time_parser(src: ReplaySource) -> Callable[[Any], int]:
    """A function from one timestamp cell to UTC microseconds since the epoch."""
    fmt = src.timestamp_format
    zone = ZoneInfo(src.timezone)
    scale = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1}.get(fmt)
    if scale is not None:
        return lambda cell: round(float(cell) * scale)

    def to_us(dt: datetime) -> int:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone)
        delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    if fmt == "iso8601":
        return lambda cell: to_us(cell if isinstance(cell, datetime) else datetime.fromisoformat(str(cell)))
    return lambda cell: to_us(cell if isinstance(cell, datetime) else datetime.strptime(str(cell), fmt))


def quality_of(cell: Any) -> Quality:
    if cell is None:
        return "GOOD"
    if isinstance(cell, str) and not cell.strip().lstrip("-").isdigit():
        q = cell.strip().upper()
        for known in QUALITIES:
            if q == known:
                return known
        raise ValueError(f"quality {cell!r} is not GOOD, UNCERTAIN, BAD or an OPC UA status code")
    code = int(cell) & 0xFFFFFFFF
    # OPC UA StatusCode severity: the two top bits
    return "BAD" if code & 0x80000000 else "UNCERTAIN" if code & 0x40000000 else "GOOD"


def as_value(cell: Any) -> bool | int | float | str | None:
    if cell is None or isinstance(cell, bool | int):
        return cell
    if isinstance(cell, float):
        return None if math.isnan(cell) else cell
    text = str(cell).strip()
    if text == "":
        return None
    try:
        return float(text)  # long-format value columns mix numbers and text
    except ValueError:
        return text


@dataclass
class ReadProgress:
    rows: int = 0


def frames_from_batches(
    src: ReplaySource, batches: Iterator[pa.RecordBatch], producer_id: str, progress: ReadProgress | None = None
) -> Iterator[ReadingFrame]:
    """ReadingFrames from the export's rows: one per row (wide), one per (asset, time) run (long)."""
    parse_time = time_parser(src)
    seq = 0
    read = progress or ReadProgress()
    pending: ReadingFrame | None = None
    value_cols: list[str] | None = None
    names: dict[str, str] = {}
    units: dict[str, str] = {}
    for batch in batches:
        cols = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
        if value_cols is None:
            check_columns(src, list(cols))
            reserved = {src.timestamp_column, src.asset_column, src.quality_column, *src.skip_columns}
            value_cols = [c for c in cols if c not in reserved and (not src.tags or c in src.tags)]
            names = {c: src.tag_name(c) for c in value_cols}
        for i in range(batch.num_rows):
            read.rows += 1
            row_no = read.rows
            try:
                t = parse_time(cols[src.timestamp_column][i])
                quality = quality_of(cols[src.quality_column][i]) if src.quality_column else "GOOD"
            except (ValueError, TypeError, OverflowError) as e:
                raise ReplayError(
                    f"replay source {src.name!r}: row {row_no} of {src.path}: {e}. Fix: check "
                    f"replay[].timestamp_format ({src.timestamp_format!r}) and the data"
                ) from e
            asset = str(cols[src.asset_column][i]) if src.asset_column else str(src.asset)
            if src.format == "wide":
                samples = [
                    _sample(units, src, names[c], t, v, quality)
                    for c in value_cols
                    if (v := as_value(cols[c][i])) is not None
                ]
                if samples:
                    yield _frame(src, asset, seq, producer_id, t, samples)
                    seq += 1
                continue
            raw_tag = str(cols[src.tag_column][i])
            if src.tags and raw_tag not in src.tags:
                continue
            value = as_value(cols[src.value_column][i])
            sample = _sample(units, src, src.tag_name(raw_tag), t, value, quality if value is not None else "BAD")
            if pending is not None and pending["asset"] == asset and pending["scan_time"] == t:
                pending["samples"].append(sample)
                continue
            if pending is not None:
                yield pending
                seq += 1
            pending = _frame(src, asset, seq, producer_id, t, [sample])
    if pending is not None:
        yield pending


def _sample(units: dict[str, str], src: ReplaySource, tag: str, t: int, value: Value, quality: Quality) -> Sample:
    unit = units.get(tag)
    if unit is None:
        unit = units[tag] = src.tag_unit(tag)
    return records.sample(tag, t, value, quality, unit)


def _frame(src: ReplaySource, asset: str, seq: int, producer_id: str, t: int, samples: list[Sample]) -> ReadingFrame:
    return records.reading_frame(
        asset=asset,
        device=f"replay:{src.name}",
        seq=seq,
        producer_id=producer_id,
        scan_time=t,
        samples=samples,
        historical=True,
    )


# --- replaying -------------------------------------------------------------------------------------


def replay(
    src: ReplaySource,
    emit: Callable[[ReadingFrame], None],
    *,
    speed: float | None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = True,
) -> dict[str, Any]:
    """Emit the source's frames; `speed` 1.0 = original pace, 10 = ten times faster, None = as fast as possible."""
    from tqdm import tqdm

    producer_id = f"replay-{src.name}-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
    check_columns(src, columns(src))  # before the first frame: a wrong path or column is one line, not a traceback
    total = count_rows(src)
    bar = tqdm(total=total, unit="row", file=sys.stderr, disable=not progress, desc=f"replay {src.name}")
    frames = 0
    first_t: int | None = None
    wall0 = time.monotonic()
    read = ReadProgress()
    shown = 0
    try:
        for frame in frames_from_batches(src, read_batches(src), producer_id, read):
            if should_stop():
                break
            if speed is not None:
                first_t = frame["scan_time"] if first_t is None else first_t
                due = wall0 + (frame["scan_time"] - first_t) / 1e6 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            emit(frame)
            frames += 1
            if read.rows - shown >= 1000:
                bar.update(read.rows - shown)
                shown = read.rows
    finally:
        bar.update(read.rows - shown)
        bar.close()
    return {"source": src.name, "rows": read.rows, "frames": frames, "seconds": round(time.monotonic() - wall0, 2)}
