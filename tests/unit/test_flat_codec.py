"""The flat writer (plantstream/core/flat_codec.py) writes the worker's output records byte for byte as
fastavro does, and hands fastavro every record it cannot write exactly so."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from plantstream.core.flat_codec import FlatEncodeError, flat_writer
from plantstream.core.serde import Codec, Decoder

FLAT = [schemas.ANOMALY_SCORE, schemas.KPI_WINDOW, schemas.OEE_WINDOW]
LONGS = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(1 << 60), max_value=1 << 60)
TAGS = st.sampled_from(["pv00", "pv01", "temp", "ü-Druck", "流量", ""]) | st.text(max_size=12)


def _strategy(t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, list):  # ["null", x]
        return st.none() | _strategy(t[1])
    if isinstance(t, dict):
        if t["type"] == "map":
            return st.dictionaries(TAGS, _strategy(t["values"]), max_size=20)
        return _strategy(t["type"])
    return {"string": st.text(max_size=40), "long": LONGS, "double": DOUBLES, "boolean": st.booleans()}[t]


def _records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    parsed = Codec(name, 1).parsed
    return st.fixed_dictionaries({f["name"]: _strategy(f["type"]) for f in parsed["fields"]})


def _fastavro(codec: Codec, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, codec.parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", FLAT)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flat_records_are_fastavros_bytes(name: str, data: st.DataObject) -> None:
    codec = Codec(name, 3)
    write = flat_writer(codec.parsed)
    assert write is not None
    for _ in range(3):  # the same keys again: the cached layouts and strings give the same bytes
        record = data.draw(_records(name))
        assert write(record) == _fastavro(codec, record)
        assert codec.encode(record) == codec._header + _fastavro(codec, record)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(DOUBLES, min_size=17, max_size=17), t=LONGS)
def test_an_assets_scores_with_repeating_tags_are_fastavros_bytes(values: list[float], t: int) -> None:
    codec = Codec(schemas.ANOMALY_SCORE, 3)
    for shift in range(3):
        record = {
            "asset": "plant.site.area.line.m00001",
            "time": t,
            "model": "xreg-multiscale/5",
            "score": values[shift],
            "threshold": 1.3,
            "is_anomaly": bool(shift % 2),
            "warming_up": False,
            "contributions": {f"pv{k:02d}": values[(k + shift) % 17] for k in range(17)},
        }
        body = codec.encode(record)
        assert body == codec._header + _fastavro(codec, record)
        back = Decoder(lambda _id: schemas.schema_json(schemas.ANOMALY_SCORE)).decode(body)
        assert back["contributions"].keys() == record["contributions"].keys()


@pytest.mark.parametrize(
    "change",
    [
        {"score": "high"},  # text for a double
        {"time": None},  # null for a long
        {"time": 1 << 64},  # out of range
        {"contributions": {"pv00": None}},
        {"contributions": {1: 0.5}},  # a key that is no string
        {"asset": "\ud800"},  # not encodable as UTF-8
    ],
)
def test_a_record_the_flat_writer_cannot_write_goes_to_fastavro(change: dict[str, Any]) -> None:
    codec = Codec(schemas.ANOMALY_SCORE, 3)
    write = flat_writer(codec.parsed)
    assert write is not None
    record = {
        "asset": "a",
        "time": 1,
        "model": "m",
        "score": 0.5,
        "threshold": 1.0,
        "is_anomaly": False,
        "warming_up": False,
        "contributions": {"pv00": 0.5},
    }
    write(record)  # the layout of {"pv00": ...} cached: a bad value under a known key set is caught too
    record.update(change)
    with pytest.raises(FlatEncodeError):
        write(record)
    with pytest.raises(Exception) as fast:  # what fastavro says is what the caller gets
        _fastavro(codec, record)
    with pytest.raises(type(fast.value)):
        codec.encode(record)


def test_a_missing_field_with_a_default_is_written_by_fastavro_with_its_default() -> None:
    codec = Codec(schemas.ANOMALY_SCORE, 3)
    record = {"asset": "a", "time": 1, "model": "m", "score": 0.5, "threshold": 1.0, "is_anomaly": False}
    assert codec.encode(record) == codec._header + _fastavro(codec, record)


def test_only_flat_schemas_get_a_flat_writer() -> None:
    for name in (schemas.ASSET_STATE, schemas.READING_FRAME):
        assert flat_writer(Codec(name, 1).parsed) is None
