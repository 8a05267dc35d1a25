"""Stage: the asset's live state on plant.state.v1 (processors/asset_twin.py), the last of the stages.

Per frame it notes the tags' last samples, reports and the machine state (cheap); it emits the asset's
AssetState record when something changed, at most once per `pipeline.state_topic.interval_s` (on a
frame, or on the next silence tick once the interval has passed), when the asset goes offline, comes
back or is offline for another reason, and once for every asset after the worker starts owning it, so
a reader of the compacted topic from its beginning has the whole plant. `unseen` gives the records of
configured assets of owned partitions that have sent nothing yet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from plantstream.core import topics
from plantstream.core.records import AssetState as AssetStateRecord
from processors import asset_twin
from processors.worker.stage import Emit, Frame, Kind, Silence, Step
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState

US = 1_000_000


class AssetTwin:
    name = "asset-state"

    def __init__(self, config: AssetConfig, size_us: int, hop_us: int) -> None:
        self.config = config
        self.size_us, self.hop_us = size_us, hop_us
        settings = config.settings
        self.interval_us = int(settings.pipeline.state_topic.interval_s * US)
        self.min_limit_us = int(settings.pipeline.windows.silence_after_min_s * US)
        self.announced: set[str] = set()  # assets whose state went out since this worker owns them
        self._unseen: set[str] = set()  # configured assets without state announced by `unseen`

    def _twin(self, state: AssetState) -> asset_twin.Twin:
        if state.twin is None:
            state.twin = asset_twin.new_twin()
        return state.twin

    def _limit(self, asset: str) -> int:
        limit = self.config.silence_us(asset)
        return limit if limit is not None else self.min_limit_us

    def _emit(self, state: AssetState, twin: asset_twin.Twin, now_us: int) -> list[Emit]:
        asset = state.asset
        limit = self._limit(asset)
        rec = asset_twin.record(
            asset,
            twin,
            state.windows,
            state.oee,
            state.alarms["by_rule"] if state.alarms is not None else {},
            self.config.profile(asset),
            size=self.size_us,
            hop=self.hop_us,
            now_us=now_us,
            limit_us=limit,
            expected_interval_s=self.config.expected_interval_s(asset),
        )
        twin["emitted"], twin["online"], twin["reason"], twin["dirty"] = (
            now_us,
            rec["online"],
            rec["offline_reason"],
            False,
        )
        self.announced.add(asset)
        return [Emit(Kind.STATE, rec)]

    def apply(self, state: AssetState, frames: Sequence[Frame], step: Step) -> list[Emit]:
        twin = self._twin(state)
        for frame in frames:
            asset_twin.apply_frame(twin, frame)
        for kind, record in step.emitted:
            if kind is Kind.ANOMALY:
                twin["anomaly"] = record
        asset_twin.note_machine(twin, state.oee)
        if step.now_us - twin["emitted"] >= self.interval_us:
            return self._emit(state, twin, step.now_us)
        return []

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        twin = self._twin(state)
        now = silence.now_us
        for kind, _ in silence.emitted:
            if kind is Kind.ALARM_STATE or kind is Kind.OEE:
                twin["dirty"] = True
        asset_twin.note_machine(twin, state.oee)
        if state.asset not in self.announced:
            return self._emit(state, twin, now)
        if now - twin["emitted"] < self.interval_us:
            return []
        online, reason, _ = asset_twin.liveness(twin, now, self._limit(state.asset))
        if twin["dirty"] or online != twin["online"] or reason != twin.get("reason"):  # e.g. device_down -> silence
            return self._emit(state, twin, now)
        return []

    def changed(self, state: AssetState) -> None:
        """Something outside the frames changed the asset (an operator command): publish at the next chance."""
        self._twin(state)["dirty"] = True

    def unseen(
        self, owned: Collection[int], partitions: int, known: Collection[str], now_us: int
    ) -> list[tuple[str, AssetStateRecord]]:
        """Records of configured assets on owned readings partitions that have no state (never sent a frame),
        once per ownership."""
        gone = {a for a in self._unseen if topics.key_partition(a, partitions) not in owned}
        self._unseen -= gone
        self.announced -= gone
        out = []
        for a in self.config.settings.plant.assets:
            path = a.path
            if path in self.announced or path in known or topics.key_partition(path, partitions) not in owned:
                continue
            self.announced.add(path)
            self._unseen.add(path)
            out.append((path, asset_twin.unseen(path, now_us, self.config.expected_interval_s(path))))
        return out

    def revoked(self, assets: Iterable[str]) -> None:
        # the next owner announces them; if they come back here, so do we
        self.announced.difference_update(assets)
