"""The storage backends by name (`pipeline.storage.kind`), and opening, describing and retention around any Store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plantstream.core import logs
from plantstream.core.config import RetentionSettings, Settings
from sinks.stores.base import Store, StoreUnavailable
from sinks.stores.postgres import PostgresStore, conninfo, where
from sinks.stores.sqlite import SqliteStore

log = logs.get(__name__)


def sqlite_path(settings: Settings) -> Path:
    p = Path(settings.pipeline.storage.sqlite_path).expanduser()
    return p if p.is_absolute() else settings.state_path(str(p))


@dataclass(frozen=True)
class Backend:
    """How to open one kind of store from the settings, and say where it is (never with a password)."""

    open: Callable[[Settings], Store]
    where: Callable[[Settings], str]


def _open_sqlite(settings: Settings) -> Store:
    return SqliteStore(sqlite_path(settings))


def _open_postgres(settings: Settings) -> Store:
    pg = settings.pipeline.storage.postgres
    return PostgresStore(conninfo(pg), connect_timeout_s=pg.connect_timeout_s)


# `pipeline.storage.kind` -> backend: a new store is one module in sinks/stores/ and one line here
BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(_open_sqlite, lambda s: str(sqlite_path(s))),
    "postgres": Backend(_open_postgres, lambda s: f"postgresql://{where(conninfo(s.pipeline.storage.postgres))}"),
}


def backend(settings: Settings) -> Backend:
    kind = settings.pipeline.storage.kind
    found = BACKENDS.get(kind)
    if found is None:
        raise ValueError(f"pipeline.storage.kind {kind!r} is not a store. Fix: use one of {sorted(BACKENDS)}")
    return found


def open_store(settings: Settings) -> Store:
    """The store `pipeline.storage.kind` names, migrated and ready; StoreUnavailable if its server is down."""
    return backend(settings).open(settings)


def describe(settings: Settings) -> str:
    """Where the store is, for log lines; never includes a password."""
    return backend(settings).where(settings)


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
