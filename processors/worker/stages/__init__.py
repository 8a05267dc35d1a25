"""The worker's stages, in the order they run for each frame (processors/worker/stage.py has the contract).

`default_stages` builds today's six: KPI windows, OEE, anomaly scores, alert rules (they read the
anomaly scores of the same frames), the alarm lifecycle (it reads the alert rules' records) and the
asset's live state (last: it reads everything before it). Each stage is a thin adapter over pure math
in processors/.
"""

from __future__ import annotations

from plantstream.core.config import Settings
from processors.anomaly import AnomalyStage
from processors.worker.stage import Stage
from processors.worker.stages.alarms import AlarmFigures, Alarms
from processors.worker.stages.alerts import AlertRules
from processors.worker.stages.anomaly import AnomalyScores
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.stages.asset_state import AssetTwin
from processors.worker.stages.kpi_windows import KpiWindows
from processors.worker.stages.oee import Oee
from processors.worker.state import TableStore

__all__ = [
    "AlarmFigures",
    "Alarms",
    "AlertRules",
    "AnomalyScores",
    "AssetConfig",
    "AssetTwin",
    "KpiWindows",
    "Oee",
    "default_stages",
]


def default_stages(settings: Settings, models: TableStore) -> list[Stage]:
    """KPI windows, OEE, anomaly scores (models checkpointed into `models`), alert rules, alarms and the
    asset's live state, from the config."""
    w = settings.pipeline.windows
    size_us = w.kpi_window_s * 1_000_000
    hop_us = (w.hop_s or w.kpi_window_s) * 1_000_000
    grace_us = int(w.grace_s * 1_000_000)
    config = AssetConfig(settings)
    return [
        KpiWindows(size_us, grace_us, hop_us, config),
        Oee(config, size_us, grace_us),
        AnomalyScores(AnomalyStage(settings), models),
        AlertRules(config),
        Alarms(config),
        AssetTwin(config, size_us, hop_us),
    ]
