"""Stage: the alarm lifecycle after ISA-18.2 (processors/alarm_lifecycle.py) on the alert rules' records.

Runs after AlertRules: it takes the Alert records of the same frames (and of the silence tick: stale
tags), moves each alarm's lifecycle, marks an Alert that must not be annunciated (`suppression`: the
alarm is shelved, suppressed by design or out of service) before it is sent, and emits AlarmEvent and
AlarmState records. The machine's state class (from the OEE stage) starts and ends suppression by
design; the wall clock ends shelves. Operator commands come through `command` (processors/worker/
commands.py), on the worker that owns the asset. State: `AssetState.alarms` = {"machine": the class
seen last, "by_rule": {rule: alarm}}.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from plantstream.core import alarm_figures
from plantstream.core.records import AlarmCommand, alarm_id
from plantstream.core.runstats import RunStats
from processors import alarm_lifecycle as lifecycle
from processors.worker.stage import Emit, Frame, Kind, Silence, Step
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.state import AssetState, AssetStates


def _emits(out: lifecycle.Outcome) -> list[Emit]:
    return (
        [Emit(Kind.ALERT, a) for a in out.alerts]
        + [Emit(Kind.ALARM_EVENT, e) for e in out.events]
        + [Emit(Kind.ALARM_STATE, s) for s in out.states]
    )


class Alarms:
    name = "alarms"

    def __init__(self, config: AssetConfig) -> None:
        self.config = config
        self.max_shelve_s = config.settings.pipeline.alarms.max_shelve_s

    @staticmethod
    def _state(state: AssetState) -> dict[str, Any]:
        if state.alarms is None:
            state.alarms = {"machine": None, "by_rule": {}}
        return state.alarms

    @staticmethod
    def _machine(state: AssetState) -> str | None:
        cur = state.oee["state"] if state.oee is not None else None
        return cur[1] if cur is not None else None

    def _follow(
        self, state: AssetState, rules: Mapping[str, Any], emitted: Iterable[Emit], t: int
    ) -> lifecycle.Outcome:
        asset = state.asset
        own = self._state(state)
        by_rule = own["by_rule"]
        out = lifecycle.ensure(by_rule, rules, asset, t)
        for kind, record in emitted:
            if kind is Kind.ALERT and record["rule"] in rules:
                out += lifecycle.on_alert(by_rule, rules[record["rule"]], record)  # type: ignore[arg-type]
        machine = self._machine(state)
        if machine != own["machine"]:
            own["machine"] = machine
            out += lifecycle.on_machine_state(by_rule, rules, asset, machine, t)
        return out

    def apply(self, state: AssetState, frames: Sequence[Frame], step: Step) -> list[Emit]:
        rules = self.config.alarms(state.asset)
        if not rules:
            return []
        return _emits(self._follow(state, rules, list(step.emitted), frames[-1]["scan_time"]))

    def advance(self, state: AssetState, silence: Silence) -> list[Emit]:
        if state.alarms is None:
            return []
        rules = self.config.alarms(state.asset)
        out = lifecycle.tick(state.alarms["by_rule"], state.asset, silence.now_us)
        out += self._follow(state, rules, list(silence.emitted), silence.now_us)
        return _emits(out)

    def command(self, state: AssetState, cmd: AlarmCommand, now_us: int) -> list[Emit]:
        """Apply one operator command (or refuse it: a REJECTED event says why)."""
        own = self._state(state)
        out = lifecycle.on_command(
            own["by_rule"], self.config.alarms(state.asset), state.asset, cmd, now_us, self.max_shelve_s
        )
        return _emits(out)

    def revoked(self, assets: Iterable[str]) -> None:
        return None

    def alarms_of(self, state: AssetState) -> Mapping[str, lifecycle.Alarm]:
        return state.alarms["by_rule"] if state.alarms is not None else {}


class AlarmFigures:
    """The ISA-18.2 figures (plantstream.core.alarm_figures) of the alarms of the assets this worker owns,
    as metrics levels: `alarms_per_10min`, `alarms_standing`, `alarms_stale`, `alarms_chattering`,
    `alarms_shelved`, `alarms_suppressed`, `alarms_out_of_service`, and `alarm_activations_24h{alarm=...}`
    per alarm (the most frequent: Prometheus' topk)."""

    def __init__(self, states: AssetStates, stats: RunStats) -> None:
        self.states = states
        self.stats = stats

    def put(self, owned: Collection[int], now_us: int) -> dict[str, Any]:
        rows = [
            {**a, "alarm": alarm_id(asset, rule)}
            for asset, state in self.states.items()
            if state.partition in owned and state.alarms is not None
            for rule, a in state.alarms["by_rule"].items()
        ]
        f = alarm_figures.figures(rows, now_us, top=len(rows) or 1)
        put = self.stats.put
        put("alarms_per_10min", f["per_10min"])
        put("alarms_standing", f["standing"])
        put("alarms_stale", f["stale"])
        put("alarms_chattering", len(f["chattering"]))
        put("alarms_shelved", f["shelved"])
        put("alarms_suppressed", f["suppressed"])
        put("alarms_out_of_service", f["out_of_service"])
        counts = {r["alarm"]: 0 for r in rows} | {m["alarm"]: m["activations"] for m in f["most_frequent"]}
        self.stats.put_all("alarm_activations_24h", "alarm", counts)
        return f
