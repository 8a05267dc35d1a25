"""`plantstream bench kafka-start`: what the local Kafka costs before any data flows.

Starts the launcher's Kafka (one broker, or a cluster with --brokers) on free loopback ports in a
temporary state folder, and reports the seconds until every node is a broker in the metadata, then, after
a settle time, the CPU the nodes use while idle (from /proc) and their resident memory. Repeated starts
are fresh clusters (storage formatted each time).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
from typing import Any

from plantstream.bench.common import machine, proc_usage
from plantstream.core.config import Settings
from plantstream.stack import kafka
from plantstream.stack.process import port_free


def _free_ports(brokers: int) -> tuple[int, int]:
    """A broker and a controller port whose node n offsets (+100 * (n - 1)) are free too."""
    for _ in range(100):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            broker, controller = a.getsockname()[1], b.getsockname()[1]
        ports = [p + kafka.NODE_PORT_STEP * i for p in (broker, controller) for i in range(brokers)]
        if len(set(ports)) == len(ports) and all(p < 65536 and port_free(kafka.HOST, p) for p in ports):
            return broker, controller
    raise RuntimeError("no free ports for the local Kafka found")


def measure_once(base: Settings, brokers: int, settle_s: float, window_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plantstream-kafka-start-") as state:
        broker, controller = _free_ports(brokers)
        kafka_settings = base.pipeline.kafka.model_copy(
            update={"brokers": brokers, "broker_port": broker, "controller_port": controller, "bootstrap": None}
        )
        pipeline = base.pipeline.model_copy(update={"kafka": kafka_settings, "state_dir": state})
        s = base.model_copy(update={"pipeline": pipeline})
        t0 = time.monotonic()
        st = kafka.start(s, timeout=300)
        started = time.monotonic() - t0
        try:
            pids = [n.pid for n in st.nodes if n.pid]
            time.sleep(settle_s)
            cpu0 = [proc_usage(p)[0] for p in pids]
            time.sleep(window_s)
            end = [proc_usage(p) for p in pids]
        finally:
            kafka.stop(s)
        idle = sum(100 * (e[0] - c) / window_s for c, e in zip(cpu0, end, strict=True))
        return {
            "start_s": round(started, 1),
            "idle_cpu_percent_of_a_core": round(idle, 1),
            "rss_mb_total": round(sum(e[1] for e in end) / 2**20),
            "jvm_flags": kafka.jvm_flags(s, brokers),
        }


def run_kafka_start_bench(
    settings: Settings, *, brokers: int, repeats: int, settle_s: float, window_s: float
) -> dict[str, Any]:
    runs = [measure_once(settings, brokers, settle_s, window_s) for _ in range(repeats)]
    return {
        "bench": "kafka-start",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "brokers": brokers,
        "settle_s": settle_s,
        "window_s": window_s,
        "runs": runs,
        "median": {
            k: statistics.median(r[k] for r in runs) for k in ("start_s", "idle_cpu_percent_of_a_core", "rss_mb_total")
        },
    }


def render(result: dict[str, Any]) -> str:
    m = result["median"]
    return (
        f"{result['brokers']} node(s), median of {len(result['runs'])}: start {m['start_s']} s, idle CPU "
        f"{m['idle_cpu_percent_of_a_core']} % of a core, RSS {m['rss_mb_total']} MB"
    )
