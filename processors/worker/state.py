"""The worker's state: one typed `AssetState` per asset, kept in changelog-backed tables.

Contract:
- An asset's state is everything the stages need to continue its windows, OEE buckets, alert trackers,
  alarm lifecycle and live state after a restart or a rebalance, plus the readings `offset` of the last
  frame applied to it (a frame at or below it is a redelivery and is skipped), the alarm-commands
  `cmd_offset` of the last command applied (likewise) and the readings `partition` it lives in
  (its changelog record goes to the same partition, so whoever owns the partition recovers it).
- On the changelog an `AssetState` is one flat JSON object, the layout earlier versions wrote
  (`wm`, `max_t`, `open`, `late`, `done` of the KPI windows; `oee`; `alerts`; `offset`; `partition`).
  Keys this version does not know are kept as they were (`extra`) and written back unchanged.
- A `TableStore` wraps one table's data (Faust's in-memory table dict: recovery writes plain JSON into
  it) and remembers what changed since the last checkpoint; `snapshot()` serialises those entries
  and forgets them. Nothing here writes to Kafka: the Checkpoint does (processors/worker/checkpoint.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from processors import event_windows
from processors.alert_rules import AlertsState
from processors.oee import OeeState

WINDOW_KEYS = ("wm", "max_t", "open", "late", "done", "seen", "cov", "snap", "revs")
_LEGACY_WINDOW_KEYS = ("wm", "max_t", "open", "late", "done")
_OWN_KEYS = frozenset((*WINDOW_KEYS, "offset", "partition", "oee", "alerts", "alarms", "twin", "cmd_offset"))


@dataclass(slots=True, eq=False)
class AssetState:
    """One asset's state: what each stage keeps, and how far its readings have been applied."""

    asset: str  # the asset path: the table key (not written into the value)
    partition: int  # readings partition of the asset
    offset: int = -1  # readings offset of the last frame applied
    windows: event_windows.AssetState = field(default_factory=lambda: _new_windows())  # KPI panes, watermark
    oee: OeeState | None = None  # None: the asset has no machine-state tag (no OEE)
    alerts: AlertsState | None = None  # None: no alert rule has applied yet
    alarms: dict[str, Any] | None = None  # the alarm lifecycle (stages/alarms.py); None: no alarm yet
    twin: dict[str, Any] | None = None  # what plant.state.v1 says of it (processors/asset_twin.py)
    cmd_offset: int = -1  # alarm-commands offset of the last command applied to the asset
    extra: dict[str, Any] = field(default_factory=dict)  # keys another version wrote, kept as they were

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, **self.windows, "offset": self.offset, "partition": self.partition}
        # panes fed by frames as columns keep their accumulators as arrays in memory: JSON as always here
        out["open"] = _panes_json(self.windows["open"])
        snap = self.windows.get("snap")
        if snap is not None and "open" in snap:  # the copy kept for a silence's rollback holds panes too
            out["snap"] = {**snap, "open": _panes_json(snap["open"])}
        if self.oee is not None:
            out["oee"] = self.oee
        if self.alerts is not None:
            out["alerts"] = self.alerts
        if self.alarms is not None:
            out["alarms"] = self.alarms
        if self.twin is not None:
            out["twin"] = self.twin
        if self.cmd_offset >= 0:
            out["cmd_offset"] = self.cmd_offset
        return out

    @classmethod
    def from_json(cls, asset: str, data: dict[str, Any]) -> AssetState:
        windows = _new_windows()
        windows.update((k, data[k]) for k in WINDOW_KEYS if k in data)
        return cls(
            asset=asset,
            partition=int(data.get("partition", -1)),
            offset=int(data.get("offset", -1)),
            windows=windows,
            oee=data.get("oee"),
            alerts=data.get("alerts"),
            alarms=data.get("alarms"),
            twin=data.get("twin"),
            cmd_offset=int(data.get("cmd_offset", -1)),
            extra={k: v for k, v in data.items() if k not in _OWN_KEYS},
        )


def _panes_json(panes: dict[str, Any]) -> dict[str, Any]:
    return {k: event_windows.pane_json(v) for k, v in panes.items()}


def _new_windows() -> event_windows.AssetState:
    # only the keys every version wrote: event_windows adds the newer ones on first use, so a state
    # read from an earlier version is written back as it was until a frame changes it
    w = event_windows.new_state()
    return {k: w[k] for k in _LEGACY_WINDOW_KEYS}


@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    """One serialised table entry for the changelog: key and value bytes are JSON, as Faust reads them."""

    table: str
    partition: int
    key: str
    value: bytes


Pending = Any | Callable[[], Any]  # a value, or a function giving it at snapshot time


class TableStore:
    """One changelog-backed table's entries, and which of them changed since the last snapshot."""

    def __init__(self, name: str, data: MutableMapping[str, Any]) -> None:
        self.name = name
        self.data = data
        self._changed: dict[str, tuple[int, Pending]] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def changed(self, key: str, partition: int, value: Pending) -> None:
        """Remember that `key` must reach the changelog (partition named: a timer has no current event).

        A callable is called at snapshot time, so an expensive value (a model) is serialised at most
        once per checkpoint however often it changes."""
        self._changed[key] = (partition, value)

    def has_changes(self) -> bool:
        return bool(self._changed)

    def snapshot(self) -> list[ChangelogEntry]:
        """Serialise every changed entry now (the caller goes on changing them) and forget the changes."""
        out = []
        for key, (partition, value) in self._changed.items():
            if callable(value):
                value = value()
            if value is None:
                continue
            self.data[key] = value
            raw = value.to_json() if isinstance(value, AssetState) else value
            out.append(ChangelogEntry(self.name, partition, key, orjson.dumps(raw)))
        self._changed.clear()
        return out

    def forget_changes(self) -> None:
        self._changed.clear()


class AssetStates(TableStore):
    """The `kpi-windows` table as typed `AssetState`s (converted from recovered JSON on first use)."""

    def get(self, key: str) -> AssetState | None:
        value = self.data.get(key)
        if value is None or isinstance(value, AssetState):
            return value
        state = self.data[key] = AssetState.from_json(key, value)
        return state

    def create(self, key: str, partition: int) -> AssetState:
        state = self.data[key] = AssetState(asset=key, partition=partition)
        return state

    def items(self) -> Iterator[tuple[str, AssetState]]:
        """Every entry, standby copies of other workers' assets included (check `partition`)."""
        for key in list(self.data):
            state = self.get(key)
            if state is not None:
                yield key, state
