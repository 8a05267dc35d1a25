"""How the local Kafka nodes are doing: which node is the active controller, which nodes the metadata lists
as brokers, and which partitions are under-replicated or offline (`plantstream kafka status`).

The active controller is read from the quorum state each KRaft voter keeps in its metadata log folder
(`__cluster_metadata-0/quorum-state`, rewritten at every election): the leader of the highest epoch.
librdkafka has no DescribeQuorum call, and a KRaft broker answers a metadata request with a random broker
as "controller", so the metadata cannot say it.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from plantstream.core.config import Settings
from plantstream.stack import kafka


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # -1: offline
    replicas: list[int]
    isr: list[int]


@dataclass
class ClusterHealth:
    nodes: list[kafka.NodeStatus]
    controller: int | None  # node id of the active controller; None: no quorum leader known
    controller_epoch: int | None
    brokers: list[int] = field(default_factory=list)  # node ids the metadata lists as brokers
    under_replicated: list[PartitionState] = field(default_factory=list)
    offline: list[PartitionState] = field(default_factory=list)
    error: str | None = None  # the metadata could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def controller(settings: Settings) -> tuple[int | None, int | None]:
    """(node id, epoch) of the quorum leader of the highest epoch any running node has seen."""
    best: tuple[int | None, int | None] = (None, None)
    for n in kafka.status(settings).nodes:
        if not n.running:
            continue
        path = Path(n.data_dir) / "__cluster_metadata-0" / "quorum-state"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads(path.read_text())
            leader, epoch = int(state["leaderId"]), int(state["leaderEpoch"])
            if leader >= 0 and (best[1] is None or epoch > best[1]):
                best = (leader, epoch)
    return best


def partitions(settings: Settings, timeout: float = 5.0) -> tuple[list[int], list[PartitionState]]:
    """The brokers the metadata lists and the state of every partition (internal topics included)."""
    from plantstream.core.kafka_clients import admin_config

    admin = AdminClient({**admin_config(settings), "log_level": 0})
    md = admin.list_topics(timeout=timeout)
    out = [
        PartitionState(name, p.id, p.leader, list(p.replicas), list(p.isrs))
        for name, t in md.topics.items()
        for p in t.partitions.values()
    ]
    return sorted(md.brokers), sorted(out, key=lambda x: (x.topic, x.partition))


def health(settings: Settings, timeout: float = 5.0) -> ClusterHealth:
    st = kafka.status(settings)
    leader, epoch = controller(settings)
    out = ClusterHealth(st.nodes, leader, epoch)
    if not st.bootstrap:
        return out
    try:
        out.brokers, parts = partitions(settings, timeout)
    except KafkaException as e:
        out.error = str(e)
        return out
    out.under_replicated = [p for p in parts if len(p.isr) < len(p.replicas)]
    out.offline = [p for p in parts if p.leader < 0]
    return out


def leader_of(settings: Settings, topic: str, partition: int, timeout: float = 5.0) -> int:
    """The node leading a partition now (-1: none)."""
    _, parts = partitions(settings, timeout)
    for p in parts:
        if p.topic == topic and p.partition == partition:
            return p.leader
    raise KeyError(f"{topic}[{partition}] is not in the cluster's metadata")


def wait_in_sync(settings: Settings, timeout: float = 120.0) -> float:
    """Block until every node is a broker again and no partition is under-replicated or offline; the seconds
    it took. Raises TimeoutError naming what is still behind."""
    t0 = time.monotonic()
    last: ClusterHealth | None = None
    while time.monotonic() - t0 < timeout:
        last = health(settings)
        want = {n.node_id for n in last.nodes}
        if last.error is None and want <= set(last.brokers) and not last.under_replicated and not last.offline:
            return time.monotonic() - t0
        time.sleep(0.5)
    assert last is not None
    behind = [f"{p.topic}[{p.partition}] isr {p.isr} of {p.replicas}" for p in last.under_replicated[:5]]
    raise TimeoutError(
        f"Kafka not in sync after {timeout:.0f}s: brokers {last.brokers}, {len(last.under_replicated)} "
        f"under-replicated ({', '.join(behind)}), {len(last.offline)} offline, error {last.error}"
    )


def render(h: ClusterHealth) -> str:
    lines = [f"{'node':>4}  {'state':<8} {'pid':>7}  {'broker':<22} {'controller':<22} role"]
    for n in h.nodes:
        role = []
        if n.node_id in h.brokers:
            role.append("broker")
        if h.controller == n.node_id:
            role.append(f"active controller (epoch {h.controller_epoch})")
        elif n.running:
            role.append("voter")
        lines.append(
            f"{n.node_id:>4}  {'running' if n.running else 'down':<8} {n.pid or '-':>7}  {n.bootstrap:<22} "
            f"{n.controller:<22} {', '.join(role) or '-'}"
        )
    if h.error:
        lines.append(f"metadata: unavailable ({h.error})")
    else:
        lines.append(f"partitions: {len(h.under_replicated)} under-replicated, {len(h.offline)} offline")
        lines += [
            f"  {p.topic}[{p.partition}] leader {p.leader} isr {p.isr} of {p.replicas}"
            for p in (h.offline + h.under_replicated)[:20]
        ]
    return "\n".join(lines)
