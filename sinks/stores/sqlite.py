"""SQLite storage (the embedded default): samples, frames and KPI windows with natural keys.

Every table has the record's natural key as its primary key, so a redelivered message (at-least-once
processing, a sink killed before committing its offsets) changes nothing: frames, samples, alerts and
alarm events are insert-or-ignore; KPI and OEE windows are upserted by `revision`, so a correction
after late data replaces the first result and a redelivered older revision changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from plantstream.core.config import RetentionSettings
from sinks.batch import Batch
from sinks.stores.base import StoreUnavailable
from sinks.stores.rows import flatten, newest_revisions, revised_columns

MIGRATIONS: list[str] = [
    # 1: the thin path's tables
    """
    CREATE TABLE frames (
        producer_id TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,
        asset TEXT NOT NULL, scan_time INTEGER NOT NULL, n_samples INTEGER NOT NULL,
        historical INTEGER NOT NULL, buffered INTEGER NOT NULL,
        PRIMARY KEY (producer_id, device, seq)
    ) WITHOUT ROWID;
    CREATE TABLE samples (
        asset TEXT NOT NULL, tag TEXT NOT NULL, ts INTEGER NOT NULL,
        value_num REAL, value_text TEXT, quality INTEGER NOT NULL,
        PRIMARY KEY (asset, tag, ts)
    ) WITHOUT ROWID;
    CREATE TABLE kpi_windows (
        asset TEXT NOT NULL, tag TEXT NOT NULL, window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
        unit TEXT, count INTEGER, bad_count INTEGER, min REAL, max REAL, mean REAL, stddev REAL,
        first REAL, last REAL, first_time INTEGER, last_time INTEGER, time_weighted_avg REAL,
        rate_of_change REAL,
        PRIMARY KEY (asset, tag, window_start, window_end)
    ) WITHOUT ROWID;
    CREATE VIEW samples_readable AS
        SELECT asset, tag, ts, strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1e6, 'unixepoch') AS time,
               COALESCE(value_num, value_text) AS value,
               CASE quality WHEN 0 THEN 'GOOD' WHEN 1 THEN 'UNCERTAIN' ELSE 'BAD' END AS quality
        FROM samples;
    """,
    # 2: time indexes, so retention deletes find expired rows without a full scan (samples needs none:
    # retention walks its primary key series by series, and an index on ts would cost ~15% of write speed)
    """
    CREATE INDEX frames_by_scan_time ON frames (scan_time);
    CREATE INDEX kpi_windows_by_start ON kpi_windows (window_start);
    """,
    # 3: the processors' other results, natural keys as documented in their schemas
    """
    CREATE TABLE oee_windows (
        asset TEXT NOT NULL, window_start INTEGER NOT NULL, window_end INTEGER NOT NULL, shift TEXT,
        planned_busy_time_s REAL, actual_production_time_s REAL, produced_quantity REAL, good_quantity REAL,
        scrap_quantity REAL, availability REAL, effectiveness REAL, quality_ratio REAL, oee REAL, scrap_ratio REAL,
        failures INTEGER, mtbf_s REAL, mttr_s REAL, downtime_by_reason_s TEXT,
        PRIMARY KEY (asset, window_start, window_end)
    ) WITHOUT ROWID;
    CREATE TABLE anomaly_scores (
        asset TEXT NOT NULL, time INTEGER NOT NULL, model TEXT NOT NULL, score REAL, threshold REAL,
        is_anomaly INTEGER, warming_up INTEGER, contributions TEXT,
        PRIMARY KEY (asset, time, model)
    ) WITHOUT ROWID;
    CREATE TABLE alerts (
        alert_id TEXT NOT NULL, asset TEXT NOT NULL, rule TEXT, kind TEXT, state TEXT NOT NULL, severity TEXT,
        time INTEGER NOT NULL, message TEXT, tags TEXT, value REAL,
        PRIMARY KEY (alert_id, state, time)
    ) WITHOUT ROWID;
    CREATE INDEX oee_windows_start ON oee_windows (window_start);
    CREATE INDEX anomaly_scores_time ON anomaly_scores (time);
    CREATE INDEX alerts_time ON alerts (time);
    """,
    # 4: corrections after late data (the newest revision of a window stands), data coverage, the alarm
    # lifecycle's audit trail
    """
    ALTER TABLE kpi_windows ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE kpi_windows ADD COLUMN data_coverage REAL;
    ALTER TABLE oee_windows ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE oee_windows ADD COLUMN data_coverage REAL;
    CREATE TABLE alarm_events (
        event_id TEXT NOT NULL, alarm TEXT NOT NULL, asset TEXT NOT NULL, rule TEXT NOT NULL, time INTEGER NOT NULL,
        event TEXT NOT NULL, from_state TEXT, to_state TEXT, user TEXT, comment TEXT, command_id TEXT, reason TEXT,
        alert_id TEXT, severity TEXT,
        PRIMARY KEY (event_id)
    ) WITHOUT ROWID;
    CREATE INDEX alarm_events_time ON alarm_events (time);
    CREATE INDEX alarm_events_alarm ON alarm_events (alarm, time);
    """,
]

# table -> (time column, RetentionSettings field); frames follow samples unless set
RETENTION = {
    "samples": ("ts", "samples_days"),
    "frames": ("scan_time", "frames_days"),
    "kpi_windows": ("window_start", "aggregates_days"),
}
RETENTION_BATCH = 5000  # rows per delete transaction, so the sink's writes never wait long

# columns of the other result tables, in table order; maps and lists are stored as JSON text
RECORD_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "oee_window": (
        "oee_windows",
        (
            "asset",
            "window_start",
            "window_end",
            "shift",
            "planned_busy_time_s",
            "actual_production_time_s",
            "produced_quantity",
            "good_quantity",
            "scrap_quantity",
            "availability",
            "effectiveness",
            "quality_ratio",
            "oee",
            "scrap_ratio",
            "failures",
            "mtbf_s",
            "mttr_s",
            "downtime_by_reason_s",
            "revision",
            "data_coverage",
        ),
    ),
    "anomaly_score": (
        "anomaly_scores",
        ("asset", "time", "model", "score", "threshold", "is_anomaly", "warming_up", "contributions"),
    ),
    "alert": ("alerts", ("alert_id", "asset", "rule", "kind", "state", "severity", "time", "message", "tags", "value")),
    "alarm_event": (
        "alarm_events",
        (
            "event_id",
            "alarm",
            "asset",
            "rule",
            "time",
            "event",
            "from_state",
            "to_state",
            "user",
            "comment",
            "command_id",
            "reason",
            "alert_id",
            "severity",
        ),
    ),
}
# kinds whose rows are revised, by natural key: the row with the higher revision stands
REVISED: dict[str, tuple[str, ...]] = {"oee_window": ("asset", "window_start", "window_end")}
KPI_KEY = ("asset", "tag", "window_start", "window_end")


def upsert_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """INSERT that replaces a stored row only with a higher revision of it (redeliveries change nothing)."""
    sets = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))}) "
        f"ON CONFLICT ({','.join(key)}) DO UPDATE SET {sets} WHERE excluded.revision > {table}.revision"
    )


def _cell(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


def _row(r: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    # a record from before revisions existed is revision 0
    return tuple(_cell(r.get(c)) if c != "revision" else int(r.get(c) or 0) for c in columns)


KPI_COLUMNS = (
    "asset",
    "tag",
    "window_start",
    "window_end",
    "unit",
    "count",
    "bad_count",
    "min",
    "max",
    "mean",
    "stddev",
    "first",
    "last",
    "first_time",
    "last_time",
    "time_weighted_avg",
    "rate_of_change",
    "revision",
    "data_coverage",
)


# SQLite result codes (the low byte of an extended code) that are conditions of the plant's machine,
# not of the data: the same batch succeeds once they pass, so the sink pauses instead of failing
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = 5, 6, 8, 10, 13, 14
TRANSIENT = {SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN}
BUSY_TIMEOUT_S = 5.0  # a lock held longer than this (a backup, an open sqlite3 shell) pauses the sink


def unavailable_reason(path: Path, e: sqlite3.Error) -> str | None:
    """The operator's message for a transient SQLite failure (naming the file and the fix); None if the
    error is not transient (a bug or a corrupt file, which retrying cannot fix)."""
    code = getattr(e, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    if base not in TRANSIENT:
        return None
    folder = path.parent
    if base in (SQLITE_BUSY, SQLITE_LOCKED):
        return (
            f"SQLite database {path} is locked by another connection for over {BUSY_TIMEOUT_S:.0f} s ({e}). Fix: "
            "end the other program's write transaction (an open sqlite3 shell, a backup or copy tool); readers "
            "never block the sink"
        )
    if base == SQLITE_FULL:
        return (
            f"SQLite database {path}: the disk is full ({e}). Fix: free space on the file system of {folder}, "
            "or shorten pipeline.storage.retention so the store stays within the disk"
        )
    if base in (SQLITE_READONLY, SQLITE_CANTOPEN):
        return (
            f"SQLite database {path} cannot be written ({e}). Fix: make {path}, its -wal/-shm files and the "
            f"folder {folder} writable by the sink's user, or set pipeline.storage.sqlite_path to a writable place"
        )
    return f"SQLite database {path}: I/O error ({e}). Fix: check the disk or share that holds {folder}"


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._unavailable_on_transient():
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            # WAL lets readers (dashboards, `sqlite3` in a terminal) query while the sink writes
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode each COMMIT syncs the log, so a transaction survives a power cut once COMMIT
            # returns - the sink commits its Kafka offsets right after (NORMAL may lose the last commits)
            self.db.execute("PRAGMA synchronous=FULL")
            # 64 MiB page cache (default 2 MiB): the samples key index outgrows the default at once, ~1.5x writes
            self.db.execute("PRAGMA cache_size=-65536")
            self.migrate()

    @contextlib.contextmanager
    def _unavailable_on_transient(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            reason = unavailable_reason(self.path, e)
            if reason is None:
                raise
            raise StoreUnavailable(reason) from e

    def migrate(self) -> int:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN")
            for stmt in filter(str.strip, script.split(";")):
                self.db.execute(stmt)
            self.db.execute(f"PRAGMA user_version={i}")
            self.db.execute("COMMIT")
        return len(MIGRATIONS)

    def write(self, batch: Batch) -> dict[str, int]:
        """Store a batch in one transaction; returns the rows actually inserted per table."""
        frame_rows, sample_rows = flatten(batch.frames)
        kpi_rows = [revised_columns(k, KPI_COLUMNS) for k in newest_revisions(batch.kpi_windows, KPI_KEY)]
        with self._unavailable_on_transient():
            return self._write_rows(frame_rows, sample_rows, kpi_rows, batch.results())

    def _write_rows(
        self,
        frame_rows: Sequence[tuple[Any, ...]],
        sample_rows: Sequence[tuple[Any, ...]],
        kpi_rows: list[tuple[Any, ...]],
        records: dict[str, list[Any]],
    ) -> dict[str, int]:
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            before = self.db.total_changes
            cur.executemany("INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?)", frame_rows)
            n_frames = self.db.total_changes - before
            before = self.db.total_changes
            cur.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?)", sample_rows)
            n_samples = self.db.total_changes - before
            before = self.db.total_changes
            cur.executemany(upsert_sql("kpi_windows", KPI_COLUMNS, KPI_KEY), kpi_rows)
            n_kpi = self.db.total_changes - before
            extra: dict[str, int] = {}
            for kind, recs in records.items():
                table, columns = RECORD_COLUMNS[kind]
                before = self.db.total_changes
                key = REVISED.get(kind)
                if key is not None:
                    recs = newest_revisions(recs, key)
                statement = (
                    upsert_sql(table, columns, key)
                    if key is not None
                    else f"INSERT OR IGNORE INTO {table} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
                )
                cur.executemany(statement, [_row(r, columns) for r in recs])
                extra[kind] = self.db.total_changes - before
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite itself rolls back on some errors (e.g. disk full)
                cur.execute("ROLLBACK")
            raise
        return {"frames": n_frames, "samples": n_samples, "kpi_windows": n_kpi, **extra}

    def apply_retention(self, retention: RetentionSettings, now_us: int | None = None) -> dict[str, int]:
        """Delete rows older than each table's retention in bounded batches; returns rows deleted per table."""
        with self._unavailable_on_transient():
            return self._apply_retention(retention, now_us)

    def _apply_retention(self, retention: RetentionSettings, now_us: int | None) -> dict[str, int]:
        now = time.time_ns() // 1000 if now_us is None else now_us
        deleted: dict[str, int] = {}
        for table, (col, field) in RETENTION.items():
            days = getattr(retention, field)
            if field == "frames_days" and days is None:
                days = retention.samples_days
            if not days:
                continue
            cutoff = now - int(days) * 86_400_000_000
            key = {"samples": "asset, tag, ts", "frames": "producer_id, device, seq"}.get(
                table, "asset, tag, window_start, window_end"
            )
            if table != "samples":
                deleted[table] = self._delete_batches(table, key, f"{col} < ?", (cutoff,))
                continue
            total, last = 0, ("", "")
            # one series at a time, each a range of the (asset, tag, ts) key: no scan, no extra index
            while row := self.db.execute(
                "SELECT asset, tag FROM samples WHERE (asset, tag) > (?, ?) ORDER BY asset, tag LIMIT 1", last
            ).fetchone():
                last = (row[0], row[1])
                total += self._delete_batches(table, key, "asset = ? AND tag = ? AND ts < ?", (*last, cutoff))
            deleted[table] = total
        return deleted

    def _delete_batches(self, table: str, key: str, where: str, args: tuple[Any, ...]) -> int:
        total = 0
        while True:
            n = self.db.execute(
                f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {where} LIMIT ?)",
                (*args, RETENTION_BATCH),
            ).rowcount
            total += n
            if n < RETENTION_BATCH:
                return total

    def count(self, table: str) -> int:
        if table not in ("frames", "samples", "kpi_windows", "oee_windows", "anomaly_scores", "alerts", "alarm_events"):
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self.db.close()
