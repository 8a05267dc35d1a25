"""MQTT topics and payloads to (device, samples) for the configured mqtt devices (pure).

A device names its asset's topic; `{tag}` in it is one segment naming the tag (the ISA-95
topic-per-tag convention `<enterprise>/<site>/<area>/<line>/<machine>/<tag>`). Without `{tag}`, a
JSON payload on the device topic carries several tags (each at its own path), and `umh_historian`
is United Manufacturing Hub's `{"timestamp_ms": ..., "<tag>": value}` on `.../_historian[/<group>...]`
(group segments prefix the keys: `<group>.<key>`). Every configured tag topic is looked up exactly
(one dict lookup per message); a message on a subscribed topic that maps to no tag is
`unconfigured_topic` bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from plantstream.core.config import MqttDevice, MqttPayloadKind, MqttTag
from plantstream.core.records import Quality, Sample, sample
from producers.readers.mqtt_payload import (
    BadInput,
    get_path,
    parse_time_us,
    plain_value,
    quality_of,
    split_path,
    typed_value,
)

UMH_TIMESTAMP_KEY = "timestamp_ms"


def topic_filter(device: MqttDevice) -> list[str]:
    """The subscription filters that cover every topic of `device`."""
    out = []
    if "{tag}" in device.topic:
        out.append(device.topic.replace("{tag}", "+"))
    else:
        out.append(device.topic)
    if device.payload is MqttPayloadKind.UMH_HISTORIAN:
        out.append(device.topic + "/#")
    out += [t.topic for t in device.tags if t.topic is not None]
    return out


def filter_covers(broad: str, narrow: str) -> bool:
    """True when every topic matching filter `narrow` also matches filter `broad`."""
    b, n = broad.split("/"), narrow.split("/")
    for i, part in enumerate(b):
        if part == "#":
            return True
        if i >= len(n):
            return False
        if part != "+" and (part != n[i] or n[i] in ("+", "#")):
            return False
    return len(b) == len(n)


def minimal_filters(filters: Sequence[str]) -> list[str]:
    """`filters` without the ones another covers: a broker may deliver a message once per matching filter."""
    unique = list(dict.fromkeys(filters))
    return [f for i, f in enumerate(unique) if not any(j != i and filter_covers(g, f) for j, g in enumerate(unique))]


@dataclass
class _TagPlan:
    index: int
    tag: MqttTag
    value_path: tuple[str, ...]


@dataclass
class _TopicPlan:
    device: int
    tags: list[_TagPlan]
    group: str = ""  # umh_historian: key prefix from the topic's group segments


@dataclass
class _DevicePlan:
    device: MqttDevice
    tz: ZoneInfo
    time_path: tuple[str, ...] | None
    quality_path: tuple[str, ...] | None
    by_key: dict[str, _TagPlan] = field(default_factory=dict)  # umh_historian


class MqttMapping:
    """Routes one message to its device and decodes it into samples."""

    def __init__(self, devices: Sequence[MqttDevice]) -> None:
        self.devices = list(devices)
        self._exact: dict[str, _TopicPlan] = {}
        self._umh_roots: dict[str, int] = {}
        self._plans: list[_DevicePlan] = []
        for di, d in enumerate(self.devices):
            plan = _DevicePlan(
                d,
                ZoneInfo(d.timezone),
                split_path(d.timestamp_path) if d.timestamp_path else None,
                split_path(d.quality_path) if d.quality_path else None,
            )
            self._plans.append(plan)
            if d.payload is MqttPayloadKind.UMH_HISTORIAN:
                self._umh_roots[d.topic] = di
                plan.by_key = {(t.key or t.name): _TagPlan(i, t, ()) for i, t in enumerate(d.tags)}
                if plan.time_path is None:
                    plan.time_path = (UMH_TIMESTAMP_KEY,)
                continue
            for i, t in enumerate(d.tags):
                key = t.key or t.name
                if t.topic is not None:
                    topic = t.topic
                    path = t.value_path or d.value_path
                elif "{tag}" in d.topic:
                    topic = d.topic.replace("{tag}", key)
                    path = t.value_path or d.value_path
                else:
                    topic = d.topic
                    path = t.value_path or key
                entry = self._exact.setdefault(topic, _TopicPlan(di, []))
                if entry.device != di:
                    other = self.devices[entry.device].name
                    raise ValueError(f"topic {topic!r} is claimed by devices {other!r} and {d.name!r}")
                entry.tags.append(_TagPlan(i, t, split_path(path)))
        self.filters = minimal_filters([f for d in self.devices for f in topic_filter(d)])

    def device_of(self, topic: str) -> int | None:
        plan = self._route(topic)
        return plan.device if plan is not None else None

    def _route(self, topic: str) -> _TopicPlan | None:
        plan = self._exact.get(topic)
        if plan is not None or not self._umh_roots:
            return plan
        root, group = topic, ""
        while root:
            di = self._umh_roots.get(root)
            if di is not None:
                return _TopicPlan(di, [], group.replace("/", "."))
            root, _, last = root.rpartition("/")
            group = f"{last}/{group}" if group else last
        return None

    def decode(self, topic: str, payload: bytes, arrival_us: int) -> tuple[int, list[Sample], list[BadInput]]:
        """(device index, samples, problems with single values); BadInput when nothing in it is usable."""
        route = self._route(topic)
        if route is None:
            raise BadInput("unconfigured_topic", "no configured tag or device has this topic")
        plan = self._plans[route.device]
        d = plan.device
        if d.payload is MqttPayloadKind.PLAIN:
            tp = route.tags[0]
            value = plain_value(payload)
            return route.device, [self._sample(tp, value, arrival_us, "GOOD")], []
        doc = _json(payload)
        t = self._time(plan, doc, arrival_us)
        quality: Quality = "GOOD"
        if plan.quality_path is not None:
            try:
                quality = quality_of(get_path(doc, plan.quality_path))
            except BadInput as e:
                if e.kind != "missing_field":
                    raise
        if d.payload is MqttPayloadKind.UMH_HISTORIAN:
            return route.device, *self._umh(plan, route.group, doc, t, quality)
        samples: list[Sample] = []
        problems: list[BadInput] = []
        for tp in route.tags:
            try:
                samples.append(self._sample(tp, get_path(doc, tp.value_path), t, quality))
            except BadInput as e:
                problems.append(BadInput(e.kind, f"tag {tp.tag.name!r}: {e.reason}"))
        if not samples:
            raise (
                problems[0] if len(problems) == 1 else BadInput(problems[0].kind, "; ".join(p.reason for p in problems))
            )
        return route.device, samples, problems

    def _umh(
        self, plan: _DevicePlan, group: str, doc: Any, t: int, quality: Quality
    ) -> tuple[list[Sample], list[BadInput]]:
        if not isinstance(doc, dict):
            raise BadInput("malformed_json", "a _historian payload is a JSON object {timestamp_ms, <tag>: value}")
        samples: list[Sample] = []
        problems: list[BadInput] = []
        skip = plan.time_path[0] if plan.time_path and len(plan.time_path) == 1 else None
        for key, raw in _flatten({k: v for k, v in doc.items() if k != skip}, group):
            tp = plan.by_key.get(key)
            if tp is None:
                problems.append(BadInput("unconfigured_tag", f"key {key!r} is no configured tag"))
                continue
            try:
                samples.append(self._sample(tp, raw, t, quality))
            except BadInput as e:
                problems.append(BadInput(e.kind, f"tag {tp.tag.name!r}: {e.reason}"))
        if not samples:
            reasons = "; ".join(p.reason for p in problems) or "no tag values in it"
            raise BadInput(problems[0].kind if problems else "missing_field", reasons)
        return samples, problems

    @staticmethod
    def _time(plan: _DevicePlan, doc: Any, arrival_us: int) -> int:
        if plan.time_path is None:
            return arrival_us
        fmt = plan.device.timestamp_format
        if plan.device.payload is MqttPayloadKind.UMH_HISTORIAN and plan.device.timestamp_path is None:
            fmt = "epoch_ms"
        return parse_time_us(get_path(doc, plan.time_path), fmt, plan.tz)

    @staticmethod
    def _sample(tp: _TagPlan, raw: Any, t: int, quality: Quality) -> Sample:
        tag = tp.tag
        value = typed_value(raw, tag.type, tag.scale, tag.offset)
        return sample(tag.name, t, value, "BAD" if value is None else quality, tag.unit)


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise BadInput("malformed_json", f"payload is not JSON ({e})") from e


def _flatten(doc: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """Nested objects (UMH tag groups) as dotted keys."""
    out: list[tuple[str, Any]] = []
    for k, v in doc.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out += _flatten(v, key)
        else:
            out.append((key, v))
    return out
