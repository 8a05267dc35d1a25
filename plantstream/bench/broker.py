"""`plantstream bench mqtt|sparkplug`: metrics per second from an MQTT broker to Kafka acknowledgement,
through ONE producer process (the real reader, frames Avro-encoded into the store-and-forward buffer
and acknowledged by Kafka).

A backlog is queued in a fresh mosquitto for the producer's persistent session while it is away
(QoS 1 for mqtt; Sparkplug's QoS 0 data queued with `queue_qos0_messages`), by publisher processes
of their own. Then the producer starts; the figure is the backlog's metrics divided by the time from
its connect to the last frame acknowledged by Kafka, so neither the publisher nor the broker's
intake limits it. Shapes: mqtt `topic_per_tag` (one JSON value per message) or `umh_historian`
(`tags` values per message); sparkplug DDATA with `tags` metrics per message from `devices`
devices behind one edge node (births first, consecutive seq).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from plantstream.core.config import Settings
from plantstream.core.records import ReadingFrame
from plantstream.stack.mosquitto import Mosquitto

GROUP, NODE = "Bench", "Edge1"


def _asset(i: int) -> str:
    return f"bench.site.area.line.m{i}"


def _config(
    base: Settings, bootstrap: str, url: str, state: Path, port: int, kind: str, shape: str, devices: int, tags: int
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "plant": {"assets": [{"path": _asset(i)} for i in range(devices)]},
        "pipeline": {
            "kafka": {"bootstrap": bootstrap, "topic_prefix": f"bench{uuid.uuid4().hex[:6]}.", "partitions": 6},
            "registry": {"url": url},
            "state_dir": str(state),
            "metrics": {"enabled": False},
            "mqtt": {"local_port": port, "brokers": {"local": {"client_id": "bench-host", "max_unacked": 65535}}},
        },
    }
    devs = []
    for i in range(devices):
        if kind == "sparkplug":
            devs.append(
                {
                    "name": f"d{i}",
                    "protocol": "sparkplug_b",
                    "asset": _asset(i),
                    "group_id": GROUP,
                    "edge_node_id": NODE,
                    "device_id": f"D{i}",
                    "frame_period_s": 1.0,
                    "tags": [{"name": f"t{j}", "type": "float64"} for j in range(tags)],
                }
            )
        elif shape == "umh_historian":
            devs.append(
                {
                    "name": f"d{i}",
                    "protocol": "mqtt",
                    "asset": _asset(i),
                    "payload": "umh_historian",
                    "topic": f"umh/v1/bench/site/area/line/m{i}/_historian",
                    "frame_period_s": 1.0,
                    "tags": [{"name": f"t{j}", "type": "float64"} for j in range(tags)],
                }
            )
        else:
            devs.append(
                {
                    "name": f"d{i}",
                    "protocol": "mqtt",
                    "asset": _asset(i),
                    "payload": "json",
                    "topic": f"bench/site/area/line/m{i}/{{tag}}",
                    "timestamp_path": "ts",
                    "frame_period_s": 1.0,
                    "tags": [{"name": f"t{j}", "type": "float64"} for j in range(tags)],
                }
            )
    raw["devices"] = devs
    return raw


# --- the publisher process ----------------------------------------------------------------------------


def _messages(
    kind: str, shape: str, devices: int, tags: int, messages: int, part: int, parts: int
) -> list[tuple[str, bytes, int]]:
    """This publisher's share of the backlog: (topic, payload, qos)."""
    out: list[tuple[str, bytes, int]] = []
    t0 = int(time.time() * 1000) - 3_600_000
    if kind == "sparkplug":
        from producers.readers import sparkplug_codec as codec
        from producers.readers.sparkplug_b_pb2 import DataType, Payload

        if part:
            return out
        seq = 0
        node = Payload(timestamp=t0, seq=seq)
        m = node.metrics.add()
        m.name = codec.BD_SEQ
        codec.set_value(m, DataType.Int64, 0)
        out.append((codec.topic_of("NBIRTH", GROUP, NODE), node.SerializeToString(), 0))
        for d in range(devices):
            seq += 1
            p = Payload(timestamp=t0, seq=seq)
            for j in range(tags):
                mm = p.metrics.add()
                mm.name, mm.alias, mm.timestamp = f"t{j}", j + 1, t0
                codec.set_value(mm, DataType.Double, 0.0)
            out.append((codec.topic_of("DBIRTH", GROUP, NODE, f"D{d}"), p.SerializeToString(), 0))
        for i in range(messages):
            seq = (seq + 1) % 256
            d = i % devices
            t = t0 + i
            p = Payload(timestamp=t, seq=seq)
            for j in range(tags):
                mm = p.metrics.add()
                mm.alias, mm.timestamp, mm.double_value = j + 1, t, float(i + j)
            out.append((codec.topic_of("DDATA", GROUP, NODE, f"D{d}"), p.SerializeToString(), 0))
        return out
    for i in range(part, messages, parts):
        d = i % devices
        t = t0 + i
        if shape == "umh_historian":
            doc = {"timestamp_ms": t, **{f"t{j}": float(i + j) for j in range(tags)}}
            out.append((f"umh/v1/bench/site/area/line/m{d}/_historian", json.dumps(doc).encode(), 1))
        else:
            j = (i // devices) % tags
            out.append((f"bench/site/area/line/m{d}/t{j}", b'{"value": %d.5, "ts": %d}' % (i, t), 1))
    return out


_OUTSTANDING = 30_000  # paho's message ids wrap at 65535: more queued at once collide (ERR_QUEUE_SIZE)


def _publish(port: int, args: tuple[str, str, int, int, int, int, int], done: Any) -> None:
    import collections

    import paho.mqtt.client as mqtt

    try:
        msgs = _messages(*args)
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        infos: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        for t, p, q in msgs:
            if len(infos) >= _OUTSTANDING:
                infos.popleft().wait_for_publish(120)
            infos.append(c.publish(t, p, qos=q))
        for info in infos:
            info.wait_for_publish(120)
        c.disconnect()
        c.loop_stop()
        done.put(len(msgs))
    except Exception as e:  # the parent waits on `done`: tell it, rather than let it time out
        done.put(f"bench publisher failed: {type(e).__name__}: {e}")
        raise


# --- the measured producer ------------------------------------------------------------------------------


async def _drain(settings: Settings, kind: str, expect: int, timeout: float) -> dict[str, Any]:
    from plantstream.core.runstats import RunStats
    from producers.service import frame_publisher

    stats = RunStats(f"producer-{kind}", settings.pipeline.state_dir)
    sink = frame_publisher(settings, f"producer-{kind}", stats)
    if kind == "sparkplug":
        from producers.readers.sparkplug import run_sparkplug_producer as run
    else:
        from producers.readers.mqtt import run_mqtt_producer as run
    stop = asyncio.Event()
    acked_samples = 0
    sizes: dict[int, int] = {}

    def emit(frame: ReadingFrame) -> None:
        sizes[id(frame)] = len(frame["samples"])
        sink.emit(frame)

    load0 = os.getloadavg()[0]  # others' work on the shared machine shows here
    cpu0, t0 = time.process_time(), time.monotonic()
    task = asyncio.ensure_future(run(settings, emit, stop, stats))
    deadline = t0 + timeout
    first: float | None = None
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if first is None and stats.get("messages"):
            first = time.monotonic()
        if stats.get("samples_received") >= expect and stats.get("frames_acked") >= stats.get("frames_produced") > 0:
            break
    end = time.monotonic()
    cpu = time.process_time() - cpu0
    acked_samples = stats.get("samples_received")
    stop.set()
    await task
    sink.close(30)
    took = end - (first or t0)
    return {
        "metrics": acked_samples,
        "messages": stats.get("messages"),
        "frames_acked": stats.get("frames_acked"),
        "seconds": round(took, 2),
        "metrics_per_s": round(acked_samples / took) if took > 0 else 0,
        "cpu_s": round(cpu, 2),
        "complete": acked_samples >= expect,
        "bad_input": sum(v for k, v in stats.snapshot()["counts"].items() if k.startswith("bad_")),
        "load_average_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_broker_bench(
    base: Settings,
    kind: str,
    *,
    shape: str = "topic_per_tag",
    devices: int = 20,
    tags: int = 25,
    metrics: int = 500_000,
    repeats: int = 3,
    publishers: int = 2,
    timeout: float = 300.0,
) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient

    from plantstream.bench.common import machine
    from plantstream.core import kafka_clients, topics
    from plantstream.up import Orchestrator

    per_message = 1 if (kind == "mqtt" and shape == "topic_per_tag") else tags
    messages = metrics // per_message
    expect = messages * per_message
    orch = Orchestrator(base, None)
    bootstrap, url = orch.start_stack()
    runs = []
    try:
        for r in range(repeats):
            with tempfile.TemporaryDirectory(prefix=f"{kind}-bench-") as tmp:
                port = _free_port()
                broker = Mosquitto(
                    Path(tmp) / "mosquitto", port, persistence=False, extra_conf="queue_qos0_messages true\n"
                )
                broker.start()
                try:
                    raw = _config(base, bootstrap, url, Path(tmp) / "state", port, kind, shape, devices, tags)
                    settings = Settings(**raw)
                    topics.apply(settings, AdminClient(kafka_clients.admin_config(settings)))
                    topics.register_schemas(settings, kafka_clients.registry(settings))
                    # the producer's persistent session and subscriptions exist before the backlog is queued
                    asyncio.run(_drain(settings, kind, 0, 3.0))
                    parts = 1 if kind == "sparkplug" else publishers
                    done: Any = mp.get_context("spawn").Queue()
                    procs = [
                        mp.get_context("spawn").Process(
                            target=_publish, args=(port, (kind, shape, devices, tags, messages, i, parts), done)
                        )
                        for i in range(parts)
                    ]
                    t_pub = time.monotonic()
                    for p in procs:
                        p.start()
                    counts = [done.get(timeout=timeout) for _ in procs]
                    if failed := [c for c in counts if isinstance(c, str)]:
                        raise RuntimeError(failed[0])
                    queued = sum(counts)
                    for p in procs:
                        p.join(10)
                    pub_s = time.monotonic() - t_pub
                    births = devices * tags if kind == "sparkplug" else 0  # DBIRTH values are framed too
                    result = asyncio.run(_drain(settings, kind, expect + births, timeout))
                    result.update(run=r, queued_messages=queued, publish_seconds=round(pub_s, 1))
                    runs.append(result)
                finally:
                    broker.stop()
    finally:
        from plantstream.stack import kafka as local_kafka
        from plantstream.stack import registry as local_registry

        if orch.started_registry:
            local_registry.stop(base)
        if orch.started_kafka:
            local_kafka.stop(base)
    rates = [run["metrics_per_s"] for run in runs]
    return {
        "bench": kind,
        "shape": "sparkplug_ddata" if kind == "sparkplug" else shape,
        "devices": devices,
        "metrics_per_message": per_message,
        "metrics": expect,
        "repeats": repeats,
        "median_metrics_per_s": statistics.median(rates) if rates else 0,
        "goal_metrics_per_s": 50_000,
        "runs": runs,
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['bench']} ({result['shape']}, {result['metrics_per_message']} metric(s)/message, "
        f"{result['devices']} devices): median {result['median_metrics_per_s']:,.0f} metrics/s broker -> Kafka ack"
    ]
    for r in result["runs"]:
        lines.append(
            f"  run {r['run']}: {r['metrics']:,} metrics in {r['seconds']} s = {r['metrics_per_s']:,}/s, "
            f"cpu {r['cpu_s']} s, frames acked {r['frames_acked']}, complete {r['complete']}"
        )
    return "\n".join(lines)
