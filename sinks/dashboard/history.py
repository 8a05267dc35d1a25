"""History for a fresh page, read from the store the storage sink writes (SQLite or PostgreSQL).

Trends are downsampled in the database (min/max/avg per time bucket, one range scan of the samples key
per tag), so 24 h of 1 s samples become a few hundred points before they leave it. The readers open
their own read-only connections: SQLite in WAL mode lets them read while the sink writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plantstream.core import logs
from plantstream.core.config import Settings
from sinks.dashboard.viewmodel import merge_buckets, series_from_buckets

log = logs.get(__name__)


class Dialect:
    """SQLite keeps integer microseconds; PostgreSQL timestamptz (converted both ways in SQL)."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def col(self, name: str) -> str:
        return f"(extract(epoch from {name}) * 1000000)::bigint" if self.postgres else name

    def ts(self) -> str:
        """A time parameter compared with a time column."""
        return "to_timestamp(%s::bigint / 1000000.0)" if self.postgres else "?"

    def p(self) -> str:
        return "%s::bigint" if self.postgres else "?"

    def s(self) -> str:
        return "%s" if self.postgres else "?"

    def differs(self, a: str, b: str) -> str:
        """NULL-safe inequality."""
        return f"{a} IS DISTINCT FROM {b}" if self.postgres else f"{a} IS NOT {b}"


OEE_COLUMNS = (
    "asset",
    "window_start",
    "window_end",
    "shift",
    "availability",
    "effectiveness",
    "quality_ratio",
    "oee",
    "good_quantity",
    "produced_quantity",
    "downtime_by_reason_s",
)
OEE_ALL_COLUMNS = (
    *OEE_COLUMNS[:4],
    "planned_busy_time_s",
    "actual_production_time_s",
    *OEE_COLUMNS[4:],
)
ALERT_COLUMNS = ("alert_id", "asset", "rule", "kind", "state", "severity", "time", "message", "value")


def _json_map(v: Any) -> dict[str, float]:
    if v is None:
        return {}
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    return {str(k): float(x) for k, x in dict(v).items()}


class SqlHistory:
    """The queries, over a DB-API connection that `connect` opens (or None while the store does not exist)."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect) -> None:
        self._connect = connect
        self.d = dialect
        self._conn: Any = None
        self._lock = threading.Lock()

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    if self._conn is None:
                        return []
                cur = self._conn.execute(sql, args)
                return list(cur.fetchall())
            except Exception as e:  # no store yet, tables not created yet, server restarting: no history
                log.debug("history query failed (%s); showing none", e)
                self._drop()
                return []

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def trends(
        self, asset: str, tags: list[str], start_us: int, end_us: int, width_us: int, kpi_window_us: int | None = None
    ) -> dict[str, Any]:
        """min/max/avg per bucket and tag. With `kpi_window_us` no wider than a bucket, the processor's KPI
        windows (already min/max/mean per tag and window) stand in for the raw samples they cover, so a day
        of history reads ~1,440 rows per tag instead of ~86,400; raw samples fill in before the first and
        after the newest window (the still-open one)."""
        out = {}
        for tag in tags:
            kpi: list[tuple[Any, ...]] = []
            raw_ranges = [(start_us, end_us)]
            if kpi_window_us is not None and kpi_window_us <= width_us:
                kpi = self._kpi_buckets(asset, tag, start_us, end_us, width_us)
                if kpi:
                    first, last = min(r[5] for r in kpi), max(r[6] for r in kpi)
                    raw_ranges = [(start_us, first), (last, end_us)]
            raw = [self._raw_buckets(asset, tag, lo, hi, start_us, width_us) for lo, hi in raw_ranges if hi > lo]
            merged = merge_buckets([r[:5] for r in kpi], *raw)
            out[tag] = series_from_buckets(merged, start_us, width_us)
        return out

    def _raw_buckets(self, asset: str, tag: str, lo: int, hi: int, start_us: int, width_us: int) -> list[Any]:
        d = self.d
        # one key range: (asset, tag, ts) is the samples table's primary key
        sql = (
            f"SELECT ({d.col('ts')} - {d.p()}) / {d.p()} AS b, MIN(value_num), MAX(value_num), AVG(value_num), "
            f"COUNT(value_num) FROM samples WHERE asset = {d.s()} AND tag = {d.s()} "
            f"AND ts >= {d.ts()} AND ts < {d.ts()} GROUP BY b"
        )
        return self._rows(sql, (start_us, width_us, asset, tag, lo, hi))

    def _kpi_buckets(self, asset: str, tag: str, lo: int, hi: int, width_us: int) -> list[Any]:
        d = self.d
        ws, we = d.col("window_start"), d.col("window_end")
        sql = (
            f"SELECT ({ws} - {d.p()}) / {d.p()} AS b, MIN(min), MAX(max), SUM(mean * count) / SUM(count), SUM(count), "
            f"MIN({ws}), MAX({we}) FROM kpi_windows WHERE asset = {d.s()} AND tag = {d.s()} "
            f"AND window_start >= {d.ts()} AND window_end <= {d.ts()} AND count > 0 AND mean IS NOT NULL GROUP BY b"
        )
        return self._rows(sql, (lo, width_us, asset, tag, lo, hi))

    def anomaly(self, asset: str, start_us: int, end_us: int, width_us: int) -> dict[str, list[Any]]:
        d = self.d
        flag = "CASE WHEN is_anomaly THEN 1 ELSE 0 END" if d.postgres else "is_anomaly"
        warm = "CASE WHEN warming_up THEN 1 ELSE 0 END" if d.postgres else "warming_up"
        sql = (
            f"SELECT ({d.col('time')} - {d.p()}) / {d.p()} AS b, MAX(score), AVG(threshold), MAX({flag}), "
            f"MAX({warm}) FROM anomaly_scores WHERE asset = {d.s()} AND time >= {d.ts()} AND time < {d.ts()} "
            "GROUP BY b ORDER BY b"
        )
        out: dict[str, list[Any]] = {"t": [], "score": [], "threshold": [], "anomaly": [], "warming": []}
        for b, score, threshold, flagged, warming in self._rows(sql, (start_us, width_us, asset, start_us, end_us)):
            out["t"].append(start_us + int(b) * width_us)
            out["score"].append(score)
            out["threshold"].append(threshold)
            out["anomaly"].append(bool(flagged))
            out["warming"].append(bool(warming))
        return out

    def data_start(self, asset: str, tags: list[str], since_us: int) -> int | None:
        """The oldest sample or KPI window of the asset's trend tags since `since_us` (one index seek per tag)."""
        d = self.d
        found: list[int] = []
        for tag in tags[:8]:
            for sql in (
                f"SELECT MIN({d.col('ts')}) FROM samples WHERE asset = {d.s()} AND tag = {d.s()} AND ts >= {d.ts()}",
                f"SELECT MIN({d.col('window_start')}) FROM kpi_windows WHERE asset = {d.s()} AND tag = {d.s()} "
                f"AND window_start >= {d.ts()}",
            ):
                found += [int(r[0]) for r in self._rows(sql, (asset, tag, since_us)) if r[0] is not None]
        return min(found) if found else None

    def state_changes(
        self, asset: str, tag: str, t0: int, t1: int, gap_us: int
    ) -> tuple[list[tuple[int, Any, int | None]], tuple[int, Any] | None, int | None]:
        """The GOOD samples of a state tag over [t0, t1) that start something (a new value, or the first after a
        silence longer than `gap_us`) as (time, value, time of the sample before); the last GOOD sample before
        t0; and the newest sample time. Found in the database with LAG(), so a shift of 1 s samples stays
        there and only its change points travel."""
        d = self.d
        ts = d.col("ts")
        sql = (
            "SELECT ts, num, txt, prev_ts FROM ("
            f"SELECT {ts} AS ts, value_num AS num, value_text AS txt, LAG({ts}) OVER w AS prev_ts, "
            "LAG(value_num) OVER w AS pn, LAG(value_text) OVER w AS pt "
            f"FROM samples WHERE asset = {d.s()} AND tag = {d.s()} AND ts >= {d.ts()} AND ts < {d.ts()} "
            "AND quality = 0 WINDOW w AS (ORDER BY ts)) c "
            f"WHERE prev_ts IS NULL OR {d.differs('pn', 'num')} OR {d.differs('pt', 'txt')} OR ts - prev_ts > {d.p()} "
            "ORDER BY ts"
        )
        rows = [
            (int(t), num if num is not None else txt, None if p is None else int(p))
            for t, num, txt, p in self._rows(sql, (asset, tag, t0, t1, gap_us))
        ]
        sql = (
            f"SELECT {ts}, value_num, value_text FROM samples WHERE asset = {d.s()} AND tag = {d.s()} "
            f"AND ts < {d.ts()} AND ts >= {d.ts()} AND quality = 0 ORDER BY ts DESC LIMIT 1"
        )
        got = self._rows(sql, (asset, tag, t0, t0 - 7 * 86_400 * 1_000_000))
        before = (int(got[0][0]), got[0][1] if got[0][1] is not None else got[0][2]) if got else None
        sql = f"SELECT MAX({ts}) FROM samples WHERE asset = {d.s()} AND tag = {d.s()} AND ts >= {d.ts()}"
        last = self._rows(sql, (asset, tag, t0))
        return rows, before, int(last[0][0]) if last and last[0][0] is not None else None

    def value_since(self, asset: str, tag: str, before_us: int, value: Any, lookback_us: int) -> int | None:
        """When the tag last took `value` after holding another one, looking back from `before_us`
        (None: it held `value` for the whole lookback)."""
        d = self.d
        ts = d.col("ts")
        col = "value_text" if isinstance(value, str) else "value_num"
        sql = (
            f"SELECT MAX({ts}) FROM samples WHERE asset = {d.s()} AND tag = {d.s()} AND ts < {d.ts()} "
            f"AND ts >= {d.ts()} AND quality = 0 AND {d.differs(col, d.s())}"
        )
        got = self._rows(sql, (asset, tag, before_us, before_us - lookback_us, value))
        if not got or got[0][0] is None:
            return None
        sql = (
            f"SELECT MIN({ts}) FROM samples WHERE asset = {d.s()} AND tag = {d.s()} AND ts > {d.ts()} "
            f"AND ts < {d.ts()} AND quality = 0"
        )
        nxt = self._rows(sql, (asset, tag, int(got[0][0]), before_us + 1))
        return int(nxt[0][0]) if nxt and nxt[0][0] is not None else None

    def oee_windows(self, asset: str, start_us: int, end_us: int, shifts: bool) -> list[dict[str, Any]]:
        """OEE records of the asset starting in [start, end): the plain windows, or (`shifts`) the shift records."""
        d = self.d
        cols = ", ".join(d.col(c) if c in ("window_start", "window_end") else c for c in OEE_ALL_COLUMNS)
        which = "shift <> ''" if shifts else "(shift = '' OR shift IS NULL)"
        sql = (
            f"SELECT {cols} FROM oee_windows WHERE asset = {d.s()} AND window_start >= {d.ts()} "
            f"AND window_start < {d.ts()} AND {which} ORDER BY window_start"
        )
        out = []
        for r in self._rows(sql, (asset, start_us, end_us)):
            rec = dict(zip(OEE_ALL_COLUMNS, r, strict=True))
            rec["downtime_by_reason_s"] = _json_map(rec["downtime_by_reason_s"])
            out.append(rec)
        return out

    def latest_oee(self) -> list[dict[str, Any]]:
        d = self.d
        cols = ", ".join(d.col(c) if c in ("window_start", "window_end") else c for c in OEE_ALL_COLUMNS)
        plain = "(shift = '' OR shift IS NULL)"
        sql = (
            f"SELECT {cols} FROM oee_windows o WHERE {plain} AND window_end = "
            f"(SELECT MAX(window_end) FROM oee_windows i WHERE i.asset = o.asset AND {plain})"
        )
        out = []
        for r in self._rows(sql, ()):
            rec = dict(zip(OEE_ALL_COLUMNS, r, strict=True))
            rec["downtime_by_reason_s"] = _json_map(rec["downtime_by_reason_s"])
            out.append(rec)
        return out

    def downtime(self, asset: str, start_us: int) -> list[dict[str, float]]:
        d = self.d
        sql = f"SELECT downtime_by_reason_s FROM oee_windows WHERE asset = {d.s()} AND window_start >= {d.ts()}"
        return [_json_map(r[0]) for r in self._rows(sql, (asset, start_us))]

    def open_alerts(self) -> list[dict[str, Any]]:
        """Every RAISED alert without a CLEARED yet, whatever its age."""
        cols = ", ".join(self.d.col(c) if c == "time" else c for c in ALERT_COLUMNS)
        sql = (
            f"SELECT {cols} FROM alerts WHERE state = 'RAISED' AND alert_id NOT IN "
            "(SELECT alert_id FROM alerts WHERE state = 'CLEARED')"
        )
        return [dict(zip(ALERT_COLUMNS, r, strict=True)) for r in self._rows(sql, ())]

    def last_seen(self, since_us: int) -> dict[str, int]:
        d = self.d
        live = "NOT historical" if d.postgres else "historical = 0"
        sql = (
            f"SELECT asset, MAX({d.col('scan_time')}) FROM frames WHERE scan_time >= {d.ts()} AND {live} GROUP BY asset"
        )
        return {a: int(t) for a, t in self._rows(sql, (since_us,)) if t is not None}

    def close(self) -> None:
        with self._lock:
            self._drop()


def sqlite_history(path: Path) -> SqlHistory:
    def connect() -> sqlite3.Connection | None:
        if not path.exists():
            return None  # the storage sink has not created it yet; asked again next time
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA query_only=1")
        return conn

    return SqlHistory(connect, Dialect(postgres=False))


def postgres_history(info: str, connect_timeout_s: float) -> SqlHistory:
    def connect() -> Any:
        import psycopg

        return psycopg.connect(info, autocommit=True, connect_timeout=max(1, int(connect_timeout_s)))

    return SqlHistory(connect, Dialect(postgres=True))


def open_history(settings: Settings) -> SqlHistory:
    cfg = settings.pipeline.storage
    if cfg.kind == "postgres":
        from sinks.stores.postgres import conninfo

        return postgres_history(conninfo(cfg.postgres), cfg.postgres.connect_timeout_s)
    from sinks.stores.registry import sqlite_path

    return sqlite_history(sqlite_path(settings))
