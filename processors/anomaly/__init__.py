"""Per-asset online anomaly scoring: the model (model.py) and its pure estimators (estimators.py)."""
