"""Soak (opt-in: PLANTSTREAM_SOAK=1): repeated two-worker SIGKILL takeovers, with figures.

Each takeover is the scenario of test_two_workers.py: two workers split the readings partitions and
process phase 1; once it is committed, worker A is killed with SIGKILL and phase 2 is produced at once;
B takes A's partitions after the session timeout, recovers A's tables from the changelog and goes on.
Per takeover, against a recomputation of the whole history: KPI and OEE windows lost (none allowed), and
copies that differ from the recomputation (none allowed; identical repeats are at-least-once and counted).
A takeover is *stuck* when B does not produce every window in time or its watchdog ends it. Timings:
kill -> B holds every partition, and kill -> the first KPI window B emits for a moved asset.

PLANTSTREAM_TAKEOVERS (default 40) sets the count; PLANTSTREAM_SOAK_RESULTS=file writes the figures (JSON).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.consumer_lag import committed_lag
from tests.conftest import Stack
from tests.helpers import decoder, prepare_topics, stop, wait_for
from tests.integration.plant_history import (
    expected_kpi,
    expected_oee,
    frames_in,
    group_assignment,
    history,
    natural_kpi,
    natural_oee,
    partition_of,
    produce_frames,
    read_from,
    spawn_worker,
    worker_config,
)
from tests.integration.test_two_workers import PERIOD_US, PHASE1, PHASE2, SOAK, T0, _plant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SOAK, reason="about a minute per takeover; PLANTSTREAM_SOAK=1"),
    pytest.mark.timeout(0),
]

TAKEOVERS = int(os.environ.get("PLANTSTREAM_TAKEOVERS", "40"))
STALL_EXIT_S = 30.0  # the survivor's watchdog: a stuck recovery ends it well within the run's deadline


def takeover(stack: Stack, tmp_path: Path) -> dict[str, Any]:
    raw, assets = _plant(tmp_path, stack)
    raw["pipeline"]["worker"] = {"stall_exit_s": STALL_EXIT_S}
    sa, config_a = worker_config(tmp_path, raw, "a")
    sb, config_b = worker_config(tmp_path, raw, "b")
    prepare_topics(sa)
    n = sa.pipeline.kafka.partitions
    frames = history(sa, assets, PHASE1 + PHASE2, T0, PERIOD_US)
    phase1, phase2 = frames[: PHASE1 * len(assets)], frames[PHASE1 * len(assets) :]
    want_kpi = {natural_kpi(r): r for r in expected_kpi(sa, frames, flush=False)}
    want_oee = {natural_oee(r): r for r in expected_oee(sa, frames)}
    a = spawn_worker(tmp_path, config_a, "a")
    b = spawn_worker(tmp_path, config_b, "b")
    out: dict[str, Any] = {}
    try:
        wait_for(lambda: len(h := group_assignment(sa)) == 2 and all(h.values()), 60, 0.5, what="the split")
        produce_frames(sa, phase1)
        wait_for(lambda: frames_in(sa) + frames_in(sb) >= len(phase1), 60, 0.3, what="phase 1 processed")
        before = group_assignment(sa)
        group = f"{sa.pipeline.group_id}-processor"
        wait_for(lambda: committed_lag(sa, group, topics.READINGS) == 0, 30, 0.3, what="phase 1 committed")
        killed_at = time.time()
        a.send_signal(signal.SIGKILL)
        a.wait(30)
        produce_frames(sa, phase2)
        try:
            wait_for(
                lambda: len(h := group_assignment(sa)) == 1 and set().union(*h.values()) == set(range(n)),
                40,
                0.2,
                what="the survivor holding every partition",
            )
            out["kill_to_all_partitions_s"] = round(time.time() - killed_at, 2)
        except AssertionError:
            out["kill_to_all_partitions_s"] = None
        after = group_assignment(sa)
        kpi_msgs = read_from(sa, sa.topic(topics.KPI), None, len(want_kpi), timeout=90, settle=1.0, distinct=True)
        oee_msgs = read_from(sa, sa.topic(topics.OEE), None, len(want_oee), timeout=10, settle=0.5, distinct=True)
    finally:
        for w in (a, b):
            stop(w)
    gone = set(before) - set(after) if len(after) == 1 else set()  # the killed worker's member id
    moved = {x for x in assets for m in gone if partition_of(x, n) in before[m]}
    kpi_dec, oee_dec = decoder(sa, schemas.KPI_WINDOW), decoder(sa, schemas.OEE_WINDOW)
    got_kpi = [(m.timestamp()[1], kpi_dec.decode(m.value())) for m in kpi_msgs]
    got_oee = [oee_dec.decode(m.value()) for m in oee_msgs]
    lost = (set(want_kpi) - {natural_kpi(r) for _, r in got_kpi}) | (set(want_oee) - {natural_oee(r) for r in got_oee})
    differing = [r for _, r in got_kpi if want_kpi.get(natural_kpi(r)) != r]
    differing += [r for r in got_oee if want_oee.get(natural_oee(r)) != r]
    copies = Counter(natural_kpi(r) for _, r in got_kpi)
    survivor_first = [ts for ts, r in got_kpi if r["asset"] in moved and ts >= killed_at * 1000]
    log_b = (tmp_path / "b" / "worker.log").read_text(errors="replace")
    out.update(
        moved_assets=len(moved),
        kpi_windows=len(want_kpi),
        oee_windows=len(want_oee),
        lost_windows=len(lost),
        differing_copies=len(differing),
        repeated_copies=sum(copies.values()) - len(copies),
        kill_to_first_window_s=round(min(survivor_first) / 1000 - killed_at, 2) if survivor_first else None,
        survivor_exit=b.returncode,
        survivor_watchdog_exit=b.returncode == 3,
        changelog_rewinds=log_b.count("fetching them again"),
        stuck=bool(lost) or b.returncode == 3 or (bool(moved) and not survivor_first),
    )
    return out


def test_takeover_soak(stack: Stack, tmp_path: Path) -> None:
    runs = []
    started = time.monotonic()
    for i in range(TAKEOVERS):
        run_dir = tmp_path / f"run{i:02d}"
        run_dir.mkdir()
        r = takeover(stack, run_dir)
        runs.append(r)
        print(f"takeover {i + 1}/{TAKEOVERS}: {json.dumps(r)}", flush=True)
    firsts = [r["kill_to_first_window_s"] for r in runs if r["kill_to_first_window_s"] is not None]
    summary = {
        "bench": "takeover-soak",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenario": "two workers, 3 readings partitions; SIGKILL of one once phase 1 is committed; "
        "phase 2 produced at once; broker session timeout 10 s",
        "takeovers": len(runs),
        "stuck": sum(r["stuck"] for r in runs),
        "watchdog_exits": sum(r["survivor_watchdog_exit"] for r in runs),
        "lost_windows": sum(r["lost_windows"] for r in runs),
        "differing_copies": sum(r["differing_copies"] for r in runs),
        "repeated_identical_copies": sum(r["repeated_copies"] for r in runs),
        "changelog_rewinds": sum(r["changelog_rewinds"] for r in runs),
        "kill_to_first_window_s": {
            "median": statistics.median(firsts) if firsts else None,
            "max": max(firsts) if firsts else None,
        },
        "kill_to_all_partitions_s_median": statistics.median(
            [r["kill_to_all_partitions_s"] for r in runs if r["kill_to_all_partitions_s"] is not None] or [0]
        ),
        "duration_s": round(time.monotonic() - started),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if path := os.environ.get("PLANTSTREAM_SOAK_RESULTS"):
        Path(path).write_text(json.dumps(summary, indent=1) + "\n")
    assert summary["stuck"] == 0, [r for r in runs if r["stuck"]]
    assert summary["lost_windows"] == 0 and summary["differing_copies"] == 0
