"""Per-asset online anomaly scoring: the model (model.py) and its pure estimators (estimators.py).

The worker's whole API is `AnomalyStage` (score, checkpoint, restore, assets, readiness, train)."""

from processors.anomaly.model import AnomalyStage, feature_tags

__all__ = ["AnomalyStage", "feature_tags"]
