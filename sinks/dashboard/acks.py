"""Alert acknowledgements, kept in a small SQLite file of their own (state_dir/dashboard.db).

Separate from the time-series store on purpose: acknowledging is the dashboard's own state, works the
same with either store backend, and is never touched by the store's retention job.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_acks (
    alert_id TEXT PRIMARY KEY, acked_at INTEGER NOT NULL, acked_by TEXT NOT NULL, note TEXT NOT NULL
)
"""


class AckStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)

    def ack(self, alert_id: str, by: str = "", note: str = "", now_us: int | None = None) -> dict[str, Any]:
        """Acknowledge once: a second acknowledgement keeps the first (who and when)."""
        at = int(time.time() * 1e6) if now_us is None else now_us
        with self._lock:
            self.db.execute(
                "INSERT OR IGNORE INTO alert_acks (alert_id, acked_at, acked_by, note) VALUES (?, ?, ?, ?)",
                (alert_id, at, by[:100], note[:500]),
            )
        got = self.all([alert_id]).get(alert_id)
        assert got is not None
        return got

    def all(self, alert_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        with self._lock:
            if alert_ids is None:
                rows = self.db.execute("SELECT alert_id, acked_at, acked_by, note FROM alert_acks").fetchall()
            else:
                marks = ",".join("?" * len(alert_ids))
                rows = (
                    self.db.execute(
                        f"SELECT alert_id, acked_at, acked_by, note FROM alert_acks WHERE alert_id IN ({marks})",
                        alert_ids,
                    ).fetchall()
                    if alert_ids
                    else []
                )
        return {r[0]: {"acked_at": r[1], "acked_by": r[2], "note": r[3]} for r in rows}

    def close(self) -> None:
        self.db.close()
