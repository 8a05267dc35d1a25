"""Replaying the readings topic from the beginning into a fresh consumer group yields the same KPI and OEE
records as the live run (issue 4, "Must show").

Live: a worker runs while the history is produced in chunks (it has processed the first chunk before the
rest is written). Replay: after the live worker stopped, a worker of another consumer group (so another
Faust app id: fresh offsets, fresh changelog topics, its own state folder) reads the same readings topic
from offset 0. Both write to the same output topics, one after the other, so the replay's records are
exactly those past the end offsets taken when the live worker had stopped.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import schemas
from plantstream.core import topics
from tests.conftest import Stack, plant_raw
from tests.helpers import decoder, prepare_topics, stop, wait_for
from tests.integration.plant_history import (
    canonical,
    end_offsets,
    expected_kpi,
    expected_oee,
    frames_in,
    history,
    natural_kpi,
    natural_oee,
    produce_frames,
    read_from,
    spawn_worker,
    worker_config,
)

pytestmark = pytest.mark.integration

T0 = 1_767_261_570_000_000  # 2026-01-01T09:59:30Z: the early shift, its 10:00 break starts 30 s in
FRAMES_PER_ASSET = 90  # 1 s apart: 18 windows of 5 s, a machine-state cycle and a half
ASSETS = (
    "demo.springfield.stamping.line1.press1",  # OEE: state + total counter (rolls over)
    "demo.springfield.machining.line2.cnc1",  # OEE: state + total and good counters
    "demo.springfield.utilities.water.pump1",  # no machine_state: KPIs only
    "demo.springfield.packaging.line3.packer1",  # OEE: good and scrap counters, 10 s micro-stop threshold
    "demo.springfield.packaging.line4.filler1",  # no device in this config: generic process values
)


def test_replay_into_fresh_group_equals_live_run(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(
        tmp_path,
        stack,
        windows={"kpi_window_s": 5, "grace_s": 1, "idle_after_s": 5},
        metrics={"enabled": False},
    )
    live_settings, live_config = worker_config(tmp_path, raw, "live")
    prepare_topics(live_settings)
    frames = history(live_settings, ASSETS, FRAMES_PER_ASSET, T0)
    want_kpi = expected_kpi(live_settings, frames, flush=True)  # the idle fallback closes the last windows
    want_oee = expected_oee(live_settings, frames, flush=True)
    kpi_topic, oee_topic = live_settings.topic(topics.KPI), live_settings.topic(topics.OEE)
    kpi_dec, oee_dec = decoder(live_settings, schemas.KPI_WINDOW), decoder(live_settings, schemas.OEE_WINDOW)

    started = time.monotonic()
    worker = spawn_worker(tmp_path, live_config, "live")
    try:
        first = len(ASSETS) * 30
        produce_frames(live_settings, frames[:first])
        # live, not a backlog: the worker has the first chunk before the rest exists (quickly, so that
        # no asset looks idle to the wall-clock fallback in between)
        wait_for(lambda: frames_in(live_settings) >= first, 60, interval=0.1, what="the first chunk processed")
        produce_frames(live_settings, frames[first : 2 * first])
        time.sleep(0.3)
        produce_frames(live_settings, frames[2 * first :])
        live_kpi = read_from(live_settings, kpi_topic, None, len(want_kpi), timeout=60)
        live_oee = read_from(live_settings, oee_topic, None, len(want_oee), timeout=60)
    finally:
        assert stop(worker) == 0, (tmp_path / "live" / "worker.log").read_text()[-3000:]
    live_s = time.monotonic() - started

    # everything from here on in the output topics is the replay's
    kpi_mark, oee_mark = end_offsets(live_settings, kpi_topic), end_offsets(live_settings, oee_topic)
    raw["pipeline"]["group_id"] = f"ps-replay-{uuid.uuid4().hex[:8]}"
    replay_settings, replay_config = worker_config(tmp_path, raw, "replay")
    started = time.monotonic()
    worker = spawn_worker(tmp_path, replay_config, "replay")
    try:
        replay_kpi = read_from(replay_settings, kpi_topic, kpi_mark, len(want_kpi), timeout=60)
        replay_oee = read_from(replay_settings, oee_topic, oee_mark, len(want_oee), timeout=60)
        assert frames_in(replay_settings) == len(frames), "the replay worker did not read the whole topic"
    finally:
        assert stop(worker) == 0, (tmp_path / "replay" / "worker.log").read_text()[-3000:]
    replay_s = time.monotonic() - started

    live_k = canonical([kpi_dec.decode(m.value()) for m in live_kpi], natural_kpi)
    replay_k = canonical([kpi_dec.decode(m.value()) for m in replay_kpi], natural_kpi)
    live_o = canonical([oee_dec.decode(m.value()) for m in live_oee], natural_oee)
    replay_o = canonical([oee_dec.decode(m.value()) for m in replay_oee], natural_oee)
    print(
        f"replay-equality: frames={len(frames)} kpi live={len(live_k)} replay={len(replay_k)} "
        f"oee live={len(live_o)} replay={len(replay_o)} live_run={live_s:.1f}s replay_run={replay_s:.1f}s"
    )
    oee_assets = {r["asset"] for r in want_oee}
    assert len(oee_assets) == 3 and len(want_oee) >= 3 * 15, "the history must give OEE windows of three assets"
    assert any(r["failures"] for r in want_oee) and any(r["downtime_by_reason_s"] for r in want_oee)
    assert len({natural_kpi(r) for r in want_kpi}) == len(want_kpi) > 0

    # the live run itself is right: every window once, values as the pure window/OEE code computes them
    assert live_k == canonical(want_kpi, natural_kpi)
    assert live_o == canonical(want_oee, natural_oee)
    # and the replay gives the very same records, field by field
    assert replay_k == live_k
    assert replay_o == live_o
