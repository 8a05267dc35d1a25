"""plantstream.core.records against schemas/*.avsc: every field, its type and nullability agree."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

import schemas
from plantstream.core import records
from plantstream.core.serde import Codec, Decoder

PRIMITIVES = {"string": str, "long": int, "int": int, "double": float, "float": float, "boolean": bool}
TYPED = {
    schemas.READING_FRAME: records.ReadingFrame,
    schemas.KPI_WINDOW: records.KpiWindow,
    schemas.OEE_WINDOW: records.OeeWindow,
    schemas.ANOMALY_SCORE: records.AnomalyScore,
    schemas.ALERT: records.Alert,
    schemas.ASSET_STATE: records.AssetState,
    schemas.ALARM_COMMAND: records.AlarmCommand,
    schemas.ALARM_STATE: records.AlarmState,
    schemas.ALARM_EVENT: records.AlarmEvent,
}


def options(hint: Any) -> set[Any]:
    """A union's members as a set; anything else as a set of one."""
    if get_origin(hint) in (Union, types.UnionType):
        return set(get_args(hint))
    return {hint}


def expected(avro: Any) -> set[Any]:
    """The Python types a value of this Avro type may have, for comparison with a TypedDict hint."""
    if isinstance(avro, list):
        return set().union(*(expected(a) for a in avro))
    if isinstance(avro, str):
        return {type(None)} if avro == "null" else {PRIMITIVES[avro]}
    kind = avro["type"]
    if kind == "enum":
        return {Literal[tuple(avro["symbols"])]}
    if kind == "array":
        return {("list", frozenset(expected(avro["items"])))}
    if kind == "map":
        return {("dict", frozenset(expected(avro["values"])))}
    if kind == "record":
        return {("record", avro["name"])}
    return expected(kind)


def actual(hint: Any) -> set[Any]:
    out: set[Any] = set()
    for h in options(hint):
        if get_origin(h) is list:
            out.add(("list", frozenset(actual(get_args(h)[0]))))
        elif get_origin(h) is dict:
            out.add(("dict", frozenset(actual(get_args(h)[1]))))
        elif typing.is_typeddict(h):
            out.add(("record", h.__name__))
        elif get_origin(h) is Literal:
            out.add(Literal[get_args(h)])
        elif h is Any:
            raise AssertionError("records must not use Any")
        else:
            out.add(h)
    # a Value (int | float | bool | str | None) is Avro's ["null", "long", "double", "boolean", "string"]
    return out


def check_record(avro: dict[str, Any], typed: Any) -> None:
    hints = get_type_hints(typed)
    assert list(hints) == [f["name"] for f in avro["fields"]], f"{typed.__name__}: field names or order differ"
    for f in avro["fields"]:
        assert actual(hints[f["name"]]) == expected(f["type"]), f"{typed.__name__}.{f['name']}"
        # nested records (an array's items, a nullable record): their fields are checked too
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for branch in branches:
            item = branch["items"] if isinstance(branch, dict) and branch["type"] == "array" else branch
            if isinstance(item, dict) and item["type"] == "record":
                hint = hints[f["name"]]
                typed_item = next(
                    h
                    for h in (get_args(a)[0] if get_origin(a) is list else a for a in options(hint))
                    if typing.is_typeddict(h)
                )
                check_record(item, typed_item)


@pytest.mark.parametrize("name", schemas.ALL)
def test_typed_records_match_the_avro_schemas(name: str) -> None:
    check_record(schemas.schema_json(name), TYPED[name])


def test_every_schema_has_a_typed_record() -> None:
    assert set(TYPED) == set(schemas.ALL)


def test_built_records_survive_an_avro_round_trip() -> None:
    frame = records.reading_frame(
        asset="e.s.a.l.m",
        device="d",
        seq=3,
        producer_id="p",
        scan_time=1_700_000_000_000_000,
        samples=[
            records.sample("t", 1_700_000_000_000_000, 1.5, unit="bar"),
            records.sample("s", 1_700_000_000_000_000, None, "BAD"),
        ],
    )
    alert = records.alert(
        alert_id="a1",
        asset="e.s.a.l.m",
        rule="r",
        kind="threshold",
        state="RAISED",
        severity="WARNING",
        time=1,
        message="m",
        tags=("t",),
        value=2.0,
    )
    for name, record in ((schemas.READING_FRAME, frame), (schemas.ALERT, alert)):
        codec = Codec(name, 1)
        decoded = Decoder(lambda _id, n=name: schemas.schema_text(n), name).decode(codec.encode(record))
        assert decoded == record
