"""MQTT payloads to sample values (pure): plain values, JSON paths, timestamps, quality, expected types.

Every function raises `BadInput` with a reason a person can act on; the reader counts it, logs it once
and sends the raw payload to the dead-letter topic. Values come out as the ReadingFrame union
(null | long | double | boolean | string), scaled like the other protocols (value * scale + offset).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from plantstream.core.config import TagType
from plantstream.core.errors import ProducerError
from plantstream.core.records import Quality

Value = bool | int | float | str | None

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DIGITS = {"epoch_s": 6, "epoch_ms": 3, "epoch_us": 0, "epoch_ns": -3}  # powers of ten to microseconds
_INT_RANGES = {
    TagType.INT16: (-(2**15), 2**15 - 1),
    TagType.UINT16: (0, 2**16 - 1),
    TagType.INT32: (-(2**31), 2**31 - 1),
    TagType.UINT32: (0, 2**32 - 1),
    TagType.INT64: (-(2**63), 2**63 - 1),
    TagType.UINT64: (0, 2**64 - 1),
}
_FLOATS = (TagType.FLOAT32, TagType.FLOAT64)
_FLOAT_OR_ANY = frozenset({TagType.FLOAT32, TagType.FLOAT64, None})
_STR_OR_ANY = frozenset({TagType.STRING, None})
_AVRO_LONG_MIN, _AVRO_LONG_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "on", "yes", "1"})
_FALSE = frozenset({"false", "off", "no", "0"})
_QUALITY_NAMES: dict[str, Quality] = {
    "GOOD": "GOOD",
    "OK": "GOOD",
    "UNCERTAIN": "UNCERTAIN",
    "STALE": "UNCERTAIN",
    "BAD": "BAD",
}


class BadInput(ProducerError, ValueError):
    """A message that cannot become samples; `kind` names the counter (malformed_json, wrong_datatype, ...)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --- paths ----------------------------------------------------------------------------------------


def split_path(path: str) -> tuple[str, ...]:
    """`data.value`, `$.data.value` or `items.0.v` as path parts (integers index lists)."""
    return tuple(p for p in path.removeprefix("$").split(".") if p)


def get_path(doc: Any, parts: Sequence[str]) -> Any:
    """The value at `parts` in a decoded JSON document; BadInput naming the first missing part."""
    node = doc
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            if part not in node:
                raise BadInput("missing_field", f"no field {'.'.join(parts[: i + 1])!r} in the JSON payload")
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise BadInput("missing_field", f"no field {'.'.join(parts[: i + 1])!r} in the JSON payload")
    return node


# --- timestamps -----------------------------------------------------------------------------------


def parse_time_us(raw: Any, fmt: str, tz: ZoneInfo) -> int:
    """A timestamp in the configured format as UTC microseconds since the epoch."""
    digits = _EPOCH_DIGITS.get(fmt)
    if digits is not None:
        number = raw
        if isinstance(raw, str):
            try:
                number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise BadInput("bad_timestamp", f"timestamp {raw!r} is not a number ({fmt})")
        if isinstance(number, int):  # exact: no float rounding of nanosecond or microsecond counts
            return number * 10**digits if digits >= 0 else number // 10**-digits
        return int(number * 10**digits)
    if not isinstance(raw, str):
        raise BadInput("bad_timestamp", f"timestamp {raw!r} is not text ({fmt})")
    try:
        t = dt.datetime.fromisoformat(raw) if fmt == "iso8601" else dt.datetime.strptime(raw, fmt)
    except ValueError as e:
        raise BadInput("bad_timestamp", f"timestamp {raw!r} does not read as {fmt} ({e})") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


# --- quality --------------------------------------------------------------------------------------


def quality_of(raw: Any) -> Quality:
    """GOOD/UNCERTAIN/BAD from a name, a Sparkplug quality code (192, 500, 0), an OPC UA status code or a bool."""
    if isinstance(raw, bool):
        return "GOOD" if raw else "BAD"
    if isinstance(raw, str):
        name = _QUALITY_NAMES.get(raw.strip().upper())
        if name is None and raw.strip().lstrip("-").isdigit():
            return quality_of(int(raw))
        if name is None:
            raise BadInput("bad_quality", f"quality {raw!r} is none of GOOD, UNCERTAIN, BAD or a status code")
        return name
    if isinstance(raw, int):
        if raw == 192:
            return "GOOD"
        if raw == 500:
            return "UNCERTAIN"
        by_severity: tuple[Quality, ...] = ("GOOD", "UNCERTAIN", "BAD", "BAD")
        return by_severity[(raw >> 30) & 0b11]  # OPC UA severity bits; 0 = Good
    raise BadInput("bad_quality", f"quality {raw!r} is none of GOOD, UNCERTAIN, BAD or a status code")


# --- values ---------------------------------------------------------------------------------------


def plain_value(payload: bytes) -> Value:
    """A plain payload: JSON-like literals (42, 4.2, true) as numbers/booleans, anything else as text."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise BadInput("malformed_payload", f"payload is not UTF-8 text ({e.reason} at byte {e.start})") from e
    lower = text.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower in ("null", ""):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return text
    return f if math.isfinite(f) else text


def typed_value(raw: Any, kind: TagType | None, scale: float = 1.0, offset: float = 0.0) -> Value:
    """`raw` checked against the tag's expected type and scaled; BadInput("wrong_datatype") when it does not fit."""
    if raw is None:
        return None
    t = type(raw)
    if scale == 1 and offset == 0 and (  # the common cases, without the checks below
        (t is float and kind in _FLOAT_OR_ANY and math.isfinite(raw)) or (t is str and kind in _STR_OR_ANY)
    ):
        return raw
    if kind is None:
        value = _untyped(raw)
    elif kind is TagType.BOOL:
        value = _as_bool(raw)
    elif kind is TagType.STRING:
        value = raw if isinstance(raw, str) else _scalar_text(raw)
        return value
    elif kind in _FLOATS:
        value = _as_float(raw, kind)
    else:
        value = _as_int(raw, kind)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if scale != 1 or offset != 0:
            return float(value) * scale + offset
        if isinstance(value, int) and not _AVRO_LONG_MIN <= value <= _AVRO_LONG_MAX:
            return float(value)
    return value


def _untyped(raw: Any) -> Value:
    if isinstance(raw, bool | int | str):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise BadInput("wrong_datatype", f"value {raw!r} is not a finite number")
        return raw
    raise BadInput("wrong_datatype", f"value {_short(raw)} is a JSON {type(raw).__name__}, not a single value")


def _scalar_text(raw: Any) -> str:
    if isinstance(raw, bool | int | float):
        return str(raw).lower() if isinstance(raw, bool) else str(raw)
    raise BadInput("wrong_datatype", f"value {_short(raw)} is a JSON {type(raw).__name__}, not text")


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise BadInput("wrong_datatype", f"value {_short(raw)} is not a bool (true/false, 1/0)")


def _as_float(raw: Any, kind: TagType) -> float | int:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise BadInput("wrong_datatype", f"value {raw!r} is not a finite number ({kind.value})")
        return raw
    if isinstance(raw, str):
        try:
            f = float(raw)
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
    raise BadInput("wrong_datatype", f"value {_short(raw)} is not a number ({kind.value})")


def _as_int(raw: Any, kind: TagType) -> int:
    number: Any = raw
    if isinstance(raw, str):
        try:
            number = int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                number = None
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadInput("wrong_datatype", f"value {_short(raw)} is not an integer ({kind.value})")
    low, high = _INT_RANGES[kind]
    if not low <= number <= high:
        raise BadInput("wrong_datatype", f"value {number} is outside the {kind.value} range {low}..{high}")
    return number


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."
