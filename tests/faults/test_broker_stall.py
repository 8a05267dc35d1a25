"""Fault: the network between the Kafka clients and the broker stalls, then recovers.

Every Kafka client of the pipeline - the Modbus producer, the Faust worker and the storage sink -
reaches the broker only through a loopback proxy (the session broker's external listener advertises
the proxy's port, so metadata keeps them there). The proxy then stops forwarding without closing
anything for longer than the consumers' session timeout (10 s, heartbeats every 2 s), so the broker
evicts the worker and the sink from their groups while the producer's requests hang unanswered;
the producer keeps reading the devices into its store-and-forward buffer. After the stall the
clients must notice by themselves, rejoin and catch up. The checker then shows: every frame Kafka
acknowledged stored once, no sequence gap, KPI windows equal a recomputation from the readings
topic, alert state changes stored once. The test also proves the stall happened (acks stopped, a
backlog built up, the proxy held bytes), so it fails if the proxy were not in the path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from plantstream.core.consumer_lag import committed_lag
from plantstream.core.runstats import RunStats
from plantstream.simulators.modbus import PlantSimulator
from producers.readers.modbus import run_modbus_producer
from producers.service import frame_publisher
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.faults.checker import SOAK, TopicRecord, check_run, compare_kpis, read_topic, recompute_kpis
from tests.faults.live import count, storage_sink_thread
from tests.faults.proxy import StallProxy
from tests.helpers import prepare_topics, spawn_cli, stop

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

# the consumers' session timeout is 10 s (plantstream/core/kafka_clients.py, processors/app.py): a stall of
# 11 s outlasts it even when the last heartbeat got through 2 s before the pause. The soak's 35 s also
# outlasts librdkafka's produce request.timeout.ms (30 s), so in-flight produce requests time out and are
# retried by the idempotent producer.
STALLS = 3 if SOAK else 1
STALL_S = 35.0 if SOAK else 11.0
AFTER_S = 3.0  # producing after each stall, through the recovered link
# limits that the simulated values cross often (noise around a swinging process value): alerts to check
RULES = [
    {
        "name": "press-pressure",
        "asset": "demo.springfield.stamping.line1.press1",
        "kind": "threshold",
        "tag": "hydraulic_pressure",
        "above": 150.0,
        "severity": "WARNING",
    },
    {
        "name": "press-current",
        "asset": "demo.springfield.stamping.line1.press1",
        "kind": "threshold",
        "tag": "motor_current",
        "above": 30.0,
        "severity": "WARNING",
    },
    {
        "name": "pump-flow",
        "asset": "demo.springfield.utilities.water.pump1",
        "kind": "threshold",
        "tag": "flow",
        "above": 108.0,
        "severity": "INFO",
    },
]


def stored_alert_changes(db: Path) -> set[tuple[str, str]]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as c:
        try:
            return {(a, s) for a, s in c.execute("SELECT DISTINCT alert_id, state FROM alerts")}
        except sqlite3.OperationalError:  # tables not created yet
            return set()


def error_lines(log: Path) -> list[str]:
    return [line[-300:] for line in log.read_text(errors="replace").splitlines() if "[ERROR]" in line][-8:]


def alert_records(settings: Settings) -> list[TopicRecord]:
    return read_topic(settings, topics.ALERTS, schemas.ALERT)


async def until(cond: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@pytest.mark.timeout(120 + STALLS * (STALL_S + 60))
async def test_broker_link_stall_loses_and_duplicates_nothing(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if stack.proxy_port is None or stack.external_port is None:
        pytest.skip("needs the project's own broker with an external listener (not KAFKA_BOOTSTRAP or Docker)")
    caplog.set_level(logging.INFO, logger="plantstream.producers")
    started = time.monotonic()
    device_port = free_port()
    raw = plant_raw(
        tmp_path,
        stack,
        metrics={"enabled": False},
        simulator={"update_interval_s": 0.1},
        windows={"kpi_window_s": 2, "grace_s": 0.5, "idle_close": False},
        alerts=RULES,
    )
    raw["devices"] = [d for d in raw["devices"] if d["protocol"] == "modbus_tcp"]
    for d in raw["devices"]:
        d.update(port=device_port, poll_interval_s=0.2)
    direct = Settings(**raw)  # the checker's and the topic set-up's view: the broker's own port
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{stack.proxy_port}"
    settings = Settings(**raw)  # every pipeline client: through the proxy only
    config = write_config(tmp_path, raw)
    db = sqlite_path(settings)
    prepare_topics(direct)

    proxy = await StallProxy("127.0.0.1", stack.external_port, listen_port=stack.proxy_port).start()
    sim = PlantSimulator(settings)
    await sim.start()
    stats = RunStats("producer-stall")
    frames: list[dict[str, Any]] = []
    samples: list[tuple[float, int, int]] = []  # (monotonic time, frames acked, frames waiting in the buffer)
    stalls: list[tuple[float, float]] = []  # monotonic
    stalls_us: list[tuple[int, int]] = []  # wall clock, the frames' scan_time base
    worker_log = tmp_path / "worker.log"
    worker = spawn_cli(config, "process", log=worker_log)
    sink = None
    try:
        sink = await asyncio.to_thread(frame_publisher, settings, "producer-stall", stats)

        def emit(frame: dict[str, Any]) -> None:
            frames.append(frame)
            sink.emit(frame)

        async def watch() -> None:
            while True:
                samples.append((time.monotonic(), stats.get("frames_acked"), stats.get("buffer_frames")))
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        stop_producer = asyncio.Event()
        producer = asyncio.create_task(run_modbus_producer(settings, emit, stop_producer, stats, "stall-producer"))
        try:
            with storage_sink_thread(settings):
                # the whole pipeline flows through the proxy: KPI windows from the worker are in the store
                def flowing() -> bool:
                    if worker.poll() is not None:
                        raise AssertionError(f"the worker exited: {worker_log.read_text()[-2000:]}")
                    return count(settings, "SELECT COUNT(*) FROM kpi_windows") > 0

                try:
                    await until(flowing, 60, "the first KPI windows through the proxy")
                except AssertionError as e:
                    raise AssertionError(f"{e}; worker errors: {error_lines(worker_log)}") from None
                for n in range(STALLS):
                    proxy.pause()
                    t0, t0_us = time.monotonic(), time.time_ns() // 1000
                    await asyncio.sleep(STALL_S)
                    proxy.resume()
                    stalls.append((t0, time.monotonic()))
                    stalls_us.append((t0_us, time.time_ns() // 1000))
                    resumed_at = len(frames)
                    await until(
                        lambda r=resumed_at: stats.get("frames_acked") >= r, 60, f"recovery after stall {n + 1}"
                    )
                    await asyncio.sleep(AFTER_S)
                stop_producer.set()
                await asyncio.wait_for(producer, 10)
                await asyncio.to_thread(sink.close, 30)
                assert stats.get("frames_acked") == len(frames), (
                    f"{len(frames) - stats.get('frames_acked')} frame(s) not acknowledged after the stall"
                )
                readings = await asyncio.to_thread(read_topic, direct, topics.READINGS, schemas.READING_FRAME)
                expected = recompute_kpis(direct, readings)

                def caught_up() -> bool:
                    stored = count(settings, "SELECT COUNT(*) FROM frames") >= len(frames)
                    return stored and count(settings, "SELECT COUNT(*) FROM kpi_windows") >= len(expected)

                try:
                    await until(caught_up, 60, "the worker and the sink to catch up after the stall")
                except AssertionError as e:
                    raise AssertionError(
                        f"{e}: {count(settings, 'SELECT COUNT(*) FROM kpi_windows')} of {len(expected)} KPI windows "
                        f"stored; worker errors: {error_lines(worker_log)}"
                    ) from None
                assert await asyncio.to_thread(stop, worker) == 0, worker_log.read_text()[-3000:]

                def alerts_stored() -> bool:
                    changes = {(r.value["alert_id"], r.value["state"]) for r in alert_records(direct) if r.value}
                    return changes <= stored_alert_changes(db)

                await until(alerts_stored, 30, "the sink to store every alert state change", interval=0.5)
                closing = time.monotonic()
            sink_stop_s = time.monotonic() - closing  # the sink's close (leaving its group) after the stall
        finally:
            stop_producer.set()
            watcher.cancel()
            if not producer.done():
                producer.cancel()
    finally:
        if sink is not None:
            await asyncio.to_thread(sink.close, 5)  # a no-op when already closed
        if worker.poll() is None:
            stop(worker)
        await proxy.close()
        await sim.close()

    # the stall bit: no acknowledgement came through while paused, and frames piled up in the buffer
    def during(t0: float, t1: float) -> list[tuple[float, int, int]]:
        return [s for s in samples if t0 + 1.0 <= s[0] <= t1]  # 1 s for acks already on their way

    in_stalls = [during(t0, t1) for t0, t1 in stalls]
    acks_in_stall = sum(max(s[1] for s in d) - min(s[1] for s in d) for d in in_stalls if d)
    backlog = max((s[2] for d in in_stalls for s in d), default=0)
    with sqlite3.connect(db) as c:
        per_device = c.execute("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM frames GROUP BY device").fetchall()
        # windows of readings taken while the link was stalled: they went through the buffer, late
        kpi_in_stall = sum(
            c.execute(
                "SELECT COUNT(*) FROM kpi_windows WHERE window_start >= ? AND window_end <= ?", (t0, t1)
            ).fetchone()[0]
            for t0, t1 in stalls_us
        )
    # every KPI record the worker emitted, repeats included, against the recomputation: a rejoin after the
    # stall may repeat windows since the last commit (absorbed by the store), never change one
    emitted = [r.value for r in read_topic(direct, topics.KPI, schemas.KPI_WINDOW) if r.value]
    out = compare_kpis(expected, emitted, complete=True)
    # both consumer groups recovered their membership and committed up to the end after the stall
    sink_lag = committed_lag(direct, f"{direct.pipeline.group_id}-sink-storage", topics.READINGS)
    worker_lag = committed_lag(direct, f"{direct.pipeline.group_id}-processor", topics.READINGS)
    report = check_run(
        "broker-stall",
        direct,
        len(frames),
        db,
        kpis=True,
        kpis_complete=True,
        alerts=True,
        stalls=STALLS,
        stall_s=round(sum(t1 - t0 for t0, t1 in stalls), 1),
        acks_during_stall=acks_in_stall,
        producer_stall_warnings=stats.get("ack_stalls"),
        max_backlog_frames=backlog,
        proxy_held_bytes=proxy.held_bytes,
        proxy_connections=proxy.connections,
        kpi_windows_in_stall=kpi_in_stall,
        sink_uncommitted=sink_lag,
        worker_uncommitted=worker_lag,
        sink_stop_s=round(sink_stop_s, 1),
        kpi_emitted=len(emitted),
        kpi_repeated=out.duplicated,
        duration_s=round(time.monotonic() - started, 1),
    ).emit()
    report.assert_ok()
    assert acks_in_stall == 0, f"{acks_in_stall} frame(s) acked during the stall: the proxy was not in the path"
    assert backlog >= 10, f"only {backlog} frame(s) waited during the stall: it did not hold the producer back"
    assert proxy.held_bytes > 0, "no client sent a byte during the stall"
    # the producer said so while it happened (librdkafka is silent on a link that stays open), and when it ended
    messages = [r.getMessage() for r in caplog.records]
    assert stats.get("ack_stalls") == STALLS, [m for m in messages if "Kafka" in m]
    assert sum("acknowledged no frame" in m and "Fix:" in m for m in messages) == STALLS
    assert sum("acknowledges frames again" in m for m in messages) == STALLS
    assert report.acked == report.stored == len(frames)
    assert sink_lag == 0, f"the storage sink left {sink_lag} stored record(s) uncommitted after the stall"
    # both fixed in processors/worker/faust_compat.py: after the rejoin the worker lost a queued frame
    # (2 runs of 14) or its committed offset crept on by one per second (6 of 20)
    assert worker_lag == 0, f"the worker left {worker_lag} processed record(s) uncommitted after the stall"
    assert not [line for line in error_lines(worker_log) if "jumped from offset" in line]
    assert report.kpi is not None and report.kpi.got > 0
    assert out.ok, f"emitted KPI windows differ from the recomputation: {out.diffs}, missing {out.missing[:3]}"
    assert report.extra["alert_changes"] > 0, "no alert state change to check: adjust RULES to the simulator"
    assert kpi_in_stall > 0, "no KPI window of the readings taken during the stall was stored"
    for device, n, lo, hi in per_device:
        assert (lo, hi) == (0, n - 1), f"{device}: a gap in the stored sequence numbers"
