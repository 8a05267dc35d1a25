"""Pure parts of the OPC UA producer: quality classes, value conversion, batching and duplicate checks."""

from __future__ import annotations

import datetime as dt

from asyncua import ua

from plantstream.core.config import OpcUaDevice, OpcUaTag
from producers.readers.opcua import Change, FrameBuilder, avro_value, data_change_filter, quality_of, tag_name, to_us


def device(n: int = 2) -> OpcUaDevice:
    return OpcUaDevice(
        name="d",
        asset="a.b.c.d.e",
        endpoint="opc.tcp://127.0.0.1:4840",
        tags=[OpcUaTag(name=f"t{i}", node_id=f"ns=2;i={i}", unit="bar") for i in range(n)],
    )


def test_quality_follows_the_status_code_severity_bits() -> None:
    assert quality_of(ua.StatusCodes.Good) == "GOOD"
    assert quality_of(ua.StatusCodes.UncertainLastUsableValue) == "UNCERTAIN"
    assert quality_of(ua.StatusCodes.BadNodeIdUnknown) == "BAD"
    assert quality_of(ua.StatusCode(ua.UInt32(ua.StatusCodes.BadCommunicationError))) == "BAD"
    assert quality_of(None) == "GOOD"  # an omitted StatusCode means Good in OPC UA


def test_values_fit_the_frame_schema() -> None:
    plain = OpcUaTag(name="x", node_id="ns=2;i=1")
    scaled = OpcUaTag(name="x", node_id="ns=2;i=1", scale=0.1, offset=-5)
    assert avro_value(2**64 - 1, plain) == float(2**64 - 1)  # beyond Avro long
    assert avro_value(-7, plain) == -7 and avro_value(True, plain) is True and avro_value("s", plain) == "s"
    assert avro_value(100, scaled) == 5.0
    assert avro_value(b"\x01\xff", plain) == "01ff"
    assert avro_value(ua.LocalizedText("Running"), plain) == "Running"


def test_timestamps_are_utc_microseconds_with_or_without_tzinfo() -> None:
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    assert to_us(aware) == 1704164645678901
    assert to_us(aware.replace(tzinfo=None)) == 1704164645678901


def test_a_batch_becomes_one_frame_and_repeats_are_dropped() -> None:
    b = FrameBuilder(device(), "p")
    first = b.frame([Change(0, 1.0, 0, 100), Change(1, 2.0, 0, 100), Change(0, 1.5, 0, 200)], scan_time=300)
    assert first is not None and first["seq"] == 0
    assert [(s["tag"], s["source_time"], s["value"]) for s in first["samples"]] == [
        ("t0", 100, 1.0),
        ("t1", 100, 2.0),
        ("t0", 200, 1.5),
    ]
    # a republished (older or equal) sample is not sent again; a batch of only those makes no frame
    assert b.frame([Change(0, 1.5, 0, 200), Change(1, 2.0, 0, 50)], scan_time=400) is None
    later = b.frame([Change(1, 3.0, ua.StatusCodes.BadSensorFailure, 500)], scan_time=600)
    assert later is not None and later["seq"] == 1
    assert later["samples"] == [{"tag": "t1", "source_time": 500, "value": None, "quality": "BAD", "unit": "bar"}]


def test_a_gap_frame_marks_every_tag_bad_without_moving_the_duplicate_check() -> None:
    b = FrameBuilder(device(), "p")
    b.frame([Change(0, 1.0, 0, 100)], scan_time=100)
    gap = b.bad_frame(range(2), scan_time=1000)
    assert [(s["tag"], s["quality"], s["value"]) for s in gap["samples"]] == [("t0", "BAD", None), ("t1", "BAD", None)]
    # the value served before the outage is still a duplicate; the first new one is not
    assert b.frame([Change(0, 1.0, 0, 100)], scan_time=1100) is None
    resumed = b.frame([Change(0, 2.0, 0, 900)], scan_time=1100)
    assert resumed is not None and resumed["samples"][0]["value"] == 2.0


def test_a_missing_source_timestamp_falls_back_to_the_scan_time() -> None:
    b = FrameBuilder(device(1), "p")
    f = b.frame([Change(0, 1.0, 0, None)], scan_time=777)
    assert f is not None and f["samples"][0]["source_time"] == 777


def test_deadband_filters() -> None:
    assert data_change_filter(OpcUaTag(name="x", node_id="ns=2;i=1")) is None
    absolute = data_change_filter(OpcUaTag(name="x", node_id="ns=2;i=1", deadband_abs=0.5))
    assert absolute is not None and absolute.DeadbandType == ua.DeadbandType.Absolute and absolute.DeadbandValue == 0.5
    pct = data_change_filter(OpcUaTag(name="x", node_id="ns=2;i=1", deadband_pct=2))
    assert pct is not None and pct.DeadbandType == ua.DeadbandType.Percent and pct.DeadbandValue == 2.0


def test_browse_names_become_valid_tag_names() -> None:
    assert tag_name("Oil Temperature (°C)") == "Oil_Temperature___C_"
    OpcUaTag(name=tag_name(".hidden name"), node_id="ns=2;i=1")
