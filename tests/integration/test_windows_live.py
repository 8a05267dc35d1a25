"""The worker's event-time windows over the real broker: hopping windows, the idle fallback that closes
the windows of a silent asset, and late samples routed to plant.readings.late.v1."""

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

S = 1_000_000
T0 = 1_767_225_600 * S
ASSET = "demo.springfield.stamping.line1.press1"
SIZE_S, HOP_S, GRACE_S = 10, 5, 1


def frame(t: int, value: float) -> dict:
    return {
        "asset": ASSET,
        "device": "d",
        "seq": 0,
        "producer_id": "test",
        "scan_time": t,
        "historical": True,
        "buffered": False,
        "samples": [{"tag": "temp", "source_time": t, "value": value, "quality": "GOOD", "unit": "degC"}],
    }


def test_hopping_windows_idle_close_and_late_samples(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(
        tmp_path,
        stack,
        windows={"kpi_window_s": SIZE_S, "hop_s": HOP_S, "grace_s": GRACE_S, "idle_after_s": 2},
    )
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    frames = [frame(T0 + i * S, 20.0 + i % 7) for i in range(30)]
    # what the windows must be: every frame in order, then the silence closes the rest
    st = event_windows.new_state()
    expected = [r for f in frames for r in event_windows.apply_frame(st, f, SIZE_S * S, GRACE_S * S, HOP_S * S)]
    on_frames = len(expected)
    expected += event_windows.advance_idle(st, ASSET, SIZE_S * S, GRACE_S * S, 10**12, HOP_S * S)
    assert len(expected) > on_frames, "the last windows close only by the idle fallback"
    produce(settings, settings.topic(topics.READINGS), [(ASSET.encode(), codec.encode(f)) for f in frames])

    log = tmp_path / "worker.log"
    worker = spawn_cli(config, "process", log=log)
    try:
        kpi = consume_all(settings, settings.topic(topics.KPI), len(expected), timeout=60)
        # a straggler from inside the first, long-closed window
        produce(settings, settings.topic(topics.READINGS), [(ASSET.encode(), codec.encode(frame(T0 + 2 * S, 99.0)))])
        late = consume_all(settings, settings.topic(topics.LATE), 1, timeout=30)
    finally:
        assert stop(worker) == 0, log.read_text()[-3000:]

    dec = decoder(settings, schemas.KPI_WINDOW)
    got = [dec.decode(m.value()) for m in kpi]
    starts = [r["window_start"] for r in got]
    assert starts == sorted(set(starts)), "each window exactly once"
    assert [(r["window_start"], r["window_end"]) for r in got] == [
        (r["window_start"], r["window_end"]) for r in expected
    ]
    assert starts[1] - starts[0] == HOP_S * S and got[0]["window_end"] - got[0]["window_start"] == SIZE_S * S
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e)

    late_frame = decoder(settings, schemas.READING_FRAME).decode(late[0].value())
    assert late[0].key().decode() == ASSET
    assert [(s["source_time"], s["value"]) for s in late_frame["samples"]] == [(T0 + 2 * S, 99.0)]
