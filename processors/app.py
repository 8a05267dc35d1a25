"""The Faust worker: readings -> event-time KPI windows (plant.kpi.v1), ISO 22400 OEE (plant.oee.v1),
anomaly scores (plant.anomalies.v1) and alert state changes (plant.alerts.v1); bad input -> dead letters.

Agents stay thin: decoding, state lookup and sending happen here, the math lives in pure modules.
State is one changelog-backed table entry per asset, saved with every frame together with the offset it
contains, so a restart or rebalance resumes the open windows where they were, without double counting;
anomaly models are saved every MODEL_CHECKPOINT_FRAMES frames.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from confluent_kafka.admin import AdminClient
from faust.serializers import codecs

import schemas
from plantstream.core import kafka_clients, logs, metrics, topics
from plantstream.core.config import Settings
from plantstream.core.records import Alert
from plantstream.core.runstats import RunStats, instance_name
from plantstream.core.serde import DecodeError
from processors import alert_rules, event_windows, faust_fastpath, faust_rebalance_fixes, oee
from processors.anomaly.model import AnomalyStage
from processors.outputs import Outputs

log = logs.get(__name__)

REQUIRED_FRAME_FIELDS = ("asset", "scan_time", "samples")
MODEL_CHECKPOINT_FRAMES = 100


def contract_problem(frame: dict[str, Any], key: bytes | None) -> str | None:
    """Why a decoded frame breaks the contract, or None when it is usable."""
    asset = frame.get("asset")
    if not asset:
        return "frame has an empty asset path"
    if key is not None and key.decode("utf-8", "replace") != asset:
        return f"message key {key!r} differs from the frame's asset {asset!r}; key must be the asset path"
    return None


def dead_letter_headers(error: str, exc_class: str, msg: Any, stage: str) -> dict[str, str | bytes | None]:
    return {
        "ps-error": error.encode()[:4000],
        "ps-error-class": exc_class.encode(),
        "ps-source-topic": str(msg.topic).encode(),
        "ps-source-partition": str(msg.partition).encode(),
        "ps-source-offset": str(msg.offset).encode(),
        "ps-stage": stage.encode(),
    }


def create_app(settings: Settings, stats: RunStats | None = None, instance: int = 1) -> faust.App:
    name = instance_name("processor", instance)  # one of several workers of `up --workers N`
    stats = stats or RunStats(name, settings.pipeline.state_dir)
    k = settings.pipeline.kafka
    registry = kafka_clients.registry(settings)
    kpi_codec = registry.codec(topics.subject(settings, topics.KPI), schemas.KPI_WINDOW)
    oee_codec = registry.codec(topics.subject(settings, topics.OEE), schemas.OEE_WINDOW)
    alert_codec = registry.codec(topics.subject(settings, topics.ALERTS), schemas.ALERT)
    # per asset, resolved once: its OEE profile (None: no machine_state tag) and matching alert rules
    oee_profiles: dict[str, oee.AssetProfile | None] = {}
    asset_rules: dict[str, list[Any]] = {}

    def rules_of(asset: str) -> list[Any]:
        if asset not in asset_rules:
            oee_profiles[asset] = oee.profile_for(settings, asset)
            asset_rules[asset] = alert_rules.rules_for(settings.pipeline.alerts, asset)
        return asset_rules[asset]

    def profile_of(asset: str) -> oee.AssetProfile | None:
        rules_of(asset)  # resolves both
        return oee_profiles[asset]

    def oee_and_alerts(state: dict[str, Any], frame: dict[str, Any]) -> tuple[list[dict], list[Alert]]:
        # new keys in the asset's state dict, so the offset dedup above covers them too
        prof = profile_of(frame["asset"])  # resolves the rules too
        rules = asset_rules[frame["asset"]]
        windows_out = (
            oee.apply_frame(state.setdefault("oee", oee.new_state()), frame, prof, size_us, grace_us) if prof else []
        )
        alerts_out = (
            alert_rules.apply_frame(
                state.setdefault("alerts", alert_rules.new_state()),
                rules,
                frame,
                time.time_ns() // 1000,
                prof.state_tags if prof else frozenset(),
                prof.codes if prof else None,
            )
            if rules
            else []
        )
        return windows_out, alerts_out

    decoder = registry.decoder(schemas.READING_FRAME)
    size_us = settings.pipeline.windows.kpi_window_s * 1_000_000
    hop_us = (settings.pipeline.windows.hop_s or settings.pipeline.windows.kpi_window_s) * 1_000_000
    grace_us = int(settings.pipeline.windows.grace_s * 1_000_000)
    idle_after_us = max(grace_us, int(settings.pipeline.windows.idle_after_s * 1_000_000))
    late_codec = registry.codec(topics.subject(settings, topics.LATE), schemas.READING_FRAME)

    # the changelog and Faust's own topics are replicated like the pipeline's topics
    replication = topics.cluster_replication(settings, AdminClient(kafka_clients.admin_config(settings)))
    app = faust.App(
        f"{settings.pipeline.group_id}-processor",
        **kafka_clients.faust_broker_kwargs(settings),
        store="memory://",  # state is rebuilt from the changelog topic on start
        topic_partitions=k.partitions,
        topic_replication_factor=replication.factor,
        web_enabled=False,
        datadir=str(settings.state_path(name, "faust")),
        # Faust commits inline in its fetch loop every `broker_commit_every` events, stalling the input
        # while the commit (outputs, then state, then offsets) is confirmed: commit by interval only
        broker_commit_every=100_000,
        # aiokafka fetches a partition again only once its last batch is consumed: 1 MB batches left
        # the worker waiting for input (80 % CPU, 40-43k samples/s draining a backlog; 8 MB: 99 %,
        # 50-54k, `plantstream bench worker`, back to back)
        consumer_max_fetch_size=8 * 1024**2,
        # batch produced records for 20 ms (one request instead of hundreds): +26% frames/s measured
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
    outputs = Outputs(settings)
    kpi_topic, oee_topic = settings.topic(topics.KPI), settings.topic(topics.OEE)
    alerts_topic, anomalies_topic = settings.topic(topics.ALERTS), settings.topic(topics.ANOMALIES)
    deadletter_topic = settings.topic(topics.DEADLETTER)
    late_topic = settings.topic(topics.LATE)
    last_seen: dict[str, float] = {}  # asset -> monotonic time of its last frame (since this start)
    last_offset: dict[int, int] = {}  # readings partition -> last offset processed
    read_to_end_since: dict[int, float] = {}  # readings partition -> monotonic time it has been read to the end

    def send_alerts(asset: str, records: list[Alert]) -> None:
        for record in records:
            stats.add("alerts_raised" if record["state"] == "RAISED" else "alerts_cleared")
            outputs.send(alerts_topic, asset.encode(), alert_codec.encode(record))

    # no key_type/value_type: plain JSON; value_type=Any made Faust call `Any.from_data` in recovery,
    # so a restarted worker lost its state
    windows = app.Table(
        "kpi-windows", default=None, partitions=k.partitions, extra_topic_configs=replication.configs()
    )

    def to_deadletter(event: faust.types.EventT, error: str, exc_class: str) -> None:
        stats.add("dead_letters")
        log.warning(
            "dead letter from %s[%d]@%d: %s", event.message.topic, event.message.partition, event.message.offset, error
        )
        outputs.send(
            deadletter_topic, event.key, event.value, dead_letter_headers(error, exc_class, event.message, "processor")
        )

    anomaly_stage = AnomalyStage(settings)
    anomaly_codec = registry.codec(topics.subject(settings, topics.ANOMALIES), schemas.ANOMALY_SCORE)
    # Models are checkpointed every MODEL_CHECKPOINT_FRAMES frames in a table of their own: a model
    # restored after a crash has missed a few frames of learning, which changes its scores negligibly,
    # while saving it with every frame would multiply the changelog traffic.
    models = app.Table(
        "anomaly-models", default=None, partitions=k.partitions, extra_topic_configs=replication.configs()
    )
    since_model_save: dict[str, int] = {}
    # What changed since the state was last persisted: (table name, key) -> (table, partition, value or
    # a function giving it). The changelog is written at commit time, not per frame, in this order:
    # snapshot the changed entries, confirm the output records of every frame they contain, send the
    # snapshot, confirm it, and only then let Faust commit the input offsets. So the saved state is
    # never behind the committed offset (a restart would skip frames) nor ahead of the delivered
    # output (a restart would skip windows it believes sent); tests/faults/test_worker_kill.py caught
    # both with the per-frame writes through Faust's send buffer, which returns from flush() with
    # records still queued. It also costs one changelog record per asset and commit, not per frame.
    changed: dict[tuple[str, str], tuple[Any, int, Any]] = {}

    def mark_changed(table: Any, key: str, value: Any, partition: int) -> None:
        # Table.__setitem__ would pick the changelog partition from Faust's "current event", which a
        # timer does not have: the asset's readings partition is named explicitly, so the entry is
        # recovered by whoever owns that partition
        if not callable(value):
            table.data[key] = value
        changed[(table.name, key)] = (table, partition, value)

    async def persist_changed() -> list[asyncio.Future[Any]]:
        if not changed:
            await outputs.flush()
            return []
        # serialised now: the agent goes on changing these dicts while the outputs are confirmed
        snapshot = []
        for (_, key), (table, partition, value) in changed.items():
            if callable(value):
                value = table.data[key] = value()
            if value is not None:
                snapshot.append((table, partition, key, codecs.dumps("json", value)))
        changed.clear()
        await outputs.flush()
        return [
            table.send_changelog(partition, key, raw, value_serializer="raw") for table, partition, key, raw in snapshot
        ]

    def process_frame(event: faust.types.EventT) -> None:
        msg = event.message
        try:
            frame = decoder.decode(event.value)
        except DecodeError as e:
            to_deadletter(event, str(e), type(e).__name__)
            return
        problem = contract_problem(frame, event.key)
        if problem:
            to_deadletter(event, problem, "ContractError")
            return
        asset = frame["asset"]
        state = windows.get(asset)
        if state is None:
            state = windows.data[asset] = event_windows.new_state()
        if msg.offset <= state["offset"]:
            stats.add("frames_skipped_redelivered")
            return
        key = asset.encode()
        late: list[dict[str, Any]] = []
        closed = event_windows.apply_frame(state, frame, size_us, grace_us, hop_us, late)
        state["offset"] = msg.offset
        state["partition"] = msg.partition  # lets the idle timer write this state back to its partition
        last_seen[asset] = time.monotonic()
        if late:
            # beyond grace: no window takes them; they stay visible (and stored, from the readings topic)
            outputs.send(late_topic, key, late_codec.encode({**frame, "samples": late}))
            stats.add("samples_late", len(late))
        for record in closed:
            outputs.send(kpi_topic, key, kpi_codec.encode(record))
        if closed and not frame.get("historical"):
            # how long after the earliest possible moment (window end + grace) the window went out
            now_ms = time.time() * 1000
            for record in closed:
                stats.observe("window_close_latency_ms", now_ms - (record["window_end"] + grace_us) / 1000)
        oee_windows, alerts = oee_and_alerts(state, frame)
        for record in oee_windows:
            outputs.send(oee_topic, key, oee_codec.encode(record))
        if asset not in since_model_save:  # first frame since start or rebalance: resume the model
            anomaly_stage.restore(asset, models.get(asset))
            since_model_save[asset] = 0
        score = anomaly_stage.score(asset, frame)
        if score is not None:
            outputs.send(anomalies_topic, key, anomaly_codec.encode(score))
            stats.add("anomaly_scores")
            if rules_of(asset):
                alerts += alert_rules.apply_anomaly(
                    state.setdefault("alerts", alert_rules.new_state()), asset_rules[asset], score
                )
        send_alerts(asset, alerts)
        mark_changed(windows, asset, state, msg.partition)
        since_model_save[asset] += 1
        if since_model_save[asset] >= MODEL_CHECKPOINT_FRAMES:
            mark_changed(models, asset, lambda asset=asset: anomaly_stage.checkpoint(asset), msg.partition)
            since_model_save[asset] = 0
        stats.add("frames_in")
        stats.observe("frame_latency_ms", time.time() * 1000 - frame["scan_time"] / 1000)
        stats.add("samples_in", len(frame["samples"]))
        stats.add("kpi_windows", len(closed))
        stats.add("oee_windows", len(oee_windows))

    def note_offset(partition: int, offset: int) -> None:
        prev = last_offset.get(partition)
        if prev is not None and offset > prev + 1:
            # plantstream's producers are idempotent, not transactional: their offsets have no holes,
            # so a jump means frames this worker never saw (seen once in ~28 SIGKILL takeovers)
            stats.add("input_offset_gaps")
            log.error(
                "readings partition %d jumped from offset %d to %d: %d frames were skipped by the consumer; "
                "replay them with a fresh consumer group if their KPIs matter",
                partition,
                prev,
                offset,
                offset - prev - 1,
            )
        last_offset[partition] = offset

    @app.agent(readings)
    async def process_frames(stream: faust.StreamT[bytes]) -> None:
        # One frame at a time: Faust's take_events batching was faster still, but lost a moved
        # partition's frames on rebalance (tests/integration/test_two_workers.py). Output records go
        # through librdkafka, the changed state to the changelog at commit time (`persist_changed`).
        faust_fastpath.install(app.consumer)
        faust_rebalance_fixes.install(app)  # the agents start before the first rebalance completes
        # iterating the stream itself: `stream.events()` is one more async generator step per frame
        async for _ in stream:
            event = stream.current_event
            if event is None:  # not from the topic (nothing else feeds this agent)
                continue
            note_offset(event.message.partition, event.message.offset)
            process_frame(event)

    faust_flush = app.producer.flush

    async def _persist_before_commit() -> None:
        # Faust calls its producer's flush right before it commits input offsets
        sent = await persist_changed()
        await faust_flush()
        if sent:
            await asyncio.gather(*sent)

    app.producer.flush = _persist_before_commit  # type: ignore[method-assign]

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_models(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        # the next owner resumes each state and model from the table; a stale copy here must not come
        # back later
        await persist_changed()
        since_model_save.clear()
        last_offset.clear()  # a partition that comes back later resumes elsewhere: not a gap
        read_to_end_since.clear()
        for asset in list(anomaly_stage.assets()):
            anomaly_stage.restore(asset, None)
        stats.add("rebalances")

    @app.timer(1.0)
    async def stale_alerts() -> None:
        # wall-clock staleness for assets whose frames stopped; the state dict is changed in place and
        # reaches the changelog with the next commit (a restart before that may repeat the RAISED with
        # the same alert_id, which idempotent sinks absorb)
        now = time.time_ns() // 1000
        persist_now = False
        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == readings.get_topic_name()}
        for asset, state in list(windows.items()):
            # the table also holds standby copies of other workers' assets: those are theirs to judge
            if state and "alerts" in state and state.get("partition", -1) in mine and rules_of(asset):
                raised = alert_rules.tick(state["alerts"], asset_rules[asset], asset, now)
                if raised:
                    send_alerts(asset, raised)
                    mark_changed(windows, asset, state, state["partition"])
                    persist_now = True
        if persist_now:  # the input may be silent (that is what made it stale): no commit would come
            await persist_changed()
        outputs.poll()

    async def refresh_read_to_end(now: float) -> None:
        """Note since when each owned readings partition has been read to the end, by the broker's word.

        The end offsets are asked of the broker every tick: while it is down (or the partition has a
        backlog) the partition's clock restarts, so a broker outage, after which the producers' buffered
        frames arrive, is never taken for silent machines."""
        mine = [tp for tp in app.consumer.assignment() if tp.topic == readings.get_topic_name()]
        try:
            ends = await asyncio.wait_for(app.consumer.highwaters(*mine), timeout=2.0) if mine else {}
        except Exception:  # broker unreachable or slow: nobody is known to be idle
            read_to_end_since.clear()
            return
        for tp in mine:
            end, done = ends.get(tp), last_offset.get(tp.partition)
            if done is None and end is not None:
                position = await app.consumer.position(tp)
                done = None if position is None else position - 1
            if end is not None and done is not None and done + 1 >= end:
                read_to_end_since.setdefault(tp.partition, now)
            else:
                read_to_end_since.pop(tp.partition, None)
        for p in set(read_to_end_since) - {tp.partition for tp in mine}:
            del read_to_end_since[p]

    @app.timer(1.0)
    async def close_idle_windows() -> None:
        # An asset that went silent (line stopped, producer gone, replay finished) would keep its last
        # windows open forever: after idle_after_s of silence its event time moves on with the wall
        # clock. Silence counts only while its partition is known to be read to the end, so neither a
        # backlog nor a broker outage is mistaken for it.
        if not settings.pipeline.windows.idle_close:
            return
        now = time.monotonic()
        await refresh_read_to_end(now)
        idle_closed = False
        for asset, state in list(windows.items()):
            if not state or "partition" not in state:
                continue
            oee_state = state.get("oee")
            # OEE windows and shifts can be open while no KPI window is (an 8 h shift)
            if not state.get("open") and not (oee_state and oee_state["buckets"]):
                continue
            p = state["partition"]
            if p not in read_to_end_since:
                continue
            seen = last_seen.setdefault(asset, now)  # restored state: the silence counts from this start
            idle_us = int((now - max(seen, read_to_end_since[p])) * 1e6)
            if idle_us <= idle_after_us:
                continue
            closed = event_windows.advance_idle(state, asset, size_us, grace_us, idle_us, hop_us)
            prof = profile_of(asset)
            # the machine is taken to stay in its last known state while its data is silent
            # (report by exception sends no unchanged state): see oee.advance_idle
            oee_closed = oee.advance_idle(oee_state, prof, size_us, grace_us, idle_us) if prof and oee_state else []
            for record in closed:
                outputs.send(kpi_topic, asset.encode(), kpi_codec.encode(record))
            for record in oee_closed:
                outputs.send(oee_topic, asset.encode(), oee_codec.encode(record))
            if closed or oee_closed:
                stats.add("kpi_windows", len(closed))
                stats.add("kpi_windows_idle_closed", len(closed))
                stats.add("oee_windows", len(oee_closed))
                stats.add("oee_windows_idle_closed", len(oee_closed))
                mark_changed(windows, asset, state, p)
                idle_closed = True
        if idle_closed:
            # no commit comes while the input is silent: persist here, windows first, then the state
            # that says they were emitted (a crash in between emits them again, same natural key)
            await persist_changed()

    @app.timer(1.0)
    async def write_stats() -> None:
        lag = 0
        for tp in app.consumer.assignment():
            if tp.topic == readings.get_topic_name() and tp.partition in last_offset:
                highwater = app.consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - last_offset[tp.partition] - 1)
        stats.put("consumer_lag_frames", lag)
        stats.flush()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _flush_outputs(sender: Any, **kwargs: Any) -> None:
        # records the timers sent after the last commit
        await outputs.flush(timeout_s=30)

    return app


def run_worker(settings: Settings, loglevel: str = "warning", instance: int = 1) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust's own signal handling stops it gracefully).
    `instance`: which of several workers in the group this is (its counters file and data folder)."""
    stats = RunStats(instance_name("processor", instance), settings.pipeline.state_dir)
    kafka_clients.wait_for_broker(settings, "processor")
    metrics.serve(settings, stats)
    app = create_app(settings, stats, instance)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        stats.flush()
