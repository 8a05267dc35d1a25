"""Modbus register <-> engineering value conversion, and grouping tags into as few reads as possible.

Pure functions of the tag config: the producer decodes with them and the simulator encodes with them,
so what the simulator serves is, by construction, what the producer reads back.

Byte orders name the bytes of a value as A (most significant) .. D/H (least significant) and say in
which order they appear on the wire, two bytes per 16-bit register:

* ABCD: registers most significant first, each register big-endian (the Modbus default)
* CDAB: registers least significant first ("word swap"); for 64-bit values all four words reverse
* BADC: registers most significant first, the two bytes inside each register swapped
* DCBA: fully little-endian

A 16-bit value has one register, so only the byte swap of BADC/DCBA applies to it. Strings are
byte sequences, not numbers: their register order never changes; BADC/DCBA swap the bytes of each
register (the common "byte-swapped string" of many PLCs).
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plantstream.core.config import ByteOrder, ModbusTag, RegisterTable, TagType

Value = bool | int | float | str

# Modbus application protocol limits for one read request (function codes 1-4).
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
# Reading a few unused registers costs less than another round trip to the device.
MAX_GAP = 8

BIT_TABLES = frozenset({RegisterTable.COIL, RegisterTable.DISCRETE_INPUT})

_STRUCT_FORMAT: dict[TagType, str] = {
    TagType.INT16: "h",
    TagType.UINT16: "H",
    TagType.INT32: "i",
    TagType.UINT32: "I",
    TagType.INT64: "q",
    TagType.UINT64: "Q",
    TagType.FLOAT32: "f",
    TagType.FLOAT64: "d",
}

INT_RANGE: dict[TagType, tuple[int, int]] = {
    TagType.INT16: (-(2**15), 2**15 - 1),
    TagType.UINT16: (0, 2**16 - 1),
    TagType.INT32: (-(2**31), 2**31 - 1),
    TagType.UINT32: (0, 2**32 - 1),
    TagType.INT64: (-(2**63), 2**63 - 1),
    TagType.UINT64: (0, 2**64 - 1),
}

FLOAT_TYPES = frozenset({TagType.FLOAT32, TagType.FLOAT64})
_WORD_SWAPPED = frozenset({ByteOrder.CDAB, ByteOrder.DCBA})
_BYTE_SWAPPED = frozenset({ByteOrder.BADC, ByteOrder.DCBA})


def is_bit_table(table: RegisterTable) -> bool:
    return table in BIT_TABLES


def register_count(tag: ModbusTag) -> int:
    """Registers (or bits, on a coil/discrete-input table) the tag occupies."""
    if tag.type is TagType.STRING:
        return tag.length
    if tag.type is TagType.BOOL:
        return 1
    return struct.calcsize(_STRUCT_FORMAT[tag.type]) // 2


def _swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def _check_words(words: Sequence[int], tag: ModbusTag) -> None:
    expected = register_count(tag)
    if len(words) != expected:
        raise ValueError(f"tag {tag.name!r} ({tag.type}) spans {expected} register(s), got {len(words)}")
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"tag {tag.name!r}: {w!r} is not a 16-bit register value")


def _words_to_bytes(words: Sequence[int], order: ByteOrder, *, word_swap: bool) -> bytes:
    ordered = list(reversed(words)) if word_swap and order in _WORD_SWAPPED else list(words)
    if order in _BYTE_SWAPPED:
        ordered = [_swap_bytes(w) for w in ordered]
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def _bytes_to_words(data: bytes, order: ByteOrder, *, word_swap: bool) -> list[int]:
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if order in _BYTE_SWAPPED:
        words = [_swap_bytes(w) for w in words]
    if word_swap and order in _WORD_SWAPPED:
        words.reverse()
    return words


def _is_unscaled(tag: ModbusTag) -> bool:
    return tag.scale == 1 and tag.offset == 0


def decode(words: Sequence[int], tag: ModbusTag) -> Value:
    """The engineering value of a tag from its registers (or its one bit, for coils/discrete inputs).

    Raises ValueError when the registers cannot hold a value of the tag's type (wrong count,
    not ASCII); the message names the tag.
    """
    _check_words(words, tag)
    if tag.type is TagType.BOOL:
        return words[0] != 0
    if tag.type is TagType.STRING:
        return _decode_string(words, tag)
    data = _words_to_bytes(words, tag.byte_order, word_swap=True)
    raw: int | float = struct.unpack(">" + _STRUCT_FORMAT[tag.type], data)[0]
    if _is_unscaled(tag):
        return raw
    return raw * tag.scale + tag.offset


def _decode_string(words: Sequence[int], tag: ModbusTag) -> str:
    data = _words_to_bytes(words, tag.byte_order, word_swap=False).rstrip(b"\x00 ")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"tag {tag.name!r}: string registers are not ASCII ({data!r})") from e


def encode(value: Value, tag: ModbusTag) -> list[int]:
    """The registers that `decode` turns back into `value` (ints rounded to the nearest raw step).

    Raises ValueError naming the tag when the value does not fit the tag's type.
    """
    if tag.type is TagType.BOOL:
        return [1 if value else 0]
    if tag.type is TagType.STRING:
        return _encode_string(value, tag)
    raw = _unscale(value, tag)
    fmt = ">" + _STRUCT_FORMAT[tag.type]
    try:
        data = struct.pack(fmt, raw)
    except (OverflowError, struct.error) as e:
        raise ValueError(f"tag {tag.name!r}: {value!r} does not fit a {tag.type} ({e})") from e
    return _bytes_to_words(data, tag.byte_order, word_swap=True)


def _unscale(value: Value, tag: ModbusTag) -> int | float:
    if isinstance(value, str) or not isinstance(value, numbers.Real):
        raise ValueError(f"tag {tag.name!r} is a {tag.type}: {value!r} is not a number")
    if not _is_unscaled(tag):
        if tag.scale == 0:
            raise ValueError(f"tag {tag.name!r} has scale 0: a value cannot be turned back into registers")
        value = (float(value) - tag.offset) / tag.scale
    if tag.type in FLOAT_TYPES:
        return float(value)
    return _to_int_raw(value, tag)


def _to_int_raw(value: numbers.Real, tag: ModbusTag) -> int:
    # Integral values stay exact: a float detour would corrupt 64-bit counters above 2**53.
    if isinstance(value, numbers.Integral):
        raw = int(value)
    elif math.isfinite(value):
        raw = round(float(value))
    else:
        raise ValueError(f"tag {tag.name!r} is a {tag.type}: {value!r} has no integer representation")
    lo, hi = INT_RANGE[tag.type]
    if not lo <= raw <= hi:
        raise ValueError(
            f"tag {tag.name!r}: raw value {raw} is outside the {tag.type} range {lo}..{hi}"
            + ("" if _is_unscaled(tag) else f" (scale {tag.scale}, offset {tag.offset})")
        )
    return raw


def _encode_string(value: Value, tag: ModbusTag) -> list[int]:
    if not isinstance(value, str):
        raise ValueError(f"tag {tag.name!r} is a string: {value!r} is not text")
    try:
        data = value.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError(f"tag {tag.name!r}: {value!r} is not ASCII") from e
    capacity = 2 * tag.length
    if len(data) > capacity:
        raise ValueError(f"tag {tag.name!r}: {value!r} has {len(data)} characters, the tag holds {capacity}")
    return _bytes_to_words(data.ljust(capacity, b"\x00"), tag.byte_order, word_swap=False)


def value_range(tag: ModbusTag) -> tuple[float, float]:
    """Smallest and largest engineering value the tag can carry (infinite for float types)."""
    if tag.type in FLOAT_TYPES:
        return (-math.inf, math.inf)
    if tag.type is TagType.BOOL:
        return (0.0, 1.0)
    if tag.type is TagType.STRING:
        return (-math.inf, math.inf)
    lo, hi = INT_RANGE[tag.type]
    if _is_unscaled(tag):
        return (float(lo), float(hi))
    ends = (lo * tag.scale + tag.offset, hi * tag.scale + tag.offset)
    return (min(ends), max(ends))


@dataclass(frozen=True)
class ReadBlock:
    """One read request: `count` registers (or bits) of `table` from `start`, covering `tags`."""

    table: RegisterTable
    start: int
    count: int
    tags: tuple[ModbusTag, ...]

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.start + self.count

    def describe(self) -> str:
        """`holding 0-7`: the addresses as a person would look them up in the device manual."""
        return f"{self.table.value} {self.start}-{self.end - 1}"

    def words_of(self, tag: ModbusTag, data: Sequence[int]) -> Sequence[int]:
        """The part of this block's read result that belongs to `tag`."""
        first = tag.address - self.start
        return data[first : first + register_count(tag)]


def plan_reads(tags: Iterable[ModbusTag], *, max_gap: int = MAX_GAP) -> list[ReadBlock]:
    """Group tags into reads: per table, by address, joining neighbours up to the protocol limit."""
    by_table: dict[RegisterTable, list[ModbusTag]] = {}
    for tag in tags:
        by_table.setdefault(tag.table, []).append(tag)
    blocks: list[ReadBlock] = []
    for table in RegisterTable:  # a fixed table order keeps the plan stable across runs
        if table in by_table:
            blocks.extend(_plan_table(table, by_table[table], max_gap))
    return blocks


def _plan_table(table: RegisterTable, tags: list[ModbusTag], max_gap: int) -> list[ReadBlock]:
    limit = MAX_READ_BITS if is_bit_table(table) else MAX_READ_REGISTERS
    ordered = sorted(tags, key=lambda t: (t.address, -register_count(t), t.name))
    blocks: list[ReadBlock] = []
    start = end = 0
    members: list[ModbusTag] = []
    for tag in ordered:
        t_end = tag.address + register_count(tag)
        if members and tag.address - end <= max_gap and max(end, t_end) - start <= limit:
            members.append(tag)
            end = max(end, t_end)
            continue
        if members:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
        start, end, members = tag.address, t_end, [tag]
    if members:
        blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return blocks
