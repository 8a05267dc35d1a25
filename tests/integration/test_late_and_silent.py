"""Late data and silence over the real broker, with the real worker and storage sink (issue 17, items 3-5).

- A producer cut off from Kafka for several windows while the worker runs: the worker closes the
  silent assets' windows by its idle timer; then the producer's store-and-forward buffer arrives. Every
  stored KPI and OEE window (the newest revision) equals the computation from all the samples, some
  of them are corrections (revision > 0), and nothing went to the late topic.
- Silence is not running: the demo stopped, started again 100 minutes later (accelerated: the frames
  carry the times, the worker is stopped and started between). No OEE or KPI window is made for the
  gap, the windows at its edges say how much of them had data, and the asset was offline on
  plant.state.v1 with the reason; an asset that reports by exception within its heartbeat keeps its
  last state, and a down window with planned busy time reads OEE 0, not null.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import schemas
from plantstream.core import runstats, topics
from plantstream.core.config import Settings
from plantstream.core.records import reading_frame, sample
from plantstream.core.runstats import RunStats
from plantstream.simulators.modbus import PlantSimulator
from processors import oee
from producers.readers.modbus import run_modbus_producer
from producers.service import frame_publisher
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.faults.checker import compare_kpis, compare_oee, read_topic
from tests.faults.proxy import StallProxy
from tests.helpers import consume_all, decoder, prepare_topics, produce, spawn_cli, stop, wait_for
from tests.integration.plant_history import expected_kpi, expected_oee

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

US = 1_000_000
PRESS = "demo.springfield.stamping.line1.press1"
CNC = "demo.springfield.machining.line2.cnc1"
STALL_S = 12.0  # four 3-s windows


def rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    db = sqlite_path(settings)
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        try:
            out = [dict(r) for r in c.execute(f"SELECT * FROM {table}")]
        except sqlite3.OperationalError:
            return []
    for r in out:
        if "downtime_by_reason_s" in r and isinstance(r["downtime_by_reason_s"], str):
            r["downtime_by_reason_s"] = json.loads(r["downtime_by_reason_s"])
    return out


@pytest.mark.timeout(300)
async def test_a_producer_cut_off_from_kafka_then_back_with_its_buffer(stack: Stack, tmp_path: Path) -> None:
    if stack.proxy_port is None or stack.external_port is None:
        pytest.skip("needs the project's own broker with an external listener (not KAFKA_BOOTSTRAP or Docker)")
    device_port = free_port()
    raw = plant_raw(
        tmp_path,
        stack,
        metrics={"enabled": False},
        simulator={"update_interval_s": 0.1},
        windows={"kpi_window_s": 3, "grace_s": 1, "idle_after_s": 2},
        alerts=[],
    )
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == "modbus_tcp"]
    for d in raw["devices"]:
        d.update(port=device_port, poll_interval_s=0.5)
    direct = Settings(**raw)  # the worker, the sink and the checks: the broker's own port
    config = write_config(tmp_path, raw)
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{stack.proxy_port}"
    cut = Settings(**raw)  # the producer: through the proxy only
    prepare_topics(direct)
    proxy = await StallProxy("127.0.0.1", stack.external_port, listen_port=stack.proxy_port).start()
    sim = PlantSimulator(direct)
    await sim.start()
    stats = RunStats("producer-cut")
    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    sink = spawn_cli(config, "sink", "storage", log=tmp_path / "sink.log")
    publisher = None
    try:
        publisher = await asyncio.to_thread(frame_publisher, cut, "producer-cut", stats)
        halt = asyncio.Event()
        producer = asyncio.create_task(run_modbus_producer(cut, publisher.emit, halt, stats, "cut-producer"))
        await asyncio.to_thread(
            wait_for, lambda: len(rows(direct, "oee_windows")) >= 2, 90, 0.5, "the first OEE windows stored"
        )
        # cut 1 s into a 3-s window: the first frames held back fall in the window the idle timer closes
        # (the OEE's idle close stops at the end of the last event's window, so a cut in its last 0.5 s
        # would leave nothing to correct there)
        pos = (time.time_ns() // 1000) % (3 * US)
        await asyncio.sleep(((US - pos) % (3 * US)) / US)
        proxy.pause()  # the producer's link to Kafka: cut; it goes on reading into its buffer
        cut_from = time.time_ns() // 1000
        acked = stats.get("frames_acked")
        await asyncio.sleep(STALL_S)
        assert stats.get("frames_acked") == acked, "the producer must have been cut off"
        held = stats.get("buffer_frames")  # read from the devices meanwhile, waiting on disk for Kafka
        closed_in_silence = len(rows(direct, "kpi_windows"))
        proxy.resume()
        cut_to = time.time_ns() // 1000
        await asyncio.to_thread(
            wait_for, lambda: stats.get("buffer_frames") == 0, 90, 0.5, "the store-and-forward buffer delivered"
        )
        await asyncio.sleep(2)
        halt.set()
        await asyncio.wait_for(producer, 20)
        assert await asyncio.to_thread(publisher.close, 30) == 0
        publisher = None
        # everything from all the samples, the worker's idle timer closing the last windows as at the end
        readings = await asyncio.to_thread(read_topic, direct, topics.READINGS, schemas.READING_FRAME)
        frames = [r.value for r in readings if r.value is not None]
        want_kpi = {
            (r["asset"], r["tag"], r["window_start"], r["window_end"]): r
            for r in expected_kpi(direct, frames, flush=True)
        }
        want_oee = {
            (r["asset"], r["window_start"], r["window_end"]): r for r in expected_oee(direct, frames, flush=True)
        }

        def stored_all() -> bool:
            return (
                compare_kpis(want_kpi, rows(direct, "kpi_windows"), complete=True).ok
                and compare_oee(want_oee, rows(direct, "oee_windows"), complete=True).ok
            )

        try:
            await asyncio.to_thread(wait_for, stored_all, 90, 1.0, "every stored window equal to the computation")
        except AssertionError:
            k = compare_kpis(want_kpi, rows(direct, "kpi_windows"), complete=True)
            o = compare_oee(want_oee, rows(direct, "oee_windows"), complete=True)
            raise AssertionError(
                f"KPI: {len(k.missing)} missing, {len(k.mismatched)} differ {k.diffs[:2]}, {len(k.unexpected)} extra; "
                f"OEE: {len(o.missing)} missing, {len(o.mismatched)} differ {o.diffs[:2]}, {len(o.unexpected)} extra"
            ) from None
    finally:
        if publisher is not None:
            publisher.close(5)
        await proxy.close()
        await sim.close()
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert stop(sink) == 0, (tmp_path / "sink.log").read_text()[-3000:]
    assert closed_in_silence > 0, "the worker must have closed windows while the producer was cut off"
    assert held >= STALL_S / 0.5 * 3, "the frames of the cut must have waited in the store-and-forward buffer"
    kpi_rows, oee_rows = rows(direct, "kpi_windows"), rows(direct, "oee_windows")
    assert any(r["revision"] > 0 for r in kpi_rows) and any(r["revision"] > 0 for r in oee_rows), (
        f"no correction: processor counts {runstats.read_all(direct.pipeline.state_dir).get('processor', {})}; "
        f"worker log: {(tmp_path / 'worker.log').read_text(errors='replace')[-3000:]}"
    )
    # the windows of the cut: the buffer's frames filled them, no gap left
    during = [r for r in oee_rows if not r["shift"] and cut_from <= r["window_start"] and r["window_end"] <= cut_to]
    assert len(during) >= 3 * 3 and all(r["data_coverage"] == pytest.approx(1.0) for r in during), during
    counts = runstats.read_all(direct.pipeline.state_dir)["processor"]["counts"]
    assert counts.get("samples_late", 0) == 0 and counts["kpi_windows_corrected"] > 0
    assert consume_all(direct, direct.topic(topics.LATE), expect=1, timeout=2) == []


def frame(asset: str, t: int, seq: int, **values: Any) -> dict[str, Any]:
    return dict(
        reading_frame(
            asset=asset,
            device=asset.rsplit(".", 1)[-1],
            seq=seq,
            producer_id="restart",
            scan_time=t,
            samples=[sample(k, t, v) for k, v in values.items()],
        )
    )


def send(settings: Settings, frames: list[dict[str, Any]]) -> None:
    from plantstream.core import kafka_clients

    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in frames])


def asset_states(settings: Settings) -> list[dict[str, Any]]:
    dec = decoder(settings, schemas.ASSET_STATE)
    return [dec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.STATE), 10**6, timeout=1)]


def test_a_restart_100_minutes_later_leaves_a_gap_not_100_running_windows(stack: Stack, tmp_path: Path) -> None:
    raw = plant_raw(tmp_path, stack, metrics={"enabled": False}, windows={"kpi_window_s": 60, "grace_s": 5}, alerts=[])
    raw["plant"]["shifts"] = []  # planned 24/7: every minute has planned busy time
    cnc = next(a for a in raw["plant"]["assets"] if a["path"] == CNC)
    cnc["report_interval_s"] = 30  # report by exception: a frame at least every 30 s (heartbeat)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    now = int(time.time()) * US
    now -= now % (60 * US)
    before = now - 104 * 60 * US  # the demo ran 4 minutes, then stopped for 100 minutes
    frames: list[dict[str, Any]] = []
    for i in range(240):  # the press: running, a stroke every other second, polled every second
        frames.append(frame(PRESS, before + i * US, i, state=1, strokes_total=i // 2, oil_temperature=50.0))
    for i in range(8):  # the CNC reports by exception: its state and counters every 30 s, idle from 90 s
        made = min(i, 2)  # a part at 30 s and at 60 s
        frames.append(frame(CNC, before + i * 30 * US, i, state=1 if i < 3 else 2, parts_total=made, parts_good=made))
    frames.sort(key=lambda f: f["scan_time"])
    send(settings, frames)
    log = tmp_path / "worker.log"
    worker = spawn_cli(config, "process", log=log)
    try:
        last_report = before + 239 * US

        def offline() -> list[dict[str, Any]]:
            return [r for r in asset_states(settings) if r["asset"] == PRESS and r["last_report"] == last_report]

        wait_for(lambda: offline(), 60, 1.0, "the press on plant.state.v1 after its last frame (100 minutes old)")
        (stopped,) = offline()[-1:]
    finally:
        assert stop(worker) == 0, log.read_text()[-3000:]
    # 100 minutes later: everything starts again
    after = [
        frame(PRESS, now + i * US, 1000 + i, state=1, strokes_total=120 + i // 2, oil_temperature=50.0)
        for i in range(150)
    ]
    send(settings, after)
    worker = spawn_cli(config, "process", log=log)
    try:
        dec = decoder(settings, schemas.OEE_WINDOW)

        def oee_windows() -> list[dict[str, Any]]:
            return [dec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.OEE), 10**6, timeout=1)]

        wait_for(lambda: any(r["window_start"] >= now for r in oee_windows() if r["asset"] == PRESS), 90, 1.0,
                 "OEE windows after the restart")  # fmt: skip
        states = asset_states(settings)
        kdec = decoder(settings, schemas.KPI_WINDOW)
        kpis = [kdec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.KPI), 10**6, timeout=1)]
    finally:
        assert stop(worker) == 0, log.read_text()[-3000:]
    press = sorted((r for r in oee_windows() if r["asset"] == PRESS), key=lambda r: r["window_start"])
    starts = [(r["window_start"] - before) // (60 * US) for r in press]
    # minutes 0-4 before, 104-105 after (106 still open): nothing for the 100 minutes without data
    assert starts == [0, 1, 2, 3, 4, 104, 105], starts
    # the last report at 239 s: its state holds for the 10 s of allowed silence, into minute 4, then no data
    assert press[3]["actual_production_time_s"] == pytest.approx(60.0) and press[3]["data_coverage"] == 1.0
    assert press[4]["actual_production_time_s"] == pytest.approx(9.0)
    assert press[4]["data_coverage"] == pytest.approx(9 / 60)
    assert press[5]["data_coverage"] == 1.0 and all(r["availability"] == 1.0 for r in press)
    # nor a KPI window: the oil temperature's windows are the minutes with samples, each fully covered
    oil = sorted((r for r in kpis if r["asset"] == PRESS and r["tag"] == "oil_temperature"),
                 key=lambda r: r["window_start"])  # fmt: skip
    assert [(r["window_start"] - before) // (60 * US) for r in oil] == [0, 1, 2, 3, 104, 105]
    assert all(r["data_coverage"] == 1.0 for r in oil), [r["data_coverage"] for r in oil]
    # while plantstream was off, the state topic said so: offline, silence, since the allowed 10 s ran out
    assert (stopped["online"], stopped["offline_reason"]) == (False, "silence")
    assert stopped["offline_since"] == last_report + 10 * US
    assert any(r["asset"] == PRESS and r["online"] for r in states), "online again after the restart"
    # the CNC reports every 30 s (its heartbeat): the last state holds between reports, and once idle it
    # is a down window with planned busy time: OEE 0, not null
    cnc_rows = sorted((r for r in oee_windows() if r["asset"] == CNC), key=lambda r: r["window_start"])
    first, down = cnc_rows[0], cnc_rows[2]
    assert first["data_coverage"] == 1.0 and first["actual_production_time_s"] == pytest.approx(60.0)
    assert down["actual_production_time_s"] == 0 and down["planned_busy_time_s"] == pytest.approx(60.0)
    assert down["oee"] == 0 and down["effectiveness"] is None and down["quality_ratio"] is None
    # OEE over the span from the summed times and counts, never averaged
    both = oee.combine(cnc_rows[:3], settings.asset(CNC).ideal_cycle_time_s)
    assert both["oee"] == pytest.approx(45.0 * 2 / 180)
