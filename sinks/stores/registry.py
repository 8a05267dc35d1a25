"""Open the storage backend the config names; retry, backpressure and retention around any Store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message

from plantstream.core import logs
from plantstream.core.config import RetentionSettings, Settings
from plantstream.core.runstats import RunStats
from sinks.stores.base import Store, StoreUnavailable
from sinks.stores.postgres import PostgresStore, conninfo, where
from sinks.stores.sqlite import SqliteStore

log = logs.get(__name__)


def sqlite_path(settings: Settings) -> Path:
    p = Path(settings.pipeline.storage.sqlite_path).expanduser()
    return p if p.is_absolute() else settings.state_path(str(p))


def open_store(settings: Settings) -> Store:
    """The store `pipeline.storage.kind` names, migrated and ready; StoreUnavailable if its server is down."""
    cfg = settings.pipeline.storage
    if cfg.kind == "postgres":
        return PostgresStore(conninfo(cfg.postgres), connect_timeout_s=cfg.postgres.connect_timeout_s)
    return SqliteStore(sqlite_path(settings))


def describe(settings: Settings) -> str:
    """Where the store is, for log lines; never includes a password."""
    cfg = settings.pipeline.storage
    if cfg.kind == "postgres":
        return f"postgresql://{where(conninfo(cfg.postgres))}"
    return str(sqlite_path(settings))


# --- the sink's side of an outage: backpressure, not data loss ------------------------------------


def open_with_retry(settings: Settings, stop: threading.Event, max_backoff_s: float = 30.0) -> Store | None:
    """open_store, retried with backoff while the database is down; None when stopped first."""
    backoff = 0.5
    while not stop.is_set():
        try:
            return open_store(settings)
        except StoreUnavailable as e:
            log.error("%s; retrying in %.1f s", e, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_s)
    return None


def _pause_all(consumer: Consumer) -> None:
    assigned = consumer.assignment()
    if assigned:
        consumer.pause(assigned)


def write_with_backpressure(
    consumer: Consumer,
    store: Store,
    frames: list[dict[str, Any]],
    kpis: list[dict[str, Any]],
    records: dict[str, list[dict[str, Any]]],
    take: Callable[[Message], None],
    stop: threading.Event,
    max_backoff_s: float = 30.0,
    stats: RunStats | None = None,
    on_wait: Callable[[], object] | None = None,
) -> dict[str, int] | None:
    """store.write, retried until the database is back; None if stopped first (nothing committed).

    While the database is down every assigned partition is paused, so nothing more is read, but the
    consumer keeps polling: librdkafka needs poll() to stay in the group (else it is evicted after
    max.poll.interval.ms and the batch is redelivered to someone else). A record that still arrives
    (a partition assigned in a rebalance meanwhile) goes into this batch via `take`, so none is lost.

    With `stats`: `store_batch_ms` (each successful write), `store_paused` (1 during an outage) and
    `store_outages`; `on_wait` runs about once a second while paused (the sink refreshes its lag there).
    """
    backoff = 0.5
    paused_at: float | None = None
    try:
        while True:
            try:
                t0 = time.perf_counter()
                written = store.write(frames, kpis, records)
                if stats is not None:
                    stats.observe("store_batch_ms", (time.perf_counter() - t0) * 1000)
                if paused_at is not None:
                    log.warning(
                        "database available again after %.1f s; batch stored, consuming resumed",
                        time.monotonic() - paused_at,
                    )
                return written
            except StoreUnavailable as e:
                if paused_at is None:
                    paused_at = time.monotonic()
                    if stats is not None:
                        stats.add("store_outages")
                        stats.put("store_paused", 1)
                        stats.flush()
                    log.error("%s. Consuming paused (backpressure); the batch is kept and retried, nothing is lost", e)
                else:
                    log.warning("still unreachable after %.0f s: %s", time.monotonic() - paused_at, e)
                _pause_all(consumer)
            deadline = time.monotonic() + backoff
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                m = consumer.poll(min(left, 1.0))
                if m is not None:
                    take(m)
                    _pause_all(consumer)
                if on_wait is not None:
                    on_wait()
            if stop.is_set():
                return None
            backoff = min(backoff * 2, max_backoff_s)
    finally:
        if paused_at is not None and stats is not None:
            stats.put("store_paused", 0)
        if paused_at is not None:
            assigned = consumer.assignment()
            if assigned:
                consumer.resume(assigned)


def run_retention(store: Store, retention: RetentionSettings) -> dict[str, int]:
    """One retention pass; an unreachable database only postpones it to the next pass."""
    try:
        removed = store.apply_retention(retention)
    except StoreUnavailable as e:
        log.warning("retention pass skipped: %s", e)
        return {}
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed
