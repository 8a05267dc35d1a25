"""Register codec and read planning: byte orders against known wire patterns, round trips, limits."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest

from plantstream.core.config import ByteOrder, ModbusTag, RegisterTable, TagType
from producers.modbus_codec import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    ReadBlock,
    decode,
    encode,
    plan_reads,
    register_count,
    value_range,
)

NUMERIC = [t for t in TagType if t not in (TagType.BOOL, TagType.STRING)]


def tag(type_: TagType = TagType.UINT16, order: ByteOrder = ByteOrder.ABCD, **kw: Any) -> ModbusTag:
    kw.setdefault("name", f"t_{type_.value}_{order.value}")
    kw.setdefault("address", 0)
    return ModbusTag(type=type_, byte_order=order, **kw)


# --- register_count --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "count"),
    [
        (TagType.INT16, 1),
        (TagType.UINT16, 1),
        (TagType.INT32, 2),
        (TagType.UINT32, 2),
        (TagType.FLOAT32, 2),
        (TagType.INT64, 4),
        (TagType.UINT64, 4),
        (TagType.FLOAT64, 4),
    ],
)
def test_register_count_of_numbers(type_: TagType, count: int) -> None:
    assert register_count(tag(type_)) == count


def test_register_count_of_bools_and_strings() -> None:
    assert register_count(tag(TagType.BOOL, table=RegisterTable.COIL)) == 1
    assert register_count(tag(TagType.BOOL, table=RegisterTable.DISCRETE_INPUT)) == 1
    assert register_count(tag(TagType.BOOL, table=RegisterTable.HOLDING)) == 1
    assert register_count(tag(TagType.STRING, length=7)) == 7


# --- known wire patterns ---------------------------------------------------------------------------

KNOWN = [
    (
        TagType.FLOAT32,
        1.0,
        {"ABCD": [0x3F80, 0x0000], "CDAB": [0x0000, 0x3F80], "BADC": [0x803F, 0x0000], "DCBA": [0x0000, 0x803F]},
    ),
    (
        TagType.INT32,
        -2,
        {"ABCD": [0xFFFF, 0xFFFE], "CDAB": [0xFFFE, 0xFFFF], "BADC": [0xFFFF, 0xFEFF], "DCBA": [0xFEFF, 0xFFFF]},
    ),
    (
        TagType.UINT32,
        0x01020304,
        {"ABCD": [0x0102, 0x0304], "CDAB": [0x0304, 0x0102], "BADC": [0x0201, 0x0403], "DCBA": [0x0403, 0x0201]},
    ),
    (
        TagType.UINT64,
        0x0102030405060708,
        {
            "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
            "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
            "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
            "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
        },
    ),
    (
        TagType.FLOAT64,
        1.0,
        {"ABCD": [0x3FF0, 0, 0, 0], "CDAB": [0, 0, 0, 0x3FF0], "BADC": [0xF03F, 0, 0, 0], "DCBA": [0, 0, 0, 0xF03F]},
    ),
    (TagType.INT16, -2, {"ABCD": [0xFFFE], "CDAB": [0xFFFE], "BADC": [0xFEFF], "DCBA": [0xFEFF]}),
    (TagType.UINT16, 0x1234, {"ABCD": [0x1234], "CDAB": [0x1234], "BADC": [0x3412], "DCBA": [0x3412]}),
    (
        TagType.INT64,
        -2,
        {
            "ABCD": [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
            "CDAB": [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
            "BADC": [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
            "DCBA": [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
        },
    ),
]


@pytest.mark.parametrize(("type_", "value", "patterns"), KNOWN, ids=[f"{k[0]}={k[1]}" for k in KNOWN])
@pytest.mark.parametrize("order", list(ByteOrder))
def test_known_patterns(type_: TagType, value: Any, patterns: dict[str, list[int]], order: ByteOrder) -> None:
    t = tag(type_, order)
    assert encode(value, t) == patterns[order.value]
    decoded = decode(patterns[order.value], t)
    assert decoded == value
    assert type(decoded) is type(value)


# --- round trips -----------------------------------------------------------------------------------


def _samples(type_: TagType) -> list[int | float]:
    if type_ is TagType.FLOAT32:
        # values exactly representable in float32, so the round trip is exact
        return [0.0, -0.0, 1.0, -1.5, 3.4028234663852886e38, 1.401298464324817e-45, float(np.float32(80.123))]
    if type_ is TagType.FLOAT64:
        return [0.0, 1.0, -2.5, math.pi, 1.7976931348623157e308, -5e-324]
    lo, hi = {
        TagType.INT16: (-(2**15), 2**15 - 1),
        TagType.UINT16: (0, 2**16 - 1),
        TagType.INT32: (-(2**31), 2**31 - 1),
        TagType.UINT32: (0, 2**32 - 1),
        TagType.INT64: (-(2**63), 2**63 - 1),
        TagType.UINT64: (0, 2**64 - 1),
    }[type_]
    return [lo, hi, 0, 1, lo + 1, hi - 1, (lo + hi) // 2, 0x1234 % (hi + 1)]


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize("type_", NUMERIC)
def test_round_trip_every_type_and_byte_order(type_: TagType, order: ByteOrder) -> None:
    t = tag(type_, order)
    for v in _samples(type_):
        words = encode(v, t)
        assert len(words) == register_count(t)
        assert all(0 <= w <= 0xFFFF for w in words)
        back = decode(words, t)
        assert back == v and type(back) is type(v), (v, words, back)


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize("type_", NUMERIC)
def test_decode_then_encode_is_identity_on_registers(type_: TagType, order: ByteOrder) -> None:
    t = tag(type_, order)
    rng = np.random.default_rng(1)
    for _ in range(50):
        words = [int(w) for w in rng.integers(0, 0x10000, size=register_count(t))]
        value = decode(words, t)
        if isinstance(value, float) and math.isnan(value):
            continue  # NaN payload bits are not preserved through Python floats
        assert encode(value, t) == words


def test_float32_rounding_is_what_a_reader_sees() -> None:
    t = tag(TagType.FLOAT32)
    assert decode(encode(0.1, t), t) == float(np.float32(0.1))
    assert decode(encode(0.1, t), t) != 0.1


def test_nan_and_infinity_of_floats() -> None:
    t = tag(TagType.FLOAT32, ByteOrder.CDAB)
    assert math.isnan(float(decode(encode(math.nan, t), t)))
    assert decode(encode(math.inf, t), t) == math.inf


@pytest.mark.parametrize("order", list(ByteOrder))
def test_bool_on_registers_and_bits(order: ByteOrder) -> None:
    reg = tag(TagType.BOOL, order)
    assert encode(True, reg) == [1] and encode(False, reg) == [0]
    assert decode([0], reg) is False
    assert decode([0x0100], reg) is True  # any nonzero register is true
    coil = tag(TagType.BOOL, order, table=RegisterTable.COIL)
    assert decode([True], coil) is True
    assert decode([False], coil) is False


# --- scale and offset ------------------------------------------------------------------------------


def test_scale_turns_ints_into_floats() -> None:
    t = tag(TagType.INT16, scale=0.1, name="motor_current")
    assert encode(12.3, t) == [123]
    assert decode([123], t) == pytest.approx(12.3)
    assert isinstance(decode([123], t), float)
    assert encode(-12.3, t) == [(-123) & 0xFFFF]
    assert decode([(-123) & 0xFFFF], t) == pytest.approx(-12.3)


def test_offset_and_scale_together() -> None:
    t = tag(TagType.UINT16, scale=0.5, offset=-40.0)
    assert decode([0], t) == -40.0
    assert decode([200], t) == 60.0
    assert encode(60.0, t) == [200]
    assert encode(60.2, t) == [200]  # rounds to the nearest raw step
    assert encode(60.3, t) == [201]


def test_unscaled_ints_stay_ints_and_offset_alone_makes_float() -> None:
    assert decode([7], tag(TagType.UINT16)) == 7 and isinstance(decode([7], tag(TagType.UINT16)), int)
    v = decode([7], tag(TagType.UINT16, offset=1.0))
    assert v == 8.0 and isinstance(v, float)


def test_scaled_float() -> None:
    t = tag(TagType.FLOAT32, ByteOrder.DCBA, scale=2.0, offset=1.0)
    assert decode(encode(5.0, t), t) == 5.0
    assert encode(5.0, t) == encode(2.0, tag(TagType.FLOAT32, ByteOrder.DCBA))


def test_big_unsigned_64_bit_values_stay_exact() -> None:
    t = tag(TagType.UINT64, ByteOrder.CDAB)
    v = 2**64 - 3
    assert decode(encode(v, t), t) == v


def test_value_range() -> None:
    assert value_range(tag(TagType.INT16, scale=0.1)) == pytest.approx((-3276.8, 3276.7))
    assert value_range(tag(TagType.UINT16, scale=-1.0)) == (-65535.0, 0.0)
    assert value_range(tag(TagType.FLOAT32)) == (-math.inf, math.inf)


# --- strings ---------------------------------------------------------------------------------------


def test_string_abcd_and_padding() -> None:
    t = tag(TagType.STRING, length=3)
    assert encode("ABC", t) == [0x4142, 0x4300, 0x0000]
    assert decode([0x4142, 0x4300, 0x0000], t) == "ABC"
    assert decode([0x4142, 0x4320, 0x2020], t) == "ABC"  # space padding is stripped too


@pytest.mark.parametrize("order", [ByteOrder.BADC, ByteOrder.DCBA])
def test_string_byte_swapped(order: ByteOrder) -> None:
    t = tag(TagType.STRING, order, length=2)
    assert encode("ABC", t) == [0x4241, 0x0043]
    assert decode([0x4241, 0x0043], t) == "ABC"


def test_string_word_swap_does_not_reorder_registers() -> None:
    t = tag(TagType.STRING, ByteOrder.CDAB, length=2)
    assert encode("ABCD", t) == [0x4142, 0x4344]


@pytest.mark.parametrize("order", list(ByteOrder))
def test_string_round_trip(order: ByteOrder) -> None:
    t = tag(TagType.STRING, order, length=4)
    for s in ["", "x", "PRESS-01", "a b"]:
        assert decode(encode(s, t), t) == s


def test_string_errors_name_the_tag() -> None:
    t = tag(TagType.STRING, length=2, name="recipe")
    with pytest.raises(ValueError, match=r"recipe.*5 characters.*holds 4"):
        encode("ABCDE", t)
    with pytest.raises(ValueError, match=r"recipe.*not ASCII"):
        encode("Grüße", t)
    with pytest.raises(ValueError, match=r"recipe.*not ASCII"):
        decode([0xC3BC, 0x0000], t)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        (TagType.UINT16, 65536),
        (TagType.UINT16, -1),
        (TagType.INT16, 32768),
        (TagType.INT16, -32769),
        (TagType.UINT32, 2**32),
        (TagType.INT32, -(2**31) - 1),
        (TagType.UINT64, -1),
        (TagType.INT64, 2**63),
        (TagType.FLOAT32, 1e39),
        (TagType.UINT16, math.inf),
        (TagType.INT32, math.nan),
    ],
)
def test_out_of_range_raises_naming_the_tag(type_: TagType, value: float) -> None:
    with pytest.raises(ValueError, match="'speed'"):
        encode(value, tag(type_, name="speed"))


def test_scaled_out_of_range_mentions_scale() -> None:
    with pytest.raises(ValueError, match=r"'motor_current'.*scale 0\.1"):
        encode(3276.8, tag(TagType.INT16, scale=0.1, name="motor_current"))
    assert encode(3276.7, tag(TagType.INT16, scale=0.1)) == [32767]


def test_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="not a number"):
        encode("12", tag(TagType.UINT16))
    with pytest.raises(ValueError, match="not text"):
        encode(12, tag(TagType.STRING, length=1))
    with pytest.raises(ValueError, match="spans 2 register"):
        decode([1], tag(TagType.FLOAT32))
    with pytest.raises(ValueError, match="16-bit register"):
        decode([0x10000], tag(TagType.UINT16))
    with pytest.raises(ValueError, match="scale 0"):
        encode(1.0, tag(TagType.UINT16, scale=0.0))


def test_numpy_scalars_are_accepted() -> None:
    assert encode(np.int64(5), tag(TagType.UINT16)) == [5]  # type: ignore[arg-type]
    assert encode(np.float64(1.0), tag(TagType.FLOAT32)) == [0x3F80, 0]


def test_float32_struct_agrees_with_numpy() -> None:
    t = tag(TagType.FLOAT32)
    for v in [0.1, 123.456, -7.25e-3]:
        words = encode(v, t)
        assert struct.unpack(">f", struct.pack(">HH", *words))[0] == float(np.float32(v))


# --- read planning ---------------------------------------------------------------------------------


def _t(name: str, address: int, type_: TagType = TagType.UINT16, **kw: Any) -> ModbusTag:
    return ModbusTag(name=name, address=address, type=type_, **kw)


def test_plan_merges_contiguous_and_small_gaps() -> None:
    tags = [_t("a", 0, TagType.FLOAT32), _t("b", 2, TagType.FLOAT32), _t("c", 12), _t("d", 22)]
    blocks = plan_reads(tags)
    # a..b contiguous, c after a gap of 8 (addresses 4-11) joins, d after a gap of 9 does not
    assert [(b.start, b.count) for b in blocks] == [(0, 13), (22, 1)]
    assert [t.name for t in blocks[0].tags] == ["a", "b", "c"]


def test_plan_gap_parameter() -> None:
    tags = [_t("a", 0), _t("b", 2)]
    assert len(plan_reads(tags, max_gap=0)) == 2
    assert len(plan_reads(tags, max_gap=1)) == 1


def test_plan_sorts_and_separates_tables() -> None:
    tags = [
        _t("h2", 9),
        _t("c1", 3, TagType.BOOL, table=RegisterTable.COIL),
        _t("h1", 0),
        _t("i1", 0, table=RegisterTable.INPUT),
        _t("d1", 0, TagType.BOOL, table=RegisterTable.DISCRETE_INPUT),
    ]
    blocks = plan_reads(tags)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        (RegisterTable.COIL, 3, 1),
        (RegisterTable.DISCRETE_INPUT, 0, 1),
        (RegisterTable.HOLDING, 0, 10),
        (RegisterTable.INPUT, 0, 1),
    ]


def test_plan_overlapping_tags_share_registers() -> None:
    whole = _t("whole", 4, TagType.UINT32)
    low = _t("low_word", 5)
    blocks = plan_reads([low, whole])
    assert len(blocks) == 1
    b = blocks[0]
    assert (b.start, b.count) == (4, 2)
    data = [0x0001, 0x0002]
    assert decode(b.words_of(whole, data), whole) == 0x00010002
    assert decode(b.words_of(low, data), low) == 2


def test_plan_respects_register_limit() -> None:
    tags = [_t(f"f{i}", 2 * i, TagType.FLOAT32) for i in range(100)]  # 200 contiguous registers
    blocks = plan_reads(tags)
    assert all(b.count <= MAX_READ_REGISTERS for b in blocks)
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 76)]  # a float never straddles reads
    assert sum(len(b.tags) for b in blocks) == 100


def test_plan_respects_bit_limit() -> None:
    tags = [_t(f"c{i}", i * 3, TagType.BOOL, table=RegisterTable.COIL) for i in range(1000)]
    blocks = plan_reads(tags)
    assert all(b.count <= MAX_READ_BITS for b in blocks)
    assert blocks[0].count == 1999 and len(blocks) == 2
    assert blocks[1].start == 2001  # next multiple of 3 after the full first read


def test_plan_long_string_alone() -> None:
    tags = [_t("s", 0, TagType.STRING, length=125), _t("x", 125)]
    blocks = plan_reads(tags)
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 1)]


def test_plan_of_demo_devices(demo_tags: list[ModbusTag]) -> None:
    blocks = plan_reads(demo_tags)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        (RegisterTable.COIL, 0, 1),
        (RegisterTable.INPUT, 0, 10),
    ]


@pytest.fixture
def demo_tags() -> list[ModbusTag]:
    # pump1-vfd of the demo plant
    return [
        _t("flow", 0, TagType.FLOAT32, table=RegisterTable.INPUT),
        _t("discharge_pressure", 2, TagType.FLOAT32, table=RegisterTable.INPUT),
        _t("motor_current", 4, TagType.FLOAT32, table=RegisterTable.INPUT),
        _t("vibration_rms", 6, TagType.FLOAT64, table=RegisterTable.INPUT),
        _t("running", 0, TagType.BOOL, table=RegisterTable.COIL),
    ]


def test_read_block_describe_and_slices() -> None:
    b = ReadBlock(RegisterTable.HOLDING, 10, 4, (_t("a", 10), _t("b", 12, TagType.UINT32)))
    assert b.describe() == "holding 10-13"
    assert b.end == 14
    assert list(b.words_of(b.tags[1], [1, 2, 3, 4])) == [3, 4]
