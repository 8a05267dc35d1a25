"""The Faust worker over the real broker and registry: event-time KPI windows and dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from processors import event_windows
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs: replayed history, far behind wall clock
WINDOW_S = 5
ASSETS = ("demo.springfield.stamping.line1.press1", "demo.springfield.machining.line2.cnc1")


def make_frames(n: int) -> list[dict]:
    frames = []
    for i in range(n):
        for a, asset in enumerate(ASSETS):
            t = T0 + i * 1_000_000
            frames.append(
                {
                    "asset": asset,
                    "device": f"dev{a}",
                    "seq": i,
                    "producer_id": "test",
                    "scan_time": t,
                    "historical": True,
                    "buffered": False,
                    "samples": [
                        {
                            "tag": "temp",
                            "source_time": t,
                            "value": 20.0 + (i % 7) + a,
                            "quality": "GOOD",
                            "unit": "degC",
                        },
                        {"tag": "count", "source_time": t, "value": i * 3, "quality": "GOOD", "unit": ""},
                        {"tag": "flag", "source_time": t, "value": None, "quality": "BAD", "unit": ""},
                    ],
                }
            )
    return frames


def expected_windows(frames: list[dict]) -> dict[tuple, dict]:
    states: dict[str, dict] = {}
    out = {}
    for f in frames:
        st = states.setdefault(f["asset"], event_windows.new_state())
        for rec in event_windows.apply_frame(st, f, WINDOW_S * 1_000_000, 0):
            out[(rec["asset"], rec["tag"], rec["window_start"])] = rec
    return out


def test_kpi_windows_and_dead_letters(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": WINDOW_S, "grace_s": 0})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    frames = make_frames(23)
    half = len(frames) // 2
    items: list[tuple[bytes | None, bytes]] = [(f["asset"].encode(), codec.encode(f)) for f in frames[:half]]
    # poison: garbage, a truncated body, and a frame whose key is not its asset
    items.append((ASSETS[0].encode(), b"\x00\x00\x00\x00\x01garbage-that-is-not-avro"))
    items.append((ASSETS[0].encode(), codec.encode(frames[0])[:9]))
    items.append((b"wrong.key.for.this.frame.x", codec.encode(frames[0])))
    items += [(f["asset"].encode(), codec.encode(f)) for f in frames[half:]]
    produce(settings, settings.topic(topics.READINGS), items)

    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        expect = expected_windows(frames)
        kpi_msgs = consume_all(settings, settings.topic(topics.KPI), len(expect), timeout=90)
        dead = consume_all(settings, settings.topic(topics.DEADLETTER), 3, timeout=30)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    dec = decoder(settings, schemas.KPI_WINDOW)
    got = {}
    for m in kpi_msgs:
        rec = dec.decode(m.value())
        assert m.key().decode() == rec["asset"]
        key = (rec["asset"], rec["tag"], rec["window_start"])
        assert key not in got, f"window emitted twice: {key}"
        got[key] = rec
    # windows that closed: every window except each asset's last, still open (watermark = newest time)
    assert set(got) == set(expect)
    assert len(got) == len(ASSETS) * 3 * 4  # 23 s of data: 4 closed 5-s windows x 3 tags x 2 assets
    for key, rec in expect.items():
        assert got[key] == pytest.approx(rec), key
    temp = got[(ASSETS[0], "temp", T0)]
    assert temp["count"] == 5 and temp["min"] == 20.0 and temp["max"] == 24.0
    flag = got[(ASSETS[0], "flag", T0)]
    assert flag["count"] == 0 and flag["bad_count"] == 5 and flag["mean"] is None

    assert len(dead) == 3
    reasons = []
    for m in dead:
        headers = dict(m.headers())
        assert headers["ps-source-topic"].decode() == settings.topic(topics.READINGS)
        assert int(headers["ps-source-offset"]) >= 0
        reasons.append(headers["ps-error"].decode())
    assert any("does not match schema" in r for r in reasons)
    assert any("key" in r and "asset" in r for r in reasons)
