"""Stage: event-time KPI windows per tag (processors/event_windows.py); late samples go out as such.

Frames that came as columns are added in runs (event_windows.apply_columns: one compiled loop per run of
one layout and pane, bit for bit the sample-by-sample result); any other frame sample by sample.
With an `AssetConfig`, each window also says how much of it had data (the asset's allowed silence)
and a silence closed by the idle timer is corrected when its data arrives late (revisions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plantstream.core.frame_codec import FrameColumns
from processors import event_windows
from processors.worker.stage import AnyFrame, Emit, Kind, Silence, Step
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState


class KpiWindows:
    name = "kpi-windows"
    takes_columns = True

    def __init__(self, size_us: int, grace_us: int, hop_us: int, config: AssetConfig | None = None) -> None:
        event_windows.check_sizes(size_us, hop_us)
        self.size_us, self.grace_us, self.hop_us = size_us, grace_us, hop_us
        self.config = config
        self.allowed_lateness_us = config.allowed_lateness_us if config is not None else None

    def apply(self, state: AssetState, frames: Sequence[AnyFrame], step: Step) -> list[Emit]:
        silence = self.config.silence_us(state.asset) if self.config is not None else None
        lateness = self.allowed_lateness_us
        out: list[Emit] = []
        i, n = 0, len(frames)
        while i < n:
            j = i
            while j < n and isinstance(frames[j], FrameColumns):
                j += 1
            if j > i:  # a run of frames as columns
                run: list[Any] = list(frames[i:j])
                late: dict[int, list[dict[str, Any]]] = {}
                closed = event_windows.apply_columns(
                    state.windows, run, self.size_us, self.grace_us, self.hop_us, late, silence, lateness
                )
                for k in sorted(late):
                    out.append(Emit(Kind.LATE, {**run[k].to_frame(), "samples": late[k]}))
                out += [Emit(Kind.KPI, r) for r in closed]
                i = j
                continue
            frame = frames[i]
            assert not isinstance(frame, FrameColumns)
            late_samples: list[dict[str, Any]] = []
            closed = event_windows.apply_frame(
                state.windows, frame, self.size_us, self.grace_us, self.hop_us, late_samples, silence, lateness
            )
            if late_samples:
                out.append(Emit(Kind.LATE, {**frame, "samples": late_samples}))
            out += [Emit(Kind.KPI, r) for r in closed]
            i += 1
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

    def revoked(self, assets: Any) -> None:
        return None
