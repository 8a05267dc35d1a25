"""The Faust glue of the worker: topics, tables, the agent, the timers and the Checkpoint hook.

Contract: `create_app(settings)` builds a Faust app whose agent hands each readings message to the
`FrameProcessor` (processors/worker/processor.py), and a second agent each alarm command to the
`CommandProcessor` (processors/worker/commands.py: co-partitioned with the readings, so a command
reaches the worker that owns its asset); state lives in two changelog-backed tables
(`kpi-windows`: one `AssetState` per asset; `anomaly-models`: the models' checkpoints); the Checkpoint
(processors/worker/checkpoint.py) runs before every offset commit, after every silence tick that
changed state, and on revocation. `run_worker(settings)` runs it until SIGTERM/SIGINT. Every private
Faust name used is in processors/worker/faust_compat.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import faust
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import schemas
from plantstream.core import kafka_clients, logs, metrics, topics
from plantstream.core.config import Settings
from plantstream.core.outage_log import NOISY_LOGGERS, limit_logging
from plantstream.core.runstats import RunStats, instance_name
from plantstream.core.shutdown import StopOnSignal
from processors.anomaly import AnomalyStage
from processors.worker import faust_compat
from processors.worker.checkpoint import Checkpoint
from processors.worker.commands import CommandProcessor, check_copartitioned
from processors.worker.kafka_outputs import KafkaOutputs
from processors.worker.processor import FrameProcessor
from processors.worker.stage import Kind
from processors.worker.stages import (
    AlarmFigures,
    Alarms,
    AlertRules,
    AnomalyScores,
    AssetConfig,
    AssetTwin,
    KpiWindows,
    Oee,
)
from processors.worker.state import AssetStates, TableStore
from processors.worker.timers import EndOffsets, InputOffsets, SilenceClock
from processors.worker.watchdog import Watchdog, describe

log = logs.get(__name__)

WATCH_EVERY_S = 5.0
RECOVERY = "table recovery"
EXIT_STALLED = 3  # the watchdog's exit code

# output kind -> (topic constant, schema name)
OUTPUT_TOPICS = {
    Kind.KPI: (topics.KPI, schemas.KPI_WINDOW),
    Kind.OEE: (topics.OEE, schemas.OEE_WINDOW),
    Kind.ANOMALY: (topics.ANOMALIES, schemas.ANOMALY_SCORE),
    Kind.ALERT: (topics.ALERTS, schemas.ALERT),
    Kind.LATE: (topics.LATE, schemas.READING_FRAME),
    Kind.STATE: (topics.STATE, schemas.ASSET_STATE),
    Kind.ALARM_STATE: (topics.ALARM_STATE, schemas.ALARM_STATE),
    Kind.ALARM_EVENT: (topics.ALARM_EVENTS, schemas.ALARM_EVENT),
}


def kafka_outputs(settings: Settings) -> KafkaOutputs:
    """The worker's outputs to Kafka: topics from the config, schemas registered in the registry."""
    registry = kafka_clients.registry(settings)
    return KafkaOutputs(
        Producer(kafka_clients.producer_config(settings, "processor")),
        {kind: settings.topic(topic) for kind, (topic, _) in OUTPUT_TOPICS.items()},
        {
            kind: registry.codec(topics.subject(settings, topic), schema)
            for kind, (topic, schema) in OUTPUT_TOPICS.items()
        },
        settings.topic(topics.DEADLETTER),
    )


def create_app(settings: Settings, stats: RunStats | None = None, instance: int = 1) -> faust.App:
    name = instance_name("processor", instance)  # one of several workers of `up --workers N`
    stats = stats or RunStats(name, settings.pipeline.state_dir)
    k = settings.pipeline.kafka
    w = settings.pipeline.windows
    size_us = w.kpi_window_s * 1_000_000
    hop_us = (w.hop_s or w.kpi_window_s) * 1_000_000
    grace_us = int(w.grace_s * 1_000_000)
    idle_after_us = max(grace_us, int(w.idle_after_s * 1_000_000))

    # the changelog and Faust's own topics are replicated like the pipeline's topics
    admin = AdminClient(kafka_clients.admin_config(settings))
    replication = topics.cluster_replication(settings, admin)
    partitions = copartitioned(settings, admin)
    app = faust.App(
        f"{settings.pipeline.group_id}-processor",
        **kafka_clients.faust_broker_kwargs(settings),
        store="memory://",  # state is rebuilt from the changelog topic on start
        topic_partitions=k.partitions,
        topic_replication_factor=replication.factor,
        web_enabled=False,
        datadir=str(settings.state_path(name, "faust")),
        # Faust commits inline in its fetch loop every `broker_commit_every` events, stalling the input
        # while the checkpoint is confirmed: commit by interval only
        broker_commit_every=100_000,
        # aiokafka fetches a partition again only once its last batch is consumed: 1 MB batches left
        # the worker waiting for input (docs/worker.md, throughput settings)
        consumer_max_fetch_size=8 * 1024**2,
        producer_linger=0.02,
        producer_max_batch_size=256 * 1024,
        broker_commit_interval=1.0,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # a worker killed with -9 holds its partitions until the session expires
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )
    readings = app.topic(
        settings.topic(topics.READINGS), key_serializer="raw", value_serializer="raw", partitions=k.partitions
    )
    readings_topic = readings.get_topic_name()
    # no key_type/value_type: plain JSON; value_type=Any made Faust call `Any.from_data` in recovery,
    # so a restarted worker lost its state
    windows_table = app.Table(
        "kpi-windows", default=None, partitions=k.partitions, extra_topic_configs=replication.configs()
    )
    models_table = app.Table(
        "anomaly-models", default=None, partitions=k.partitions, extra_topic_configs=replication.configs()
    )
    states = AssetStates("kpi-windows", windows_table.data)
    models = TableStore("anomaly-models", models_table.data)

    outputs = kafka_outputs(settings)
    decoder = kafka_clients.registry(settings).decoder(schemas.READING_FRAME)
    config = AssetConfig(settings)
    anomaly = AnomalyScores(AnomalyStage(settings), models)
    alarms, twin = Alarms(config), AssetTwin(config, size_us, hop_us)
    processor = FrameProcessor(
        decoder.decode_frame,  # columns where the frame's layout allows (plantstream/core/frame_codec.py)
        [
            KpiWindows(size_us, grace_us, hop_us, config),
            Oee(config, size_us, grace_us),
            anomaly,
            AlertRules(config),  # after the anomaly scores: rules on them
            alarms,  # after the alert rules: their lifecycle
            twin,  # last: the asset's state after everything else
        ],
        states,
        outputs,
        stats,
        grace_us,
    )
    checkpoint = Checkpoint(
        outputs,
        [states, models],
        {
            "kpi-windows": windows_table.changelog_topic.get_topic_name(),
            "anomaly-models": models_table.changelog_topic.get_topic_name(),
        },
        faust_compat.changelog_key,
    )
    faust_compat.before_offset_commit(app, checkpoint.persist)
    faust_compat.create_topics_through_any_broker(app)  # before start: Faust declares its topics first
    commands = app.topic(
        settings.topic(topics.ALARM_COMMANDS), key_serializer="raw", value_serializer="raw", partitions=k.partitions
    )
    command_processor = CommandProcessor(
        kafka_clients.registry(settings).decoder(schemas.ALARM_COMMAND).decode,
        states,
        alarms,
        twin,
        config,
        outputs,
        stats,
        partitions,
    )
    figures = AlarmFigures(states, stats)
    offsets = InputOffsets(stats)
    silence = SilenceClock(idle_after_us, processor.last_seen, offsets)
    end_offsets = EndOffsets(admin)

    def owned() -> list[Any]:
        return [tp for tp in app.consumer.assignment() if tp.topic == readings_topic]

    @app.agent(readings)
    async def process_frames(stream: faust.StreamT[bytes]) -> None:
        # One frame at a time: Faust's take_events batching lost a moved partition's frames on
        # rebalance (tests/integration/test_two_workers.py).
        faust_compat.install(app)  # the agents start before the first rebalance completes
        limit_logging(NOISY_LOGGERS)
        process = processor.process
        note = offsets.note
        # iterating the stream itself: `stream.events()` is one more async generator step per frame
        async for _ in stream:
            event = stream.current_event
            if event is None:  # not from the topic (nothing else feeds this agent)
                continue
            msg = event.message
            note(msg.partition, msg.offset)
            process(msg.topic, msg.partition, msg.offset, event.key, event.value)
            if outputs.backlogged:  # librdkafka's queue is full: wait without blocking the loop
                await outputs.drain()

    @app.agent(commands)
    async def apply_commands(stream: faust.StreamT[bytes]) -> None:
        # on the same loop as the frames: a command and a frame of one asset never interleave
        async for _ in stream:
            event = stream.current_event
            if event is not None:
                msg = event.message
                command_processor.process(msg.topic, msg.partition, msg.offset, event.key, event.value)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _on_revoked(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        # state first, confirmed; then the next owner resumes each state and model from the tables,
        # and a stale copy here must not come back later
        await checkpoint.persist()
        gone = {tp.partition for tp in revoked or () if tp.topic == readings_topic}
        processor.revoked([asset for asset, state in states.items() if state.partition in gone])
        offsets.forget()
        silence.forget()
        stats.add("rebalances")

    @app.timer(1.0)
    async def silence_tick() -> None:
        # An asset that went silent (line stopped, producer gone, replay finished) would keep its last
        # windows open forever, and a stale tag would never raise its alert: every second each owned
        # asset's stages may advance on silence.
        mine = owned()
        if w.idle_close:
            await silence.refresh(mine, end_offsets, app.consumer.position)
        now = time.time_ns() // 1000
        changed = processor.advance({tp.partition for tp in mine}, silence.idle_us, now)
        for asset, record in twin.unseen({tp.partition for tp in mine}, partitions, windows_table.data, now):
            outputs.emit(asset.encode(), Kind.STATE, record)  # a configured asset that sent nothing yet
        if changed:  # the input may be silent: no commit would come
            await checkpoint.persist()
        outputs.poll()

    watchdog = Watchdog(settings.pipeline.worker.stall_exit_s)

    @app.timer(WATCH_EVERY_S)
    async def watch_progress() -> None:
        # no progress on held partitions while the broker holds records for them: exit, so that a
        # restart (plantstream up) recovers; a Faust defect once kept a worker in table recovery for good
        if watchdog.stall_after_s <= 0:
            return
        now = time.monotonic()
        mine = owned()
        try:
            ends = await asyncio.wait_for(end_offsets(mine), WATCH_EVERY_S) if mine else {}
            work: dict[str, tuple[int, int]] = {}
            for tp in mine:
                end = ends.get(tp)
                last = offsets.last.get(tp.partition)
                position = last + 1 if last is not None else await asyncio.wait_for(app.consumer.position(tp), 2.0)
                if end is not None and position is not None:
                    work[f"{readings_topic}[{tp.partition}]"] = (position, end)
        except Exception:  # the broker does not answer: no evidence either way
            watchdog.unknown()
            return
        remaining = faust_compat.recovery_remaining(app)
        if remaining:
            work[RECOVERY] = (-remaining, 0)
        watchdog.observe(now, work)
        if remaining and watchdog.progressed(RECOVERY, now, WATCH_EVERY_S * 1.5):
            watchdog.excuse(now, [n for n in work if n != RECOVERY])  # the readings wait for the recovery
        stuck = watchdog.stuck(now)
        if stuck:
            log.error(
                "no progress for %.0f s on partitions this worker holds while the broker has records for them: "
                "%s. Exiting (code %d) so that a restart recovers them (plantstream up restarts the worker); "
                "frames not committed are processed again",
                watchdog.stall_after_s,
                describe(stuck, now),
                EXIT_STALLED,
            )
            stats.add("watchdog_exits")
            stats.flush()
            os._exit(EXIT_STALLED)

    @app.timer(1.0)
    async def write_stats() -> None:
        lag = 0
        for tp in owned():
            if tp.partition in offsets.last:
                highwater = app.consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - offsets.last[tp.partition] - 1)
        stats.put("consumer_lag_frames", lag)
        anomaly.report(stats)
        figures.put({tp.partition for tp in owned()}, time.time_ns() // 1000)
        stats.flush()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _flush_outputs(sender: Any, **kwargs: Any) -> None:
        # records the timers sent after the last commit
        await outputs.confirmed(outputs.mark(), timeout_s=30)

    return app


def copartitioned(settings: Settings, admin: AdminClient) -> int:
    """The readings' partition count, once the alarm commands are known to have the same (commands.py)."""
    md = admin.list_topics(timeout=30).topics
    readings, commands = settings.topic(topics.READINGS), settings.topic(topics.ALARM_COMMANDS)
    if readings not in md:  # Faust creates it with pipeline.kafka.partitions
        return settings.pipeline.kafka.partitions
    n = len(md[readings].partitions)
    check_copartitioned((readings, n), (commands, len(md[commands].partitions) if commands in md else 0))
    return n


def run_worker(settings: Settings, loglevel: str = "warning", instance: int = 1) -> None:
    """Run the worker until SIGTERM/SIGINT, which stop it in order within `pipeline.shutdown_timeout_s`.
    `instance`: which of several workers in the group this is (its counters file and data folder).

    Raises `faust_compat.UnsupportedVersions` before anything starts when the installed Faust, mode or
    aiokafka are not the versions its patches were tested with."""
    faust_compat.check_versions()
    stats = RunStats(instance_name("processor", instance), settings.pipeline.state_dir)
    # before any thread starts (see core/shutdown.py); until Faust runs, a signal ends the process at once
    stopper = StopOnSignal("the worker", settings.pipeline.shutdown_timeout_s, stats.flush).install()
    stopper.on_stop(lambda: os._exit(0))
    kafka_clients.wait_for_broker(settings, "processor")
    metrics.serve(settings, stats)
    app = create_app(settings, stats, instance)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    stopper.on_stop(faust_compat.stop_request(worker))
    # a broker outage makes aiokafka (and Faust) log each retry, ten lines per 100 ms: one per minute now
    # (again once the agent runs: mode's worker sets up its log handlers when it starts)
    limit_logging(NOISY_LOGGERS)
    try:
        worker.execute_from_commandline()
    finally:
        stats.flush()
