"""Store-and-forward: a bounded on-disk log of frames not yet acknowledged by Kafka.

Every frame is appended here before it is handed to librdkafka and deleted when Kafka acknowledges
it, so a frame that was accepted survives a broker outage, a producer crash (kill -9) and a restart;
the next producer run sends what it finds, in order. The bound is in bytes: when it is reached the
oldest frames are dropped (and counted), never the newest. SQLite gives durable appends and ordered
reads without a format of our own; one file per producer process, guarded by a lock.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from plantstream.core import logs
from plantstream.core.errors import ProducerError

log = logs.get(__name__)


class BufferInUse(ProducerError, RuntimeError):
    pass


class DiskBuffer:
    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock_file = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the buffer's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            self._lock_file.close()
            raise BufferInUse(
                f"the store-and-forward buffer {self.path} is used by another running producer. Fix: stop it, or "
                "give this producer its own state_dir"
            ) from e
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: an OS crash may lose the last commits, a process crash loses nothing
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS frames (id INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL, "
            "value BLOB NOT NULL, buffered INTEGER NOT NULL)"
        )
        self._mutex = threading.Lock()
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(value) + LENGTH(key)), 0) FROM frames").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self.dropped = 0

    # --- writes -----------------------------------------------------------------------------------

    def append(self, key: bytes, value: bytes, buffered: bool) -> int:
        """Store a frame; returns its id. Drops the oldest frames first when the bound is reached."""
        size = len(key) + len(value)
        with self._mutex:
            while self._count and self._bytes + size > self.max_bytes:
                self._drop_oldest()
            cur = self._db.execute(
                "INSERT INTO frames (key, value, buffered) VALUES (?, ?, ?)", (key, value, int(buffered))
            )
            self._count += 1
            self._bytes += size
            return int(cur.lastrowid or 0)

    def _drop_oldest(self) -> None:
        row = self._db.execute("SELECT id, LENGTH(key) + LENGTH(value) FROM frames ORDER BY id LIMIT 1").fetchone()
        self._db.execute("DELETE FROM frames WHERE id = ?", (row[0],))
        self._count -= 1
        self._bytes -= int(row[1])
        self.dropped += 1

    def delete(self, ids: Iterable[int]) -> None:
        batch = [(i,) for i in ids]
        if not batch:
            return
        with self._mutex:
            before = self._db.total_changes
            sizes = self._db.execute(
                f"SELECT COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM frames WHERE id IN "
                f"({','.join('?' * len(batch))})",
                [i for (i,) in batch],
            ).fetchone()[0]
            self._db.executemany("DELETE FROM frames WHERE id = ?", batch)
            self._count -= self._db.total_changes - before
            self._bytes -= int(sizes)

    # --- reads ------------------------------------------------------------------------------------

    def after(self, last_id: int, limit: int) -> list[tuple[int, bytes, bytes, bool]]:
        """Frames with id > last_id, oldest first."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT id, key, value, buffered FROM frames WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [(int(r[0]), bytes(r[1]), bytes(r[2]), bool(r[3])) for r in rows]

    def last_id(self) -> int:
        with self._mutex:
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM frames").fetchone()[0])

    def last_assigned_id(self) -> int:
        """The id of the newest frame ever appended, even if it was since deleted."""
        with self._mutex:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'frames'").fetchone()
        return int(row[0]) if row else 0

    def first_id(self) -> int:
        with self._mutex:
            return int(self._db.execute("SELECT COALESCE(MIN(id), 0) FROM frames").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def fill(self) -> float:
        return self._bytes / self.max_bytes if self.max_bytes else 0.0

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
