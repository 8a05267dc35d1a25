"""The Avro contracts of plantstream's topics (the .avsc files beside this module)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

READING_FRAME = "reading_frame"
KPI_WINDOW = "kpi_window"
OEE_WINDOW = "oee_window"
ANOMALY_SCORE = "anomaly_score"
ALERT = "alert"
ASSET_STATE = "asset_state"
ALARM_COMMAND = "alarm_command"
ALARM_STATE = "alarm_state"
ALARM_EVENT = "alarm_event"

ALL = (
    READING_FRAME,
    KPI_WINDOW,
    OEE_WINDOW,
    ANOMALY_SCORE,
    ALERT,
    ASSET_STATE,
    ALARM_COMMAND,
    ALARM_STATE,
    ALARM_EVENT,
)


@cache
def schema_text(name: str) -> str:
    """The schema as registered: canonical JSON of the .avsc file (docs and logical types kept)."""
    return json.dumps(json.loads((HERE / f"{name}.avsc").read_text()), separators=(",", ":"))


def schema_json(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(schema_text(name))
    return parsed
