"""Stage: ISO 22400-2 OEE per window and shift (processors/oee.py), for assets with a machine-state tag."""

from __future__ import annotations

from processors import oee
from processors.worker.stage import Emit, Frame, FrameByFrame, Kind, Silence, Step
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState


class Oee(FrameByFrame):
    name = "oee"

    def __init__(self, config: AssetConfig, size_us: int, grace_us: int) -> None:
        self.config = config
        self.size_us, self.grace_us = size_us, grace_us

    def active(self, state: AssetState) -> bool:
        # an asset without a machine-state tag has no OEE: its frames are not even turned into dicts
        return self.config.profile(state.asset) is not None

    def apply_frame(self, state: AssetState, frame: Frame, step: Step) -> list[Emit]:
        profile = self.config.profile(state.asset)
        if profile is None:
            return []
        if state.oee is None:
            state.oee = oee.new_state()
        closed = oee.apply_frame(
            state.oee, frame, profile, self.size_us, self.grace_us, self.config.allowed_lateness_us
        )
        return [Emit(Kind.OEE, r) for r in closed]

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        if silence.idle_us is None or state.oee is None:
            return []
        profile = self.config.profile(state.asset)
        if profile is None:
            return []
        # the machine is taken to stay in its last known state while its data is silent (report by
        # exception sends no unchanged state): see oee.advance_idle
        closed = oee.advance_idle(
            state.oee, profile, self.size_us, self.grace_us, silence.idle_us, self.config.allowed_lateness_us
        )
        return [Emit(Kind.OEE, r) for r in closed]
