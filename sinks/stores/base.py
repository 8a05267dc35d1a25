"""The Store interface every storage backend implements, and the one failure they share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from plantstream.core.config import RetentionSettings
from plantstream.core.errors import SinkError


class StoreUnavailable(SinkError):
    """The database cannot be reached now; the batch was not stored and may be retried as is."""


class Store(Protocol):
    def write(
        self,
        frames: Iterable[Mapping[str, Any]],
        kpis: Iterable[dict[str, Any]],
        records: dict[str, list[dict[str, Any]]] | None = None,
    ) -> dict[str, int]: ...

    def apply_retention(self, retention: RetentionSettings, now_us: int | None = None) -> dict[str, int]: ...

    def count(self, table: str) -> int: ...

    def close(self) -> None: ...
