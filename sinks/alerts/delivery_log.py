"""The durable delivery log: one row per (alert_id, state, channel), so nothing is lost or sent twice.

The consumer records an alert's deliveries as `pending` before it commits the Kafka offset; a
redelivered message then finds its rows already there (INSERT OR IGNORE). Channel workers send
from the log and mark rows `sent`, or reschedule them with backoff, so a restart resumes exactly
where the last run stopped. Statuses: pending, sent, failed (gave up; retried at next start),
silenced (suppressed by the channel's silence period).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantstream.core.config import AlertRoute
from sinks.alerts.routing import routes_to

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id   TEXT NOT NULL,
    state      TEXT NOT NULL,
    channel    TEXT NOT NULL,
    asset      TEXT NOT NULL,
    rule       TEXT NOT NULL,
    time_us    INTEGER NOT NULL,
    alert      TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_at    REAL NOT NULL DEFAULT 0,
    sent_at    REAL,
    PRIMARY KEY (alert_id, state, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_silence ON deliveries (channel, asset, rule, state, time_us);
"""

# pending rows of one channel, less a CLEARED whose RAISED is still pending
_SENDABLE = (
    "d.channel=? AND d.status='pending' AND NOT (d.state='CLEARED' AND EXISTS (SELECT 1 FROM deliveries r"
    " WHERE r.alert_id=d.alert_id AND r.channel=d.channel AND r.state='RAISED' AND r.status='pending'))"
)


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    state: str
    channel: str
    attempts: int
    alert: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.alert_id, self.state, self.channel)


class DeliveryLog:
    """Thread-safe (one connection behind a lock: the statements are tiny and alerts are rare)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a row recorded before the offset commit must survive a power cut, not only a kill
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, alerts: Iterable[Mapping[str, Any]], channels: Sequence[AlertRoute], now: float) -> int:
        """Record every routed (alert, channel) as pending, or silenced; rows already there are kept as
        they are. One transaction. Returns the number of new pending rows."""
        new = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for a in alerts:
                    for ch in channels:
                        if routes_to(ch, a):
                            new += self._record_one(a, ch, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def _record_one(self, a: Mapping[str, Any], ch: AlertRoute, now: float) -> int:
        status = "silenced" if self._silenced(a, ch) else "pending"
        cur = self._db.execute(
            "INSERT OR IGNORE INTO deliveries (alert_id, state, channel, asset, rule, time_us, alert, status, next_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a["alert_id"],
                a["state"],
                ch.name,
                a["asset"],
                a["rule"],
                int(a["time"]),
                json.dumps(a),
                status,
                now,
            ),
        )
        return 1 if cur.rowcount == 1 and status == "pending" else 0

    def _silenced(self, a: Mapping[str, Any], ch: AlertRoute) -> bool:
        if a["state"] == "CLEARED":
            # the clear of a silenced raise is silenced too: no CLEARED without its RAISED
            row = self._db.execute(
                "SELECT status FROM deliveries WHERE alert_id=? AND state='RAISED' AND channel=?",
                (a["alert_id"], ch.name),
            ).fetchone()
            return row is not None and row[0] == "silenced"
        if ch.silence_s <= 0:
            return False
        t = int(a["time"])
        row = self._db.execute(
            "SELECT 1 FROM deliveries WHERE channel=? AND asset=? AND rule=? AND state='RAISED' AND alert_id<>?"
            " AND status IN ('pending', 'sent', 'failed') AND time_us BETWEEN ? AND ? LIMIT 1",
            (ch.name, a["asset"], a["rule"], a["alert_id"], t - int(ch.silence_s * 1e6), t),
        ).fetchone()
        return row is not None

    def due(self, channel: str, now: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest event first. A CLEARED waits until its RAISED
        is settled, so a receiver (an MQTT retained topic) never ends with the raise after the clear."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT alert_id, state, channel, attempts, alert FROM deliveries d WHERE {_SENDABLE}"
                " AND next_at<=? ORDER BY time_us, state DESC LIMIT ?",
                (channel, now, limit),
            ).fetchall()
        return [Delivery(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def next_due_at(self, channel: str) -> float | None:
        with self._lock:
            row = self._db.execute(f"SELECT MIN(next_at) FROM deliveries d WHERE {_SENDABLE}", (channel,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def mark_sent(self, keys: Iterable[tuple[str, str, str]], now: float) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE deliveries SET status='sent', attempts=attempts+1, sent_at=?, last_error=NULL"
                " WHERE alert_id=? AND state=? AND channel=?",
                [(now, *k) for k in keys],
            )

    def mark_attempt_failed(self, key: tuple[str, str, str], error: str, next_at: float | None) -> None:
        """next_at None: give up (status failed, retried at the next start)."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET attempts=attempts+1, last_error=?, next_at=COALESCE(?, next_at),"
                " status=CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END"
                " WHERE alert_id=? AND state=? AND channel=?",
                (error[:500], next_at, next_at, *key),
            )

    def requeue_failed(self, now: float) -> int:
        """Deliveries given up by an earlier run get a fresh round of attempts."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE deliveries SET status='pending', attempts=0, next_at=? WHERE status='failed'", (now,)
            )
        return cur.rowcount

    def rows(self) -> list[dict[str, Any]]:
        """Everything, for tests and inspection."""
        with self._lock:
            cur = self._db.execute(
                "SELECT alert_id, state, channel, status, attempts, last_error FROM deliveries ORDER BY time_us"
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
