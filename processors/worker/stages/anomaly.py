"""Stage: an online anomaly score per frame (processors.anomaly.AnomalyStage), its model checkpointed.

Models live in the stage, one per asset, and go to the `anomaly-models` table every
`checkpoint_frames` frames: a model restored after a crash has missed a few frames of learning, which
changes its scores negligibly, while saving it with every frame would multiply the changelog traffic.
The first frame of an asset since start or rebalance restores its model from the table.
`report(stats)` sets the level `anomaly_models{state=ready|warming_up}` (models of the assets this
worker holds), so a model that never becomes ready shows in the metrics and `plantstream status`.
"""

from __future__ import annotations

from collections.abc import Iterable

from plantstream.core.runstats import RunStats
from processors.anomaly import AnomalyStage
from processors.worker.stage import Emit, Frame, FrameByFrame, Kind, Step
from processors.worker.state import AssetState, TableStore

MODEL_CHECKPOINT_FRAMES = 100


class AnomalyScores(FrameByFrame):
    name = "anomaly"

    def __init__(
        self, model: AnomalyStage, models: TableStore, checkpoint_frames: int = MODEL_CHECKPOINT_FRAMES
    ) -> None:
        self.model = model
        self.models = models
        self.checkpoint_frames = checkpoint_frames
        self._since_save: dict[str, int] = {}  # asset -> frames since its model was last checkpointed

    def active(self, state: AssetState) -> bool:
        # an asset whose model is off (known after its first frame): nothing to score or checkpoint
        models = self.model.models
        return state.asset not in models or models[state.asset] is not None

    def apply_frame(self, state: AssetState, frame: Frame, step: Step) -> list[Emit]:
        asset = state.asset
        since = self._since_save.get(asset)
        if since is None:  # first frame since start or rebalance: resume the model
            self.model.restore(asset, self.models.get(asset))
            since = 0
        # counted before scoring: a model that raises on every frame is still checkpointed as it is
        since += 1
        if since >= self.checkpoint_frames:
            model = self.model
            self.models.changed(asset, state.partition, lambda: model.checkpoint(asset))
            since = 0
        self._since_save[asset] = since
        score = self.model.score(asset, frame)
        return [Emit(Kind.ANOMALY, score)] if score is not None else []

    def report(self, stats: RunStats) -> None:
        for state, n in self.model.readiness_counts().items():
            stats.put("anomaly_models", n, state=state)

    def revoked(self, assets: Iterable[str]) -> None:
        # the next owner resumes each model from the table; a stale copy here must not come back later
        self._since_save.clear()
        for asset in list(self.model.assets()):
            self.model.restore(asset, None)
