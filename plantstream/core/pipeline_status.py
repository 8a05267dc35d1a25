"""The pipeline's state in numbers: topics (messages, rate), consumer-group lag, and each stage's state,
rate and lag. `plantstream status` prints it and the dashboard's health panel shows it, from this one module.

A sample reads the topics' end offsets and the plantstream groups' committed offsets from Kafka, and the
components' run files (`<state_dir>/run/*.json`, the counters `plantstream up` shows). Rates are the change
between two samples: messages per second per topic, and each stage's main counter per second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from plantstream.core import consumer_lag, kafka_clients, runstats, topics
from plantstream.core.config import Settings

STALE_AFTER_S = 15.0  # a component's run file not rewritten for this long: it hangs (they flush every 1-2 s)

# the counter whose rate says a component is doing its work
RATE_COUNTERS = {"processor": "frames_in", "sink-storage": "samples_stored", "sink-alerts": "deliveries_sent"}


@dataclass
class Sample:
    """One look at Kafka and the run files, at `mono` (time.monotonic)."""

    mono: float
    bootstrap: str
    partitions: dict[str, int]  # topic -> partitions
    messages: dict[str, int]  # topic -> high - low watermark, summed
    end_offsets: dict[str, dict[int, int]]
    lag: dict[str, dict[str, int]]  # group -> topic -> records past its committed offsets
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> run file
    wall: float = 0.0


def rate_counter(component: str) -> str:
    if component.startswith("producer"):
        return "frames_acked"
    return RATE_COUNTERS.get(runstats.base_component(component), "messages_in")


def group_of(component: str, group_id: str) -> str | None:
    """The consumer group a component commits in (instances of one stage share it); None: it commits none."""
    if component.startswith("producer") or component == "dashboard":
        return None
    return f"{group_id}-{runstats.base_component(component)}"  # the instances of a stage share its group


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def stage_state(run: Mapping[str, Any], wall: float, alive: bool) -> str:
    """running, stale (its process is there but wrote no counters for STALE_AFTER_S) or stopped."""
    if not alive:
        return "stopped"
    return "running" if wall - float(run.get("updated", 0)) <= STALE_AFTER_S else "stale"


def stages(
    prev_runs: Mapping[str, Mapping[str, Any]], cur: Sample, group_id: str, alive: Mapping[str, bool]
) -> list[dict[str, Any]]:
    """Per component: state, its main counter's rate since an earlier version of its run file (`prev_runs`),
    its group's committed lag, and the levels that say it is behind (a producer's store-and-forward buffer)."""
    out = []
    for comp, run in sorted(cur.runs.items()):
        if comp == "dashboard":
            continue
        counts = run.get("counts", {})
        name = rate_counter(comp)
        state = stage_state(run, cur.wall, alive.get(comp, False))
        rate = None
        before = prev_runs.get(comp)
        if state == "running" and before is not None and before.get("pid") == run.get("pid"):
            dt = float(run.get("updated", 0)) - float(before.get("updated", 0))
            if dt > 0:
                rate = max(0.0, (counts.get(name, 0) - before.get("counts", {}).get(name, 0)) / dt)
        group = group_of(comp, group_id)
        lag = sum(cur.lag.get(group, {}).values()) if group is not None and group in cur.lag else None
        out.append(
            {
                "component": comp,
                "state": state,
                "rate_name": name,
                "rate_per_s": None if rate is None else round(rate, 1),
                "total": int(counts.get(name, 0)),
                "group": group,
                "lag": lag,
                "buffered": int(counts["buffer_frames"]) if "buffer_frames" in counts else None,
                "dead_letters": int(counts.get("dead_letters", 0)),
                "updated_age_s": round(wall_age(run, cur.wall), 1),
                "anomaly_models": anomaly_models(run),
            }
        )
    return out


def anomaly_models(run: Mapping[str, Any]) -> dict[str, int] | None:
    """A worker's anomaly models by state ({"ready": n, "warming_up": m}); None for other components."""
    series = run.get("levels", {}).get("anomaly_models")
    if not series:
        return None
    return {str(s["labels"].get("state")): int(s["value"]) for s in series}


def wall_age(run: Mapping[str, Any], wall: float) -> float:
    return max(0.0, wall - float(run.get("updated", 0)))


def topic_rates(prev: Sample | None, cur: Sample) -> list[dict[str, Any]]:
    out = []
    dt = cur.mono - prev.mono if prev is not None else 0.0
    for name, ends in cur.end_offsets.items():
        rate = None
        if prev is not None and dt > 0 and name in prev.end_offsets:
            rate = max(0, sum(ends.values()) - sum(prev.end_offsets[name].values())) / dt
        out.append(
            {
                "name": name,
                "partitions": cur.partitions[name],
                "messages": cur.messages[name],
                "end_offsets": ends,
                "rate_per_s": 0.0 if rate is None else round(rate, 1),
            }
        )
    return out


def view(
    prev: Sample | None, cur: Sample, group_id: str, prev_runs: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON both `plantstream status --json` and the dashboard show."""
    alive = {c: pid_alive(r.get("pid")) for c, r in cur.runs.items()}
    earlier = prev_runs if prev_runs is not None else prev.runs if prev is not None else {}
    return {
        "bootstrap": cur.bootstrap,
        "topics": topic_rates(prev, cur),
        "groups": [{"group": g, "lag": lag} for g, lag in sorted(cur.lag.items())],
        "stages": stages(earlier, cur, group_id, alive),
        "rate_window_s": None if prev is None else round(cur.mono - prev.mono, 2),
    }


class Sampler:
    """Kafka clients kept open between samples (the dashboard samples every few seconds), and the last two
    distinct versions of each run file: a component rewrites its file every 1-2 s, so two samples close
    together may see the same version, and its rate is then taken from the version before."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = AdminClient(kafka_clients.admin_config(settings))
        self.consumer = Consumer(kafka_clients.consumer_config(settings, "plantstream-status", "status"))
        self.prev: Sample | None = None
        self.latest_runs: dict[str, dict[str, Any]] = {}
        self.older_runs: dict[str, dict[str, Any]] = {}

    def status(self) -> dict[str, Any]:
        """Sample now and compare with the previous sample: the dashboard's periodic call."""
        cur = self.sample()
        for comp, run in cur.runs.items():
            last = self.latest_runs.get(comp)
            if last is None or last.get("updated") != run.get("updated"):
                if last is not None:
                    self.older_runs[comp] = last
                self.latest_runs[comp] = run
        out = view(self.prev, cur, self.settings.pipeline.group_id, self.older_runs)
        self.prev = cur
        return out

    def sample(self) -> Sample:
        s = self.settings
        md = self.admin.list_topics(timeout=10).topics
        names = [s.topic(t.base) for t in topics.TOPICS if s.topic(t.base) in md]
        parts, msgs, ends, lows = {}, {}, {}, {}
        for n in names:
            lows[n], ends[n], msgs[n] = self._watermarks(n, sorted(md[n].partitions))
            parts[n] = len(ends[n])
        lag: dict[str, dict[str, int]] = {}
        listed = self.admin.list_consumer_groups(request_timeout=10).result()
        mine = sorted(x.group_id for x in listed.valid if x.group_id.startswith(s.pipeline.group_id))
        for g in mine:
            committed = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g].result()
            done: dict[str, dict[int, int]] = {}
            for tp in committed.topic_partitions or []:
                if tp.topic in ends and tp.offset >= 0:
                    done.setdefault(tp.topic, {})[tp.partition] = tp.offset
            # a partition of a topic the group reads but has never committed counts whole: the group
            # starts there from the earliest record (auto.offset.reset): consumer_lag.partition_lag
            lag[g] = {
                t: sum(
                    consumer_lag.partition_lag(end, -1, by_partition.get(p, -1), lows[t].get(p, 0)) or 0
                    for p, end in ends[t].items()
                )
                for t, by_partition in done.items()
            }
        runs = runstats.read_all(s.pipeline.state_dir)
        return Sample(time.monotonic(), kafka_clients.bootstrap(s), parts, msgs, ends, lag, runs, time.time())

    def _watermarks(self, topic: str, partitions: list[int]) -> tuple[dict[int, int], dict[int, int], int]:
        """(low by partition, high by partition, records held)"""
        lows, highs, total = {}, {}, 0
        for p in partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            lows[p], highs[p] = low, high
            total += high - low
        return lows, highs, total

    def close(self) -> None:
        self.consumer.close()


def collect(settings: Settings, rate_window_s: float = 1.0) -> dict[str, Any]:
    """Samples `rate_window_s` apart, as `plantstream status` prints them; a running component whose run file
    did not change in between gets one more look a second later."""
    sampler = Sampler(settings)
    try:
        sampler.status()
        time.sleep(rate_window_s)
        out = sampler.status()
        if any(st["state"] == "running" and st["rate_per_s"] is None for st in out["stages"]):
            time.sleep(1.0)
            out = sampler.status()
        return out
    finally:
        sampler.close()
