"""PostgreSQL storage: the SQLite store's tables and natural keys, written with COPY, partitioned by time.

Each batch is one transaction: COPY into per-session temporary staging tables, then
INSERT ... SELECT ... ON CONFLICT DO NOTHING into the real tables, so a redelivered message never
duplicates a row and the returned counts are the rows actually inserted. KPI and OEE windows are
upserted by `revision` instead: a correction after late data replaces the stored row.

Timestamps arrive as integer UTC microseconds (as everywhere in plantstream) and are stored as
`timestamptz` here, converted in SQL (`'epoch' + n microseconds`, exact); the SQLite store keeps the
integers. Readers of PostgreSQL get real timestamps and time functions; readers of SQLite divide by 1e6.

Layout: with the timescaledb extension available, hypertables (daily or monthly chunks) with a
compression policy on the high-volume tables; otherwise native range partitions per day (frames,
samples, anomaly_scores) or month (kpi_windows, oee_windows, alerts), created on demand before each
batch. Retention drops whole expired partitions (or chunks), so it costs no row-by-row deletes; a
partition goes once its whole range is older than the retention, so rows live up to one period longer.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from plantstream.core import logs
from plantstream.core.config import PostgresSettings, RetentionSettings
from sinks.batch import Batch
from sinks.stores.base import StoreUnavailable
from sinks.stores.rows import flatten, newest_revisions, sample_time_range

log = logs.get(__name__)

DAY_US = 86_400_000_000
# advisory lock ids (arbitrary constants): schema migrations, partition DDL
LOCK_MIGRATE = 0x706C_6D01
LOCK_PARTITIONS = 0x706C_6D02

Period = Literal["day", "month"]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type); timestamptz columns are fed int microseconds
    key: tuple[str, ...]
    time_column: str
    period: Period
    retention: str  # the RetentionSettings field that bounds this table's age

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


FRAMES = Table(
    "frames",
    (
        ("producer_id", "text"),
        ("device", "text"),
        ("seq", "bigint"),
        ("asset", "text"),
        ("scan_time", "timestamptz"),
        ("n_samples", "integer"),
        ("historical", "boolean"),
        ("buffered", "boolean"),
    ),
    # scan_time is in the key because a partitioned table's keys must hold the partition column;
    # a redelivered frame carries the same scan_time, so (producer_id, device, seq) stays unique in practice
    ("producer_id", "device", "seq", "scan_time"),
    "scan_time",
    "day",
    "frames_days",
)
SAMPLES = Table(
    "samples",
    (
        ("asset", "text"),
        ("tag", "text"),
        ("ts", "timestamptz"),
        ("value_num", "double precision"),
        ("value_text", "text"),
        ("quality", "smallint"),
    ),
    ("asset", "tag", "ts"),
    "ts",
    "day",
    "samples_days",
)
KPI_WINDOWS = Table(
    "kpi_windows",
    (
        ("asset", "text"),
        ("tag", "text"),
        ("window_start", "timestamptz"),
        ("window_end", "timestamptz"),
        ("unit", "text"),
        ("count", "bigint"),
        ("bad_count", "bigint"),
        ("min", "double precision"),
        ("max", "double precision"),
        ("mean", "double precision"),
        ("stddev", "double precision"),
        ("first", "double precision"),
        ("last", "double precision"),
        ("first_time", "timestamptz"),
        ("last_time", "timestamptz"),
        ("time_weighted_avg", "double precision"),
        ("rate_of_change", "double precision"),
        ("revision", "bigint"),
        ("data_coverage", "double precision"),
    ),
    ("asset", "tag", "window_start", "window_end"),
    "window_start",
    "month",
    "aggregates_days",
)
OEE_WINDOWS = Table(
    "oee_windows",
    (
        ("asset", "text"),
        ("window_start", "timestamptz"),
        ("window_end", "timestamptz"),
        ("shift", "text"),
        ("planned_busy_time_s", "double precision"),
        ("actual_production_time_s", "double precision"),
        ("produced_quantity", "double precision"),
        ("good_quantity", "double precision"),
        ("scrap_quantity", "double precision"),
        ("availability", "double precision"),
        ("effectiveness", "double precision"),
        ("quality_ratio", "double precision"),
        ("oee", "double precision"),
        ("scrap_ratio", "double precision"),
        ("failures", "bigint"),
        ("mtbf_s", "double precision"),
        ("mttr_s", "double precision"),
        ("downtime_by_reason_s", "jsonb"),
        ("revision", "bigint"),
        ("data_coverage", "double precision"),
    ),
    ("asset", "window_start", "window_end"),
    "window_start",
    "month",
    "aggregates_days",
)
ANOMALY_SCORES = Table(
    "anomaly_scores",
    (
        ("asset", "text"),
        ("time", "timestamptz"),
        ("model", "text"),
        ("score", "double precision"),
        ("threshold", "double precision"),
        ("is_anomaly", "boolean"),
        ("warming_up", "boolean"),
        ("contributions", "jsonb"),
    ),
    ("asset", "time", "model"),
    "time",
    "day",
    "anomaly_scores_days",
)
ALERTS = Table(
    "alerts",
    (
        ("alert_id", "text"),
        ("asset", "text"),
        ("rule", "text"),
        ("kind", "text"),
        ("state", "text"),
        ("severity", "text"),
        ("time", "timestamptz"),
        ("message", "text"),
        ("tags", "text[]"),
        ("value", "double precision"),
    ),
    ("alert_id", "state", "time"),
    "time",
    "month",
    "alerts_days",
)
ALARM_EVENTS = Table(
    "alarm_events",
    (
        ("event_id", "text"),
        ("alarm", "text"),
        ("asset", "text"),
        ("rule", "text"),
        ("time", "timestamptz"),
        ("event", "text"),
        ("from_state", "text"),
        ("to_state", "text"),
        ("user", "text"),
        ("comment", "text"),
        ("command_id", "text"),
        ("reason", "text"),
        ("alert_id", "text"),
        ("severity", "text"),
    ),
    # time is in the key because a partitioned table's keys must hold the partition column; an event
    # emitted again carries the same time
    ("event_id", "time"),
    "time",
    "month",
    "alerts_days",
)
TABLES = {t.name: t for t in (FRAMES, SAMPLES, KPI_WINDOWS, OEE_WINDOWS, ANOMALY_SCORES, ALERTS, ALARM_EVENTS)}
# write_records(kind, ...) accepts the record kinds the processors emit
RECORD_KINDS = {
    "kpi_window": KPI_WINDOWS,
    "oee_window": OEE_WINDOWS,
    "anomaly_score": ANOMALY_SCORES,
    "alert": ALERTS,
    "alarm_event": ALARM_EVENTS,
}


# --- connection settings ------------------------------------------------------------------------


def conninfo(cfg: PostgresSettings) -> str:
    """libpq conninfo from the settings; `dsn` wins, `password` is added to it when set."""
    password = cfg.password.get_secret_value() if cfg.password else None
    extra = {"password": password} if password else {}
    if cfg.dsn is not None and cfg.dsn.get_secret_value():
        return make_conninfo(cfg.dsn.get_secret_value(), **extra)
    return make_conninfo(host=cfg.host, port=cfg.port, dbname=cfg.dbname, user=cfg.user, **extra)


def where(info: str) -> str:
    """host:port/dbname of a conninfo, for messages (no user, no password)."""
    d = conninfo_to_dict(info)
    return f"{d.get('host') or d.get('hostaddr') or 'localhost'}:{d.get('port') or 5432}/{d.get('dbname') or ''}"


# --- partitions (pure) --------------------------------------------------------------------------


def period_of(us: int, period: Period) -> str:
    """Partition suffix of a timestamp: YYYYMMDD for daily, YYYYMM for monthly partitions."""
    d = datetime.fromtimestamp((us // DAY_US) * 86_400, tz=UTC)
    return d.strftime("%Y%m%d" if period == "day" else "%Y%m")


def period_bounds(suffix: str) -> tuple[datetime, datetime]:
    """[start, end) of a partition suffix made by period_of."""
    if len(suffix) == 8:
        start = datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC)
        return start, datetime.fromtimestamp(start.timestamp() + 86_400, tz=UTC)
    start = datetime.strptime(suffix, "%Y%m").replace(tzinfo=UTC)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def expired(suffix: str, cutoff: datetime) -> bool:
    return period_bounds(suffix)[1] <= cutoff


# --- DDL ------------------------------------------------------------------------------------------


def compress_segmentby(t: Table) -> str:
    """TimescaleDB compresses a chunk per segment: the series identity (key minus time and the per-record
    `seq`), so each segment holds many rows of one series. A unique column there would compress nothing."""
    return ", ".join(c for c in t.key if c not in (t.time_column, "seq"))


def _create_table(cur: psycopg.Cursor[Any], t: Table, timescale: bool) -> None:
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(typ)) for c, typ in t.columns)
    key = sql.SQL(", ").join(map(sql.Identifier, t.key))
    part = sql.SQL("") if timescale else sql.SQL(" PARTITION BY RANGE ({})").format(sql.Identifier(t.time_column))
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})){}").format(
            sql.Identifier(t.name), cols, key, part
        )
    )
    if not timescale:
        return
    chunk = "1 day" if t.period == "day" else "30 days"
    cur.execute(
        "SELECT create_hypertable(%s, %s, chunk_time_interval => %s::interval, if_not_exists => true)",
        (t.name, t.time_column, chunk),
    )
    if t.period == "day":  # the high-volume tables: compress chunks a week old, by series
        segment = compress_segmentby(t)
        cur.execute(
            sql.SQL("ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {})").format(
                sql.Identifier(t.name), sql.Literal(segment)
            )
        )
        cur.execute("SELECT add_compression_policy(%s, interval '7 days', if_not_exists => true)", (t.name,))


def _migration_1(cur: psycopg.Cursor[Any], timescale: bool) -> None:
    for t in (FRAMES, SAMPLES, KPI_WINDOWS):
        _create_table(cur, t, timescale)


def _migration_2(cur: psycopg.Cursor[Any], timescale: bool) -> None:
    for t in (OEE_WINDOWS, ANOMALY_SCORES, ALERTS):
        _create_table(cur, t, timescale)


def _migration_3(cur: psycopg.Cursor[Any], timescale: bool) -> None:
    # IF NOT EXISTS: a database made by this version got the columns from migrations 1 and 2 already
    for t in (KPI_WINDOWS, OEE_WINDOWS):
        cur.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0, "
                "ADD COLUMN IF NOT EXISTS data_coverage double precision"
            ).format(sql.Identifier(t.name))
        )
    _create_table(cur, ALARM_EVENTS, timescale)


# append only: a deployed migration never changes, a new one gets the next number
MIGRATIONS: list[tuple[int, str, Callable[[psycopg.Cursor[Any], bool], None]]] = [
    (1, "frames, samples, kpi_windows", _migration_1),
    (2, "oee_windows, anomaly_scores, alerts", _migration_2),
    (3, "revision and data_coverage of kpi and oee windows, alarm_events", _migration_3),
]


def _staging_ddl(t: Table) -> sql.Composed:
    def stage_type(typ: str) -> str:
        return {"timestamptz": "bigint", "jsonb": "text"}.get(typ, typ)

    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(stage_type(typ))) for c, typ in t.columns
    )
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(f"stage_{t.name}"), cols
    )


def _insert_sql(t: Table) -> sql.Composed:
    def expr(c: str, typ: str) -> sql.Composable:
        if typ == "timestamptz":  # exact: integer microseconds as an interval
            return sql.SQL("timestamptz 'epoch' + {} * interval '1 microsecond'").format(sql.Identifier(c))
        if typ == "jsonb":
            return sql.SQL("{}::jsonb").format(sql.Identifier(c))
        return sql.Identifier(c)

    conflict: sql.Composable
    if "revision" in t.column_names:
        # a correction after late data replaces the stored row; a redelivered or older revision does not
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {} WHERE EXCLUDED.revision > {}.revision").format(
            sql.SQL(", ").join(map(sql.Identifier, t.key)),
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in t.column_names
                if c not in t.key
            ),
            sql.Identifier(t.name),
        )
    else:
        conflict = sql.SQL("ON CONFLICT DO NOTHING")
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
        sql.Identifier(t.name),
        sql.SQL(", ").join(map(sql.Identifier, t.column_names)),
        sql.SQL(", ").join(expr(c, typ) for c, typ in t.columns),
        sql.Identifier(f"stage_{t.name}"),
        conflict,
    )


def record_row(t: Table, r: Mapping[str, Any]) -> tuple[Any, ...]:
    """A decoded Avro record as a staging row: maps as JSON text, the rest as decoded (a record from before
    revisions existed is revision 0)."""
    return tuple(
        json.dumps(r.get(c) or {}, sort_keys=True)
        if typ == "jsonb"
        else int(r.get(c) or 0)
        if c == "revision"
        else r.get(c)
        for c, typ in t.columns
    )


def staged_records(t: Table, records: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Staging rows of decoded records; a revised table gets one row per key (the highest revision), as one
    INSERT ... ON CONFLICT DO UPDATE may not touch a row twice."""
    if "revision" in t.column_names:
        records = newest_revisions(records, t.key)
    return [record_row(t, r) for r in records]


class PostgresStore:
    def __init__(self, info: str, connect_timeout_s: float = 5.0) -> None:
        self.info = info
        self.where = where(info)
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._known_partitions: set[str] = set()
        self.timescale = False
        self.migrated_now: list[int] = []
        self._run(self._migrate)

    # --- connection -----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        conn = psycopg.connect(
            self.info,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name="plantstream-sink",
        )
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor() as cur:  # temporary tables live as long as the session: again on each reconnect
            for t in TABLES.values():
                cur.execute(_staging_ddl(t))
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _run(self, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """fn on a live connection; the server down or gone mid-transaction becomes StoreUnavailable."""
        try:
            return fn(self._connection())
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            self._drop_connection()
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreUnavailable(
                f"PostgreSQL at {self.where} is unreachable ({reason}). Fix: start the server, or point "
                "pipeline.storage.postgres (host/port/dbname/user or dsn) at a running one"
            ) from e

    # --- schema ---------------------------------------------------------------------------------

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            # two sinks starting together: the second waits here, then finds the versions applied
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}
            timescale = self._timescale_available(conn, cur) if 1 not in done else False
            self.migrated_now = []
            for version, name, fn in MIGRATIONS:
                if version in done:
                    continue
                fn(cur, timescale)
                cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                self.migrated_now.append(version)
            row = cur.execute("SELECT relkind FROM pg_class WHERE oid = 'samples'::regclass").fetchone()
            self.timescale = row is not None and row[0] != "p"

    @staticmethod
    def _timescale_available(conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any]) -> bool:
        if cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
            return False
        try:
            with conn.transaction():  # a savepoint: not preloaded means fall back to native partitions
                cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return True
        except psycopg.errors.Error as e:
            log.warning("timescaledb is installed but cannot be enabled (%s); using native partitions", e)
            return False

    def migrations(self) -> list[int]:
        return self._run(lambda c: [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY version")])

    def partitions(self, table: str) -> list[str]:
        """Names of a table's partitions, oldest first (native layout)."""
        q = (
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname"
        )
        return self._run(lambda c: [r[0] for r in c.execute(q, (TABLES[table].name,))])

    def _ensure_partitions(self, conn: psycopg.Connection[Any], needed: dict[Table, set[str]]) -> None:
        missing = [(t, p) for t, ps in needed.items() for p in ps if f"{t.name}_p{p}" not in self._known_partitions]
        if self.timescale or not missing:
            return
        # DDL in its own short transaction, so the batch transaction never holds the parent's DDL lock
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
            for t, p in missing:
                start, end = period_bounds(p)
                cur.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(f"{t.name}_p{p}"),
                        sql.Identifier(t.name),
                        sql.Literal(start.isoformat()),
                        sql.Literal(end.isoformat()),
                    )
                )
        self._known_partitions.update(f"{t.name}_p{p}" for t, p in missing)

    # --- writes -----------------------------------------------------------------------------------

    def _write_tables(self, batches: list[tuple[Table, list[tuple[Any, ...]], set[str]]]) -> list[int]:
        needed: dict[Table, set[str]] = {}
        for t, _, periods in batches:
            needed.setdefault(t, set()).update(periods)

        def go(conn: psycopg.Connection[Any]) -> list[int]:
            self._ensure_partitions(conn, needed)
            counts = []
            with conn.transaction(), conn.cursor() as cur:
                for t, rows, _ in batches:
                    if not rows:
                        counts.append(0)
                        continue
                    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(f"stage_{t.name}"), sql.SQL(", ").join(map(sql.Identifier, t.column_names))
                    )
                    with cur.copy(copy_sql) as cp:
                        for r in rows:
                            cp.write_row(r)
                    cur.execute(_insert_sql(t))
                    counts.append(max(cur.rowcount, 0))
            return counts

        try:
            return list(self._run(go))
        except psycopg.errors.CheckViolation:
            # another sink's retention dropped a partition we thought was there: learn again, retry once
            self._known_partitions.clear()
            return list(self._run(go))

    def write(self, batch: Batch) -> dict[str, int]:
        """Store a batch in one transaction; returns the rows actually inserted per table."""
        frame_rows, sample_rows = flatten(batch.frames)
        frame_days = {r[4] // DAY_US for r in frame_rows}
        sample_days: set[int] = set()  # per frame, not per sample: the columns' time range is known
        for f in batch.frames:
            lo, hi = sample_time_range(f)
            sample_days.update(range(lo // DAY_US, hi // DAY_US + 1))
        kpi_rows = staged_records(KPI_WINDOWS, batch.kpi_windows)
        records = batch.results()
        extra = []
        for kind, recs in records.items():
            t = RECORD_KINDS[kind]
            rows = staged_records(t, recs)
            i = t.column_names.index(t.time_column)
            extra.append((t, rows, {period_of(r[i], t.period) for r in rows}))
        n_frames, n_samples, n_kpi, *n_extra = self._write_tables(
            [
                (FRAMES, frame_rows, {period_of(d * DAY_US, "day") for d in frame_days}),
                (SAMPLES, sample_rows, {period_of(d * DAY_US, "day") for d in sample_days}),
                (KPI_WINDOWS, kpi_rows, {period_of(k[2], "month") for k in kpi_rows}),
                *extra,
            ]
        )
        out = {"frames": n_frames, "samples": n_samples, "kpi_windows": n_kpi}
        out.update({kind: n for kind, n in zip(records, n_extra, strict=True)})
        return out

    def write_records(self, kind: str, records: Iterable[dict[str, Any]]) -> int:
        """Store decoded kpi_window, oee_window, anomaly_score or alert records; returns rows inserted."""
        if kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {kind!r}; use one of {sorted(RECORD_KINDS)}")
        t = RECORD_KINDS[kind]
        rows = staged_records(t, records)
        i = t.column_names.index(t.time_column)
        return self._write_tables([(t, rows, {period_of(r[i], t.period) for r in rows})])[0]

    # --- retention --------------------------------------------------------------------------------

    def apply_retention(self, retention: RetentionSettings, now_us: int | None = None) -> dict[str, int]:
        """Drop the partitions (chunks) wholly older than each table's retention; returns how many per table."""
        now = datetime.now(UTC) if now_us is None else datetime.fromtimestamp(now_us / 1e6, tz=UTC)
        dropped: dict[str, int] = {}
        for t in TABLES.values():
            days = _retention_days(retention, t.retention)
            if not days:
                continue
            cutoff = datetime.fromtimestamp(now.timestamp() - days * 86_400, tz=UTC)
            dropped[t.name] = self._run(functools.partial(self._drop_expired, table=t, cutoff=cutoff))
        return dropped

    def _drop_expired(self, conn: psycopg.Connection[Any], table: Table, cutoff: datetime) -> int:
        t = table
        with conn.transaction(), conn.cursor() as cur:
            if self.timescale:
                return len(cur.execute("SELECT drop_chunks(%s, older_than => %s)", (t.name, cutoff)).fetchall())
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
            names = [
                r[0]
                for r in cur.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = %s::regclass",
                    (t.name,),
                )
            ]
            prefix = f"{t.name}_p"
            old = [n for n in names if n.startswith(prefix) and expired(n[len(prefix) :], cutoff)]
            for n in old:
                cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(n)))
            self._known_partitions.difference_update(old)
            return len(old)

    # --- reads ------------------------------------------------------------------------------------

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; use one of {sorted(TABLES)}")
        q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        return int(self._run(lambda c: c.execute(q).fetchone())[0])

    def close(self) -> None:
        self._drop_connection()


def _retention_days(r: RetentionSettings, field: str) -> int:
    if field == "frames_days":
        return r.samples_days if r.frames_days is None else r.frames_days
    return int(getattr(r, field))
