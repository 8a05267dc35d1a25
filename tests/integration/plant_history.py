"""Deterministic plant history for worker tests, the results the pure modules expect from it, and the
plumbing to run Faust workers as child processes and read their output topics from given offsets.

The history follows the configured devices' tags and roles (process values, counters, machine state),
so assets with a machine_state tag get OEE windows; assets without devices get three process values.
Every value is a function of (asset, frame index) only, so any slice of the history is reproducible.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from plantstream.core import kafka_clients, reporting, runstats, topics
from plantstream.core.config import Settings, TagRole, TagType
from processors import event_windows, oee
from tests.conftest import write_config
from tests.helpers import frame_codec, spawn_cli

_INT_TYPES = {TagType.INT16, TagType.UINT16, TagType.INT32, TagType.UINT32, TagType.INT64, TagType.UINT64}
# machine_state codes of the demo plant (plantstream/core/machine_state.DEFAULT_STATE_MAP) over an 80-frame cycle:
# a 4-frame unplanned stop (a micro-stop where the asset's threshold is 10 s), idle, a planned stop
# and a 12-frame unplanned stop (a failure everywhere)
_CYCLE = [(30, 1), (4, 4), (11, 1), (5, 2), (5, 3), (5, 1), (12, 4), (8, 1)]
_STATE_AT = [code for n, code in _CYCLE for _ in range(n)]
_GENERIC_TAGS = ("temperature", "pressure", "flow")


def partition_of(asset: str, partitions: int) -> int:
    """Where librdkafka's default partitioner (consistent_random: CRC32 of the key) puts an asset."""
    return zlib.crc32(asset.encode()) % partitions


def _tags(settings: Settings, asset: str) -> list[tuple[str, TagRole, TagType | None, float, str]]:
    out = []
    for d in settings.devices:
        if d.asset == asset:
            out += [(t.name, t.role, getattr(t, "type", None), t.scale, t.unit) for t in d.tags]
    return out or [(name, TagRole.PROCESS_VALUE, TagType.FLOAT64, 1.0, "") for name in _GENERIC_TAGS]


def history(settings: Settings, assets: Iterable[str], n: int, t0: int, period_us: int = 1_000_000) -> list[dict]:
    """n frames per asset, `period_us` apart from t0, interleaved in time order."""
    per_asset = {a: _asset_frames(settings, a, ai, n, t0, period_us) for ai, a in enumerate(assets)}
    return [per_asset[a][i] for i in range(n) for a in per_asset]


def _asset_frames(settings: Settings, asset: str, ai: int, n: int, t0: int, period_us: int) -> list[dict]:
    tags = _tags(settings, asset)
    # uint32 counters start just below their rollover, so a rollover falls inside the history
    counts = {name: (2**32 - 7 if typ is TagType.UINT32 else 100) for name, role, typ, _, _ in tags}
    frames = []
    for i in range(n):
        t = t0 + i * period_us
        code = _STATE_AT[(i + 7 * ai) % len(_STATE_AT)]
        rng = random.Random(f"{asset}:{i}")
        load = (0.6 + 0.3 * math.sin(2 * math.pi * (i + 5 * ai) / 37)) if code == 1 else 0.1
        samples = []
        for k, (name, role, typ, scale, unit) in enumerate(tags):
            value: Any
            if role is TagRole.MACHINE_STATE:
                value = code
            elif role in (TagRole.COUNTER_TOTAL, TagRole.COUNTER_GOOD, TagRole.COUNTER_SCRAP):
                made = code == 1 and i % 2 == 0  # a part every other second while running
                scrap = made and i % 14 == 0
                counts[name] += {
                    TagRole.COUNTER_TOTAL: made,
                    TagRole.COUNTER_GOOD: made and not scrap,
                    TagRole.COUNTER_SCRAP: scrap,
                }[role]
                counts[name] %= 2**32
                value = counts[name]
            elif role is TagRole.STATUS:
                value = code == 1
            else:
                base = 10.0 * (k + 1)
                x = base * (1 + 0.5 * load) + rng.gauss(0.0, 0.02 * base)
                value = round(x) if typ in _INT_TYPES and scale == 1 else round(x, 3)
            samples.append({"tag": name, "source_time": t, "value": value, "quality": "GOOD", "unit": unit})
        frames.append(
            {
                "asset": asset,
                "device": f"dev{ai}",
                "seq": i,
                "producer_id": "plant-history",
                "scan_time": t,
                "historical": True,
                "buffered": False,
                "samples": samples,
            }
        )
    return frames


def expected_kpi(settings: Settings, frames: list[dict], *, flush: bool) -> list[dict]:
    """KpiWindow records of the history, by processors.event_windows; `flush` closes the last windows too
    (as the worker's idle fallback does once the assets fall silent)."""
    w = settings.pipeline.windows
    size, grace = w.kpi_window_s * 1_000_000, int(w.grace_s * 1_000_000)
    hop = (w.hop_s or w.kpi_window_s) * 1_000_000
    states: dict[str, dict] = {}
    out: list[dict] = []
    for f in frames:
        st = states.setdefault(f["asset"], event_windows.new_state())
        out += event_windows.apply_frame(st, f, size, grace, hop, silence=reporting.silence_us(settings, f["asset"]))
    if flush:
        for asset, st in states.items():
            out += event_windows.close_until(st, asset, size, 2**62, hop, reporting.silence_us(settings, asset))
    return out


def expected_oee(settings: Settings, frames: list[dict], *, flush: bool = False) -> list[dict]:
    """OeeWindow records of the history, by processors.oee; `flush` adds what the worker's idle fallback
    closes once the assets fall silent."""
    w = settings.pipeline.windows
    size, grace = w.kpi_window_s * 1_000_000, int(w.grace_s * 1_000_000)
    states: dict[str, dict] = {}
    out: list[dict] = []
    for f in frames:
        prof = oee.profile_for(settings, f["asset"])
        if prof is not None:
            out += oee.apply_frame(states.setdefault(f["asset"], oee.new_state()), f, prof, size, grace)
    if flush:
        for asset, st in states.items():
            prof = oee.profile_for(settings, asset)
            assert prof is not None
            out += oee.advance_idle(st, prof, size, grace, 10**12)
    return out


def produce_frames(settings: Settings, frames: list[dict]) -> dict[str, int]:
    """Produce the frames keyed by asset with the default partitioner; asset -> partition it landed on."""
    codec = frame_codec(settings)
    landed: dict[str, int] = {}
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            landed[msg.key().decode()] = msg.partition()

    p = Producer(kafka_clients.producer_config(settings, "test"))
    topic = settings.topic(topics.READINGS)
    for f in frames:
        p.produce(topic, key=f["asset"].encode(), value=codec.encode(f), on_delivery=delivered)
    assert p.flush(30) == 0 and not failures, failures[:3]
    return landed


def natural_kpi(r: dict) -> tuple:
    return (r["asset"], r["tag"], r["window_start"], r["window_end"])


def natural_oee(r: dict) -> tuple:
    return (r["asset"], r["window_start"], r["window_end"], r["shift"])


def canonical(records: list[dict], key: Any) -> list[dict]:
    """Records sorted by natural key, as plain JSON values, so lists compare field by field."""
    return [json.loads(json.dumps(r, sort_keys=True)) for r in sorted(records, key=key)]


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer(kafka_clients.consumer_config(settings, f"test-offsets-{time.time_ns()}", "test"))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def read_from(
    settings: Settings,
    topic: str,
    start: dict[int, int] | None,
    expect: int,
    timeout: float,
    settle: float = 1.5,
    distinct: bool = False,
) -> list[Any]:
    """Messages of `topic` from the given offsets (None: the beginning) until `expect` arrived (`distinct`:
    `expect` different values, so repeats do not end the wait early) or the timeout, then `settle` seconds
    more so that extra (duplicate) messages show."""
    c = Consumer(kafka_clients.consumer_config(settings, f"test-read-{time.time_ns()}", "test"))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, (start or {}).get(p, -2)) for p in parts])
        out: list[Any] = []
        seen: set[bytes] = set()
        deadline = time.monotonic() + timeout
        while (len(seen) if distinct else len(out)) < expect and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and not m.error():
                out.append(m)
                seen.add(m.value() or b"")
        end = time.monotonic() + settle
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m)
        return out
    finally:
        c.close()


def worker_counts(settings: Settings) -> dict[str, int]:
    """The counters of the worker of this state folder (its RunStats file, written every second)."""
    snap = runstats.read_all(settings.pipeline.state_dir).get("processor", {})
    return dict(snap.get("counts", {}))


def frames_in(settings: Settings) -> int:
    return int(worker_counts(settings).get("frames_in", 0))


def worker_config(tmp_path: Path, raw: dict[str, Any], name: str) -> tuple[Settings, Path]:
    """A copy of the config with the worker's own state folder (RunStats file, Faust data dir)."""
    raw = json.loads(json.dumps(raw))
    raw["pipeline"]["state_dir"] = str(tmp_path / name / "state")
    (tmp_path / name).mkdir(exist_ok=True)
    return Settings(**raw), write_config(tmp_path / name, raw)


def spawn_worker(tmp_path: Path, config: Path, name: str) -> Any:
    return spawn_cli(config, "process", log=tmp_path / name / "worker.log")


def group_assignment(settings: Settings) -> dict[str, set[int]]:
    """The worker group's members (member id) -> readings partitions they hold, as the broker tells."""
    admin = AdminClient(kafka_clients.admin_config(settings))
    group = f"{settings.pipeline.group_id}-processor"
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:  # no such group yet, or its coordinator is still loading
        return {}
    readings = settings.topic(topics.READINGS)
    out: dict[str, set[int]] = {}
    for m in desc.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        out[m.member_id] = {tp.partition for tp in tps if tp.topic == readings}
    return out
