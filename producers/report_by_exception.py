"""Report by exception: send a tag's sample only when it changed beyond its deadband, or when its
heartbeat is due, so unchanged values are not resent while a silent tag stays distinguishable from a
dead one (a live tag is heard at least once per heartbeat; a dead one turns BAD, which is a change)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from plantstream.core.records import Sample


class DeadbandTag(Protocol):
    name: str
    deadband_abs: float | None
    deadband_pct: float | None
    heartbeat_s: float | None


@dataclass(frozen=True)
class Rule:
    deadband_abs: float | None = None
    deadband_pct: float | None = None  # percent of the last sent value's magnitude
    heartbeat_s: float | None = None


@dataclass
class _Sent:
    value: Any
    quality: str
    time: int


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def changed(rule: Rule, last: _Sent, value: Any, quality: str) -> bool:
    if quality != last.quality:
        return True
    if not (_numeric(value) and _numeric(last.value)):
        return bool(value != last.value)
    delta = abs(value - last.value)
    if rule.deadband_abs is None and rule.deadband_pct is None:
        return bool(delta > 0)
    if rule.deadband_abs is not None and delta > rule.deadband_abs:
        return True
    return rule.deadband_pct is not None and delta > abs(last.value) * rule.deadband_pct / 100


class ExceptionFilter:
    """Per-tag memory of the last value sent; `filter` keeps the samples worth sending."""

    def __init__(self, rules: dict[str, Rule]) -> None:
        self._rules = rules
        self._last: dict[str, _Sent] = {}

    @classmethod
    def for_tags(cls, tags: Iterable[DeadbandTag]) -> ExceptionFilter | None:
        rules = {
            t.name: Rule(t.deadband_abs, t.deadband_pct, t.heartbeat_s)
            for t in tags
            if t.deadband_abs is not None or t.deadband_pct is not None or t.heartbeat_s is not None
        }
        return cls(rules) if rules else None

    def filter(self, samples: list[Sample], now_us: int) -> list[Sample]:
        keep = []
        for s in samples:
            rule = self._rules.get(s["tag"])
            if rule is None:
                keep.append(s)  # no deadband and no heartbeat configured: every scan is sent
                continue
            last = self._last.get(s["tag"])
            due = (
                last is None
                or changed(rule, last, s["value"], s["quality"])
                or (rule.heartbeat_s is not None and now_us - last.time >= rule.heartbeat_s * 1e6)
            )
            if due:
                self._last[s["tag"]] = _Sent(s["value"], s["quality"], now_us)
                keep.append(s)
        return keep
