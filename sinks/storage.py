"""`plantstream sink storage`: readings, KPI and OEE windows, anomaly scores, alerts and the alarms' audit
trail (plant.alarm-events.v1) from Kafka into the store, at least once.

Offsets are committed only after the batch's database transaction has committed, so a crash
replays at most the last batch, and the store's natural keys make that replay a no-op.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

import schemas
from plantstream.core import kafka_clients, metrics, topics
from plantstream.core.config import Settings
from plantstream.core.consumer_lag import LagMeter
from plantstream.core.runstats import RunStats, instance_name
from plantstream.core.serde import DecodeError
from sinks.stores.registry import describe, open_with_retry, run_retention, write_with_backpressure

log = logging.getLogger("plantstream.sink.storage")


def store_path(settings: Settings) -> Path:
    p = Path(settings.pipeline.storage.sqlite_path).expanduser()
    return p if p.is_absolute() else settings.state_path(str(p))


def commit(consumer: Consumer) -> None:
    """Commit what is stored. A failed commit only means a redelivery later, which the store ignores."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        # e.g. the broker restarted and the group rebalanced: the partitions' new owner (maybe us,
        # after rejoining) re-reads from the last committed offset
        log.warning("offset commit failed (%s); those records will be redelivered and stored once", e)


def run_storage_sink(
    settings: Settings, stop: threading.Event, stats: RunStats | None = None, instance: int = 1
) -> None:
    """Consume until `stop`; `instance`: which of several sinks in the group this is (its counters file)."""
    stats = stats or RunStats(instance_name("sink-storage", instance), settings.pipeline.state_dir)
    metrics.serve(settings, stats)
    if not kafka_clients.wait_for_broker(settings, "sink-storage", stop=stop):
        return
    registry = kafka_clients.registry(settings)
    decoders = {
        settings.topic(topics.READINGS): registry.decoder(schemas.READING_FRAME),
        settings.topic(topics.KPI): registry.decoder(schemas.KPI_WINDOW),
        settings.topic(topics.OEE): registry.decoder(schemas.OEE_WINDOW),
        settings.topic(topics.ANOMALIES): registry.decoder(schemas.ANOMALY_SCORE),
        settings.topic(topics.ALERTS): registry.decoder(schemas.ALERT),
        settings.topic(topics.ALARM_EVENTS): registry.decoder(schemas.ALARM_EVENT),
    }
    kind_of = {
        settings.topic(topics.OEE): "oee_window",
        settings.topic(topics.ANOMALIES): "anomaly_score",
        settings.topic(topics.ALERTS): "alert",
        settings.topic(topics.ALARM_EVENTS): "alarm_event",
    }
    store = open_with_retry(settings, stop)  # database down at start: wait for it, read nothing yet
    if store is None:
        return
    cfg = settings.pipeline.storage
    group = f"{settings.pipeline.group_id}-sink-storage"
    consumer = Consumer(kafka_clients.consumer_config(settings, group, "sink-storage"))
    consumer.subscribe(list(decoders))
    lag = LagMeter(consumer, decoders, stats)
    stats.put("store_paused", 0)

    def while_paused() -> None:
        # paused partitions fetch nothing, so ask the broker for their watermarks: the lag keeps growing
        if lag.maybe_refresh(cached=False) is not None:
            stats.flush()

    log.info("storage sink writing to %s", describe(settings))
    frames: list[dict[str, Any]] = []
    kpis: list[dict[str, Any]] = []
    records: dict[str, list[dict[str, Any]]] = {}

    def take(m: Message) -> None:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        topic = m.topic() or ""
        try:
            record = decoders[topic].decode(m.value())
        except DecodeError as e:
            # the processor routes the same message to the dead-letter topic with its reason
            stats.add("undecodable")
            log.warning("skipping undecodable message %s[%s]@%s: %s", topic, m.partition(), m.offset(), e)
            return
        if topic in kind_of:
            records.setdefault(kind_of[topic], []).append(record)
        else:
            (frames if topic == settings.topic(topics.READINGS) else kpis).append(record)

    next_retention = 0.0  # a pass at start, then every retention.interval_min
    try:
        while not stop.is_set():
            if time.monotonic() >= next_retention:
                run_retention(store, cfg.retention)
                next_retention = time.monotonic() + cfg.retention.interval_min * 60
            msgs = consumer.consume(num_messages=cfg.batch_size, timeout=cfg.flush_interval_s)
            frames = []
            kpis = []
            records = {}
            for m in msgs:
                take(m)
            if msgs:
                # database down: partitions paused, this batch retried until it is stored (or we stop)
                written = write_with_backpressure(
                    consumer, store, frames, kpis, records, take, stop, stats=stats, on_wait=while_paused
                )
                if written is None:
                    break  # stopping mid-outage: nothing committed, so the batch is read again next run
                commit(consumer)
                now_us = time.time() * 1e6
                for f in frames:
                    # scan time to durably stored: the end-to-end latency a user of the store sees
                    stats.observe("e2e_latency_ms", (now_us - f["scan_time"]) / 1000)
                stats.add("frames_stored", written["frames"])
                stats.add("samples_stored", written["samples"])
                stats.add("kpi_windows_stored", written["kpi_windows"])
                for kind in kind_of.values():
                    stats.add(f"{kind}s_stored", written.get(kind, 0))
                stats.add("rows_stored", sum(v for k, v in written.items() if k != "frames"))
                stats.add("messages_in", len(msgs))
            lag.maybe_refresh()
            stats.flush()
    finally:
        consumer.close()
        store.close()
        stats.flush()


def main(settings: Settings, instance: int = 1) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_storage_sink(settings, stop, instance=instance)
