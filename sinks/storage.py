"""`plantstream sink storage`: every topic into the configured store (SQLite or PostgreSQL), at least once.

The store is a Destination of the sink runner (sinks/runner.py): a batch is written in one
transaction, then its offsets are committed; the store's natural keys make a replayed batch a no-op.
An unreachable database pushes back (StoreUnavailable is Backpressure): consuming pauses, nothing is
lost. Retention runs at start and every `pipeline.storage.retention.interval_min`.
"""

from __future__ import annotations

import threading
import time

import schemas
from plantstream.core import logs, metrics, topics
from plantstream.core.config import RetentionSettings, Settings
from plantstream.core.runstats import RunStats, instance_name
from plantstream.core.shutdown import StopOnSignal
from sinks.batch import Batch
from sinks.runner import SinkRunner
from sinks.stores.base import Store
from sinks.stores.registry import describe, open_with_retry, run_retention
from sinks.stores.rows import scan_time

log = logs.get(__name__)

COMPONENT = "sink-storage"
# each store's count key -> the sink's counter of stored records
STORED = {
    "frames": "frames_stored",
    "samples": "samples_stored",
    "kpi_windows": "kpi_windows_stored",
    "oee_window": "oee_windows_stored",
    "anomaly_score": "anomaly_scores_stored",
    "alert": "alerts_stored",
    "alarm_event": "alarm_events_stored",
}


class StoreDestination:
    """A Store as the sink runner's destination: writes, retention between batches, counters."""

    def __init__(self, store: Store, retention: RetentionSettings) -> None:
        self.store = store
        self.retention = retention
        self._next_retention = 0.0  # a pass at start, then every retention.interval_min

    def write(self, batch: Batch) -> dict[str, int]:
        return self.store.write(batch)

    def maintain(self) -> None:
        if time.monotonic() >= self._next_retention:
            run_retention(self.store, self.retention)
            self._next_retention = time.monotonic() + self.retention.interval_min * 60

    def account(self, batch: Batch, written: dict[str, int], stats: RunStats) -> None:
        now_us = time.time() * 1e6
        for f in batch.frames:
            # scan time to durably stored: the end-to-end latency a user of the store sees
            stats.observe("e2e_latency_ms", (now_us - scan_time(f)) / 1000)
        for key, counter in STORED.items():
            stats.add(counter, written.get(key, 0))
        stats.add("rows_stored", sum(v for k, v in written.items() if k != "frames"))

    def close(self) -> None:
        self.store.close()


def schemas_by_topic(settings: Settings) -> dict[str, str]:
    return {
        settings.topic(topics.READINGS): schemas.READING_FRAME,
        settings.topic(topics.KPI): schemas.KPI_WINDOW,
        settings.topic(topics.OEE): schemas.OEE_WINDOW,
        settings.topic(topics.ANOMALIES): schemas.ANOMALY_SCORE,
        settings.topic(topics.ALERTS): schemas.ALERT,
        settings.topic(topics.ALARM_EVENTS): schemas.ALARM_EVENT,
    }


def run_storage_sink(
    settings: Settings, stop: threading.Event, stats: RunStats | None = None, instance: int = 1
) -> None:
    """Consume until `stop`; `instance`: which of several sinks in the group this is (its counters file)."""
    stats = stats or RunStats(instance_name(COMPONENT, instance), settings.pipeline.state_dir)
    metrics.serve(settings, stats)
    store = open_with_retry(settings, stop)  # database down at start: wait for it, read nothing yet
    if store is None:
        return
    cfg = settings.pipeline.storage
    log.info("storage sink writing to %s", describe(settings))
    runner = SinkRunner(
        settings,
        COMPONENT,
        schemas_by_topic(settings),
        StoreDestination(store, cfg.retention),
        stats,
        batch_size=cfg.batch_size,
        flush_interval_s=cfg.flush_interval_s,
        # the broker answers a fetch once 64 kB are there or after 100 ms: at high rates a few large fetches
        # a second instead of one per message batch the producers sent (broker CPU), at most 100 ms when quiet
        consumer_extra={"fetch.min.bytes": 65_536, "fetch.wait.max.ms": 100},
    )
    runner.run(stop)


def main(settings: Settings, instance: int = 1) -> None:
    stop = threading.Event()
    # a signal asks for an orderly stop, within a deadline: closing a consumer may wait for a broker that is gone
    StopOnSignal("the storage sink", settings.pipeline.shutdown_timeout_s).install().on_stop(stop.set)
    run_storage_sink(settings, stop, instance=instance)
