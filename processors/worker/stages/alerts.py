"""Stage: alert rules (processors/alert_rules.py) on each frame and on the anomaly scores of the same
frames (so it runs after the anomaly stage), and wall-clock staleness on every silence tick."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from plantstream.core.records import Alert
from processors import alert_rules
from processors.worker.stage import AnyFrame, Emit, Kind, Silence, Step, subset
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState


class AlertRules:
    name = "alerts"
    takes_columns = True  # reads only the samples of the tags its rules watch

    def __init__(self, config: AssetConfig) -> None:
        self.config = config

    def apply(self, state: AssetState, frames: Sequence[AnyFrame], step: Step) -> list[Emit]:
        asset = state.asset
        rules = self.config.rules(asset)
        if not rules:
            return []
        if state.alerts is None:
            state.alerts = alert_rules.new_state()
        profile = self.config.profile(asset)
        state_tags, codes = (profile.state_tags, profile.codes) if profile else (frozenset(), None)
        out: list[Alert] = []
        watched = frozenset(state_tags).union(r.tag for r in rules if r.tag)
        for frame in frames:
            out += alert_rules.apply_frame(state.alerts, rules, subset(frame, watched), step.now_us, state_tags, codes)
        # anomaly rules keep trackers of their own: evaluating them after the frame rules changes no state
        for kind, record in step.emitted:
            if kind is Kind.ANOMALY:
                out += alert_rules.apply_anomaly(state.alerts, rules, record)
        return [Emit(Kind.ALERT, r) for r in out]

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        # wall-clock staleness for assets whose frames stopped
        if state.alerts is None:
            return []
        rules = self.config.rules(state.asset)
        if not rules:
            return []
        return [Emit(Kind.ALERT, r) for r in alert_rules.tick(state.alerts, rules, state.asset, silence.now_us)]

    def revoked(self, assets: Iterable[str]) -> None:
        return None
