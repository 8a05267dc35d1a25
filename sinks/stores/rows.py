"""Sample rows as every store keeps them: a value split into number and text, quality as a small int."""

from __future__ import annotations

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
