"""Fault: the worker is killed with SIGKILL mid-stream and restarted. Its KPI output, once the sink's
natural-key dedup is applied, must equal an uninterrupted computation: no window lost, none counted
twice, every value identical."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import schemas
from plantstream import runstats, topics
from plantstream.config import Settings
from processors import event_windows
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_until, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000
ASSETS = [f"demo.springfield.area{a}.line1.m{a}" for a in range(4)]
FRAMES_PER_ASSET = 1500  # 0.5 s apart: 750 s of history per asset
WINDOW_S = 10


def history() -> list[dict]:
    out = []
    for i in range(FRAMES_PER_ASSET):
        for a, asset in enumerate(ASSETS):
            t = T0 + i * 500_000
            out.append(
                {
                    "asset": asset,
                    "device": f"d{a}",
                    "seq": i,
                    "producer_id": "fault",
                    "scan_time": t,
                    "historical": True,
                    "buffered": False,
                    "samples": [
                        {
                            "tag": f"t{k}",
                            "source_time": t,
                            "value": float((i * (k + 1) + a) % 101),
                            "quality": "GOOD",
                            "unit": "",
                        }
                        for k in range(10)
                    ],
                }
            )
    return out


def test_worker_sigkill_and_restart_equals_uninterrupted_run(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": WINDOW_S, "grace_s": 0, "idle_after_s": 3600})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    frames = history()
    expected: dict[tuple, dict] = {}
    states: dict[str, dict] = {}
    for f in frames:
        st = states.setdefault(f["asset"], event_windows.new_state())
        for rec in event_windows.apply_frame(st, f, WINDOW_S * 1_000_000, 0):
            expected[(rec["asset"], rec["tag"], rec["window_start"])] = rec
    codec = frame_codec(settings)
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in frames])

    def processed() -> int:
        snap = runstats.read_all(settings.pipeline.state_dir).get("processor", {})
        return int(snap.get("counts", {}).get("frames_in", 0))

    log = tmp_path / "worker.log"
    worker = spawn_cli(config, "process", log=log)
    kills = 0
    try:
        wait_for(lambda: processed() >= len(frames) // 3, 120, what="a third of the frames processed")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        time.sleep(1)
        worker = spawn_cli(config, "process", log=log)
        dec = decoder(settings, schemas.KPI_WINDOW)
        seen: set[tuple] = set()

        def all_windows(msgs: list) -> bool:
            # a restart repeats the windows since the last commit: count distinct windows, not messages
            for m in msgs[len(seen_upto) :]:
                r = dec.decode(m.value())
                seen.add((r["asset"], r["tag"], r["window_start"]))
            seen_upto[:] = msgs
            return seen >= set(expected)

        seen_upto: list = []
        kpi_msgs = consume_until(settings, settings.topic(topics.KPI), all_windows, timeout=180)
    finally:
        assert stop(worker) == 0, log.read_text()[-3000:]

    got = [dec.decode(m.value()) for m in kpi_msgs]
    keys = Counter((r["asset"], r["tag"], r["window_start"]) for r in got)
    deduped = {(r["asset"], r["tag"], r["window_start"]): r for r in got}
    missing = set(expected) - set(deduped)
    duplicated = sum(n - 1 for n in keys.values())
    print(
        f"fault worker-sigkill: kills={kills} expected_windows={len(expected)} emitted={len(got)} "
        f"missing={len(missing)} duplicated={duplicated}"
    )
    extra = sorted(set(deduped) - set(expected))
    differ = [k for k in expected if k in deduped and deduped[k] != pytest.approx(expected[k])]
    assert not missing and not extra and not differ, (
        f"{len(missing)} windows lost, e.g. {sorted(missing)[:3]}; {len(extra)} unexpected, e.g. "
        f"{[deduped[k] for k in extra[:2]]}; {len(differ)} with other values, e.g. "
        f"{[(deduped[k], expected[k]) for k in differ[:2]]}"
    )
    assert set(deduped) == set(expected)
    for key, rec in expected.items():
        assert deduped[key] == pytest.approx(rec), key  # nothing counted twice: identical statistics
