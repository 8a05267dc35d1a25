"""Avro bodies of flat records (the worker's outputs: AnomalyScore, KpiWindow, OeeWindow) without fastavro's
per-call set-up: the same bytes as `fastavro.schemaless_writer`, checked by tests/unit/test_flat_codec.py.

Contract: `flat_writer(schema)` returns a function record -> body bytes for a record schema whose fields
are all strings, longs, doubles, booleans, ["null", long|double] unions or maps of longs or doubles; None
for any other schema (nested records, arrays, enums...: those stay with fastavro). The function raises
`FlatEncodeError` where it cannot write a record exactly as fastavro would (a missing field, a value of
another type): the caller then hands that record to fastavro, which writes it or says what is wrong.
Strings that repeat (asset paths, tag names, model names) are encoded once and cached (bounded).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any

from plantstream.core.errors import CoreError
from plantstream.core.frame_codec import zigzag_varint

_DOUBLE = struct.Struct("<d").pack
_CACHE_MAX = 65_536  # distinct strings kept encoded (asset paths x tags of a large plant fit)


class FlatEncodeError(CoreError, ValueError):
    """A record the flat writer cannot write as fastavro would: fastavro gets it."""


def _varint(n: int) -> bytes:
    """Avro's zig-zag varint of a long (range-checked, as fastavro does)."""
    if not -(1 << 63) <= n < (1 << 63):
        raise FlatEncodeError(f"long out of range: {n}")
    return zigzag_varint(n)


_SMALL = [_varint(i) for i in range(64)]  # one byte each: lengths of short strings, small counts


_LONGS: dict[int, bytes] = {}  # recent longs (window bounds and scan times repeat across tags and records)
_LONGS_MAX = 4096


def _long(v: Any) -> bytes:
    if type(v) is not int:
        raise FlatEncodeError(f"not a long: {v!r}")
    if 0 <= v < 64:
        return _SMALL[v]
    b = _LONGS.get(v)
    if b is None:
        if len(_LONGS) >= _LONGS_MAX:
            _LONGS.clear()
        b = _LONGS[v] = _varint(v)
    return b


def _double(v: Any) -> bytes:
    t = type(v)
    if t is not float and t is not int:
        raise FlatEncodeError(f"not a double: {v!r}")
    return _DOUBLE(v)


def _boolean(v: Any) -> bytes:
    if type(v) is not bool:
        raise FlatEncodeError(f"not a boolean: {v!r}")
    return b"\x01" if v else b"\x00"


class _Strings:
    """str -> its Avro encoding (length + UTF-8), cached."""

    def __init__(self) -> None:
        self.cache: dict[str, bytes] = {}

    def __call__(self, v: Any) -> bytes:
        b = self.cache.get(v)
        if b is None:
            if type(v) is not str:
                raise FlatEncodeError(f"not a string: {v!r}")
            raw = v.encode("utf-8")
            b = _long(len(raw)) + raw
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[v] = b
        return b


def _nullable(write: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def w(v: Any) -> bytes:
        return b"\x00" if v is None else b"\x02" + write(v)

    return w


def _map(string: _Strings, write: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    # a map's keys repeat from record to record (an asset's tags): per key set, one struct packs the encoded keys
    # and the values in one call
    code = "d" if write is _double else None
    layouts: dict[tuple[str, ...], tuple[bytes, tuple[bytes, ...], Callable[..., bytes]]] = {}

    def w(v: Any) -> bytes:
        if type(v) is not dict:
            raise FlatEncodeError(f"not a map: {v!r}")
        if not v:
            return b"\x00"
        if code is None:
            parts = [_long(len(v))]
            for k, x in v.items():
                parts.append(string(k))
                parts.append(write(x))
            parts.append(b"\x00")
            return b"".join(parts)
        keys = tuple(v)
        layout = layouts.get(keys)
        if layout is None:
            encoded = tuple(string(k) for k in keys)
            for x in v.values():
                write(x)  # the values' types, checked one by one the first time
            if len(layouts) >= _CACHE_MAX // 64:
                layouts.clear()
            fmt = "<" + "".join(f"{len(e)}s{code}" for e in encoded)
            layout = layouts[keys] = (_long(len(keys)), encoded, struct.Struct(fmt).pack)
        count, encoded, pack = layout
        # struct's "d" takes what fastavro's double takes (floats, ints) and raises on text and None
        return count + pack(*chain.from_iterable(zip(encoded, v.values(), strict=True))) + b"\x00"

    return w


def _field_writer(t: Any, string: _Strings) -> Callable[[Any], bytes] | None:
    if isinstance(t, dict):
        if t.get("type") == "map":
            values = _field_writer(t["values"], string)
            return _map(string, values) if values is _long or values is _double else None
        if t.get("type") in ("long", "double", "string", "boolean"):  # a logical type on a primitive
            return _field_writer(t["type"], string)
        return None
    if isinstance(t, list):
        if len(t) == 2 and t[0] == "null":
            inner = _field_writer(t[1], string)
            return _nullable(inner) if inner is _long or inner is _double else None
        return None
    primitives: dict[str, Callable[[Any], bytes]] = {
        "long": _long,
        "double": _double,
        "boolean": _boolean,
        "string": string,
    }
    return primitives.get(t)


def flat_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bytes] | None:
    """A writer of this record schema's bodies, or None when a field is not flat (see the module doc)."""
    if schema.get("type") != "record":
        return None
    string = _Strings()
    fields: list[tuple[str, Callable[[Any], bytes]]] = []
    for f in schema["fields"]:
        w = _field_writer(f["type"], string)
        if w is None:
            return None
        fields.append((f["name"], w))

    def write(record: Mapping[str, Any]) -> bytes:
        try:
            return b"".join([w(record[name]) for name, w in fields])
        except (KeyError, TypeError, ValueError, OverflowError, struct.error) as e:  # a missing field, bad text...
            raise FlatEncodeError(str(e)) from e

    return write
