"""Sample rows as every store keeps them: a value split into number and text, quality as a small int."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

QUALITY = {"GOOD": 0, "UNCERTAIN": 1, "BAD": 2}


def split_value(v: Any) -> tuple[float | None, str | None]:
    """(number, text): numbers and booleans go to the numeric column, anything else to the text one."""
    if v is None:
        return None, None
    if isinstance(v, bool):
        return (1.0 if v else 0.0), None
    if isinstance(v, int | float):
        return float(v), None
    return None, str(v)


def newest_revisions(records: Iterable[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """One record per natural key, the one with the highest `revision` (a correction after late data
    supersedes the first result), in the order the keys first appeared. A store upserts these, keeping a
    stored row whose revision is higher, so the order of batches does not matter either."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        k = tuple(r[c] for c in key)
        old = out.get(k)
        if old is None or int(r.get("revision") or 0) > int(old.get("revision") or 0):
            out[k] = r
    return list(out.values())
