"""The Store interface every storage backend implements, and the one failure they share."""

from __future__ import annotations

from typing import Protocol

from plantstream.core.config import RetentionSettings
from sinks.batch import Backpressure, Batch


class StoreUnavailable(Backpressure):
    """The database cannot be reached now; the batch was not stored and may be retried as is."""


class Store(Protocol):
    def write(self, batch: Batch) -> dict[str, int]:
        """Store the batch in one transaction, idempotently (natural keys); the rows inserted per table
        ("frames", "samples", "kpi_windows", and each result kind present). StoreUnavailable: nothing
        was written and the same batch may be retried."""
        ...

    def apply_retention(self, retention: RetentionSettings, now_us: int | None = None) -> dict[str, int]: ...

    def count(self, table: str) -> int: ...

    def close(self) -> None: ...
