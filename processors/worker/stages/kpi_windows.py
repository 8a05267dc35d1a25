"""Stage: event-time KPI windows per tag (processors/event_windows.py); late samples go out as such.

With an `AssetConfig`, each window also says how much of it had data (the asset's allowed silence)
and a silence closed by the idle timer is corrected when its data arrives late (revisions)."""

from __future__ import annotations

from processors import event_windows
from processors.worker.stage import Emit, Frame, FrameByFrame, Kind, Silence, Step
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState


class KpiWindows(FrameByFrame):
    name = "kpi-windows"

    def __init__(self, size_us: int, grace_us: int, hop_us: int, config: AssetConfig | None = None) -> None:
        event_windows.check_sizes(size_us, hop_us)
        self.size_us, self.grace_us, self.hop_us = size_us, grace_us, hop_us
        self.config = config
        self.allowed_lateness_us = config.allowed_lateness_us if config is not None else None

    def apply_frame(self, state: AssetState, frame: Frame, step: Step) -> list[Emit]:
        late: list[dict] = []
        silence = self.config.silence_us(state.asset) if self.config is not None else None
        closed = event_windows.apply_frame(
            state.windows, frame, self.size_us, self.grace_us, self.hop_us, late, silence, self.allowed_lateness_us
        )
        out = [Emit(Kind.LATE, {**frame, "samples": late})] if late else []
        out += [Emit(Kind.KPI, r) for r in closed]
        return out

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        if silence.idle_us is None:
            return []
        limit = self.config.silence_us(state.asset) if self.config is not None else None
        closed = event_windows.advance_idle(
            state.windows,
            state.asset,
            self.size_us,
            self.grace_us,
            silence.idle_us,
            self.hop_us,
            limit,
            self.allowed_lateness_us,
        )
        return [Emit(Kind.KPI, r) for r in closed]
