"""Stage: ISO 22400-2 OEE per window and shift (processors/oee.py), for assets with a machine-state tag."""

from __future__ import annotations

from typing import Any

from plantstream.core.frame_codec import FrameColumns
from processors import oee
from processors.worker.stage import Emit, FrameByFrame, Kind, Silence, Step, subset
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState


class Oee(FrameByFrame):
    name = "oee"
    takes_columns = True  # reads only the state and counter samples (and the newest event time)

    def __init__(self, config: AssetConfig, size_us: int, grace_us: int) -> None:
        self.config = config
        self.size_us, self.grace_us = size_us, grace_us

    def active(self, state: AssetState) -> bool:
        return self.config.profile(state.asset) is not None

    def apply_frame(self, state: AssetState, frame: Any, step: Step) -> list[Emit]:
        profile = self.config.profile(state.asset)
        if profile is None:
            return []
        if state.oee is None:
            state.oee = oee.new_state()
        if isinstance(frame, FrameColumns):
            # the same result from the samples it reads; the newest event time stays the frame's
            frame = subset(
                frame, profile.state_tags | frozenset(profile.counters), max(frame.scan_time, frame.time_max)
            )
        return [Emit(Kind.OEE, r) for r in oee.apply_frame(state.oee, frame, profile, self.size_us, self.grace_us)]

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        if silence.idle_us is None or state.oee is None:
            return []
        profile = self.config.profile(state.asset)
        if profile is None:
            return []
        # the machine is taken to stay in its last known state while its data is silent (report by
        # exception sends no unchanged state): see oee.advance_idle
        closed = oee.advance_idle(state.oee, profile, self.size_us, self.grace_us, silence.idle_us)
        return [Emit(Kind.OEE, r) for r in closed]
