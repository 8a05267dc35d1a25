"""The columnar ReadingFrame codec writes and reads exactly fastavro's bytes, and leaves what it cannot to fastavro."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from plantstream.core.frame_codec import ColumnarDecoder, ColumnarEncoder, FrameColumns, zigzag_varint
from plantstream.core.records import reading_frame, sample
from plantstream.core.serde import Codec, Decoder, parse_internal

PARSED = parse_internal(schemas.schema_json(schemas.READING_FRAME))
T0 = 1_767_225_600_000_000


def fastavro_body(frame: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, frame)
    return buf.getvalue()


def fastavro_read(body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(body), PARSED, None)
    return out


text = st.text(min_size=0, max_size=12)
times = st.integers(min_value=0, max_value=2**62)
floats = st.floats(allow_nan=True, allow_infinity=True)
qualities = st.sampled_from(["GOOD", "UNCERTAIN", "BAD"])


@st.composite
def float_frames(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=0, max_value=30))
    same_time = draw(st.booleans())
    t = draw(times)
    samples = [
        sample(draw(text), t if same_time else draw(times), draw(floats), draw(qualities), draw(text)) for _ in range(n)
    ]
    return dict(
        reading_frame(
            asset=draw(text),
            device=draw(text),
            seq=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
            producer_id=draw(text),
            scan_time=draw(times),
            samples=samples,
            historical=draw(st.booleans()),
            buffered=draw(st.booleans()),
        )
    )


def same_frame(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(f: dict[str, Any]) -> Any:
        return {
            **f,
            "samples": [
                # the value's type too: 1, 1.0 and True are equal in Python but not the same sample
                {
                    **s,
                    "value": "nan" if isinstance(s["value"], float) and math.isnan(s["value"]) else s["value"],
                    "type": type(s["value"]).__name__,
                }
                for s in f["samples"]
            ],
        }

    return bool(key(a) == key(b))


@settings(max_examples=300, deadline=None)
@given(float_frames())
def test_encoding_a_float_frame_gives_fastavros_bytes(frame: dict[str, Any]) -> None:
    body = ColumnarEncoder().encode_frame(frame)
    assert body == fastavro_body(frame)


@settings(max_examples=300, deadline=None)
@given(float_frames(), float_frames())
def test_a_learnt_layout_reads_the_next_frame_as_fastavro_does(first: dict[str, Any], second: dict[str, Any]) -> None:
    dec = ColumnarDecoder()
    body = fastavro_body(first)
    assert dec.decode(body) is None  # nothing learnt yet
    widths = {len(zigzag_varint(s["source_time"])) for s in first["samples"]}
    if not dec.learn(body, fastavro_read(body)):
        assert len(widths) > 1  # only samples of several time varint widths are left to fastavro
        return
    # the second frame with the first one's layout (tags, units, times) but its own values and qualities
    second["samples"] = (
        [
            {**s2, "tag": s1["tag"], "unit": s1["unit"], "source_time": s1["source_time"]}
            for s1, s2 in zip(first["samples"], second["samples"] * len(first["samples"]), strict=False)
        ]
        if second["samples"]
        else [dict(s) for s in first["samples"]]
    )
    body2 = fastavro_body(second)
    cols = dec.decode(body2)
    if len(second["samples"]) == len(first["samples"]):
        assert isinstance(cols, FrameColumns)
        assert same_frame(dict(cols.to_frame()), fastavro_read(body2))


def test_frames_with_nulls_or_text_are_left_to_fastavro_and_longs_and_booleans_are_read_exactly() -> None:
    enc, dec = ColumnarEncoder(), ColumnarDecoder()

    def frame(value: Any) -> dict[str, Any]:
        return dict(
            reading_frame(
                asset="a.b.c.d.e",
                device="d",
                seq=1,
                producer_id="p",
                scan_time=T0,
                samples=[sample("t", T0, 1.5), sample("u", T0, value)],
            )
        )

    for value in (None, "open"):
        body = fastavro_body(frame(value))
        assert enc.encode_frame(frame(value)) is None
        assert not dec.learn(body, fastavro_read(body))
        assert dec.decode(body) is None
    for value, other in ((7, 9), (-(2**63), 2**63 - 1), (2**53 + 1, 2**53 + 3), (True, False)):
        assert enc.encode_frame(frame(value)) == fastavro_body(frame(value))
        body = fastavro_body(frame(value))
        assert dec.learn(body, fastavro_read(body))
        body2 = fastavro_body(frame(other))
        got = dec.decode(body2)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and len(zigzag_varint(other)) != len(zigzag_varint(value))
        ):
            assert got is None  # another varint width: another layout, not yet learnt
            continue
        assert got is not None and same_frame(dict(got.to_frame()), fastavro_read(body2))
        assert got.values.tolist() == [1.5, float(other)]


longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def mixed_frames(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two frames of one layout: the same tags, units, times and value kinds; the second with other values
    of the same widths."""
    n = draw(st.integers(min_value=1, max_value=12))
    kinds = [draw(st.sampled_from(["d", "l", "b"])) for _ in range(n)]

    def value(kind: str) -> Any:
        if kind == "d":
            return draw(floats)
        if kind == "b":
            return draw(st.booleans())
        return draw(longs)

    t = draw(times)
    first = [sample(draw(text), t, value(k), draw(qualities), draw(text)) for k in kinds]
    second = []
    for s, k in zip(first, kinds, strict=True):
        v = value(k)
        if k == "l":  # the same varint width
            v = v if len(zigzag_varint(v)) == len(zigzag_varint(s["value"])) else s["value"]
        second.append({**s, "value": v, "quality": draw(qualities)})
    base = dict(reading_frame(asset="a.b.c.d.e", device="d", seq=1, producer_id="p", scan_time=t, samples=first))
    return base, {**base, "seq": 2, "samples": second}


@settings(max_examples=300, deadline=None)
@given(mixed_frames())
def test_encoding_a_mixed_frame_gives_fastavros_bytes(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    enc = ColumnarEncoder()
    for f in pair:  # the second with the first one's layout
        assert enc.encode_frame(f) == fastavro_body(f)


@settings(max_examples=300, deadline=None)
@given(mixed_frames())
def test_a_learnt_mixed_layout_reads_the_next_frame_as_fastavro_does(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    first, second = pair
    dec = ColumnarDecoder()
    body = fastavro_body(first)
    assert dec.learn(body, fastavro_read(body))
    body2 = fastavro_body(second)
    got = dec.decode(body2)
    assert got is not None
    assert same_frame(dict(got.to_frame()), fastavro_read(body2))


def test_a_known_layout_refuses_a_frame_whose_fixed_bytes_differ() -> None:
    dec = ColumnarDecoder()

    def mk(tag: str, value: float) -> dict[str, Any]:
        return dict(
            reading_frame(
                asset="a.b.c.d.e", device="d", seq=1, producer_id="p", scan_time=T0, samples=[sample(tag, T0, value)]
            )
        )

    body = fastavro_body(mk("pv1", 1.0))
    assert dec.learn(body, fastavro_read(body))
    assert dec.decode(fastavro_body(mk("pv2", 2.0))) is None  # same length, another tag
    got = dec.decode(fastavro_body(mk("pv1", 2.0)))
    assert got is not None and got.values.tolist() == [2.0] and got.tags == ("pv1",)


def test_several_array_blocks_are_not_learnt() -> None:
    # a writer may split the samples array into blocks; the columnar reader knows only one block
    frame = dict(
        reading_frame(
            asset="a.b.c.d.e",
            device="d",
            seq=1,
            producer_id="p",
            scan_time=T0,
            samples=[sample("t", T0, 1.0), sample("u", T0, 2.0)],
        )
    )
    one_block = fastavro_body(frame)
    head_len = len(one_block) - len(fastavro_body({**frame, "samples": []})) + 1
    samples_region = one_block[len(one_block) - head_len :]
    assert samples_region[0] == 4  # count 2, zigzag
    first_item_len = (len(samples_region) - 2) // 2
    blocks = (
        bytes([2])
        + samples_region[1 : 1 + first_item_len]
        + bytes([2])
        + samples_region[1 + first_item_len : -1]
        + b"\0"
    )
    body = one_block[: len(one_block) - head_len] + blocks
    assert fastavro_read(body) == fastavro_read(one_block)
    dec = ColumnarDecoder()
    assert not dec.learn(body, fastavro_read(body))
    assert dec.decode(body) is None


def test_serde_codec_and_decoder_use_the_columns_transparently() -> None:
    codec = Codec(schemas.READING_FRAME, 7)
    decoder = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)
    frames = [
        dict(
            reading_frame(
                asset="a.b.c.d.e",
                device="d",
                seq=i,
                producer_id="p",
                scan_time=T0 + i,
                samples=[sample("t", T0 + i, float(i), unit="bar"), sample("u", T0 + i, 2.0 * i)],
            )
        )
        for i in range(3)
    ]
    data = [codec.encode(f) for f in frames]
    assert [d[5:] for d in data] == [fastavro_body(f) for f in frames]
    assert decoder.decode(data[0]) == frames[0]  # fastavro, then learnt
    cols = decoder.decode_frame(data[1])
    assert isinstance(cols, FrameColumns) and cols.values.tolist() == [1.0, 2.0] and cols.units == ("bar", "")
    assert decoder.decode(data[2]) == frames[2]
    enc = codec.encode_columns(
        asset="a.b.c.d.e",
        device="d",
        seq=2,
        producer_id="p",
        scan_time=T0 + 2,
        tags=["t", "u"],
        values=np.array([2.0, 4.0]),
        units=["bar", ""],
    )
    assert enc == data[2]


def test_the_synthetic_plant_encodes_the_same_bytes_from_columns_as_from_records() -> None:
    from plantstream.simulators.synthetic import SyntheticPlant

    codec = Codec(schemas.READING_FRAME, 3)
    as_records, as_columns = SyntheticPlant(3, 8, 10.0), SyntheticPlant(3, 8, 10.0)
    for i in range(30):
        t = T0 + i * 100_000
        assert codec.encode_columns(**as_columns.frame_columns(i % 3, t)) == codec.encode(as_records.frame(i % 3, t))
