"""`plantstream bench opcua`: OPC UA data changes per second through ONE producer process into Kafka.

Server side: `servers` asyncua processes (python -m plantstream.bench.opcua serve ...), each with its
share of `nodes` Double variables, every one written `rate_hz` times a second. Client side: this
process runs run_opcua_producer (one subscription per server, batching a publish cycle into one
frame) into a Publisher, i.e. Avro-encoded and acknowledged by Kafka.

Reported per run and as medians: changes/s offered by the servers (their measured write rate),
changes/s received and emitted by the producer, frames/s acknowledged by Kafka, and the producer's
CPU use. When the servers cannot write the offered rate, the figure says so (`server_bound`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from plantstream.core.config import Settings
from plantstream.core.records import ReadingFrame

WARMUP_S = 3.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the server process -----------------------------------------------------------------------------


async def serve(port: int, nodes: int, rate_hz: float, report: Path) -> None:
    """N Double variables ns=2;s=v<i>, all rewritten every 1/rate_hz s; writes/s go to `report` each second."""
    import datetime as dt

    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:plantstream:bench")
    folder = await server.nodes.objects.add_object(idx, "bench")
    ids = [ua.NodeId.from_string(f"ns={idx};s=v{i}") for i in range(nodes)]
    for i, nid in enumerate(ids):
        await folder.add_variable(nid, f"v{i}", 0.0)
    await server.start()
    print("ready", flush=True)
    interval = 1.0 / rate_hz
    tick, writes, t_report = 0, 0, time.monotonic()
    next_at = time.monotonic()
    while True:
        tick += 1
        stamp = cast(ua.DateTime, dt.datetime.now(dt.UTC))
        for i, nid in enumerate(ids):
            dv = ua.DataValue(
                ua.Variant(float(tick + i), ua.VariantType.Double), SourceTimestamp=stamp, ServerTimestamp=stamp
            )
            await server.write_attribute_value(nid, dv)
        writes += len(ids)
        if time.monotonic() - t_report >= 1.0:
            report.write_text(json.dumps({"writes_per_s": writes / (time.monotonic() - t_report)}))
            writes, t_report = 0, time.monotonic()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay < 0:
            next_at = time.monotonic()  # behind: write again at once, the measured rate shows it
        await asyncio.sleep(max(0.0, delay))


# --- the producer side ------------------------------------------------------------------------------


def bench_config(
    base: Settings, bootstrap: str, url: str, ports: list[int], per_server: int, publishing_ms: float
) -> dict[str, Any]:
    raw = base.model_dump(mode="json", exclude={"devices", "replay", "plant"})
    raw["pipeline"]["kafka"]["bootstrap"] = bootstrap
    raw["pipeline"]["registry"]["url"] = url
    raw["pipeline"]["kafka"]["topic_prefix"] = f"bench{uuid.uuid4().hex[:6]}."
    raw["pipeline"]["store_forward"]["enabled"] = False
    # model_dump writes secrets as '**********': bring the real ones back
    for section, field in (("kafka", "sasl_password"), ("registry", "password")):
        secret = getattr(getattr(base.pipeline, section), field)
        raw["pipeline"][section][field] = secret.get_secret_value() if secret else None
    raw["pipeline"]["alerting"] = {}
    raw["pipeline"]["alerts"] = []
    raw["plant"] = {"name": "bench", "assets": [{"path": f"bench.site.area.line.s{i}"} for i in range(len(ports))]}
    raw["devices"] = [
        {
            "name": f"opcua{i}",
            "protocol": "opcua",
            "asset": f"bench.site.area.line.s{i}",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/bench",
            "publishing_interval_ms": publishing_ms,
            "sampling_interval_ms": 0,
            "queue_size": 10,
            "timeout_s": 10,
            "tags": [{"name": f"v{j}", "node_id": f"ns=2;s=v{j}", "type": "float64"} for j in range(per_server)],
        }
        for i, port in enumerate(ports)
    ]
    return raw


async def _measure(settings: Settings, seconds: float) -> dict[str, Any]:
    import schemas
    from plantstream.core import kafka_clients, topics
    from plantstream.core.runstats import RunStats
    from producers.publisher import Publisher
    from producers.readers.opcua import run_opcua_producer

    stats = RunStats("bench-opcua", settings.pipeline.state_dir)
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    sink = Publisher(settings, codec, stats)
    counted = {"samples": 0, "frames": 0}

    def emit(frame: ReadingFrame) -> None:
        counted["samples"] += len(frame["samples"])
        counted["frames"] += 1
        sink.emit(frame)

    stop = asyncio.Event()
    task = asyncio.create_task(run_opcua_producer(settings, emit, stop, stats, "bench"))
    await asyncio.sleep(WARMUP_S)
    s0, f0, a0 = counted["samples"], counted["frames"], stats.get("frames_acked")
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    s1, f1, cpu1 = counted["samples"], counted["frames"], time.process_time()
    stop.set()
    await task
    undelivered = await asyncio.to_thread(sink.close, 60)
    a1 = stats.get("frames_acked")
    return {
        "changes_per_s": round((s1 - s0) / elapsed),
        "frames_per_s": round((f1 - f0) / elapsed, 1),
        "frames_acked_per_s": round((a1 - a0) / elapsed, 1),
        "producer_cpu": round((cpu1 - cpu0) / elapsed, 2),
        "bad_samples": stats.get("samples_bad"),
        "undelivered": undelivered,
    }


def run_opcua_bench(
    base: Settings,
    *,
    nodes: int = 2000,
    rate_hz: float = 5.0,
    seconds: float = 10.0,
    repeats: int = 3,
    servers: int = 2,
    publishing_ms: float = 200.0,
) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient

    from plantstream.bench.common import machine
    from plantstream.core import kafka_clients, topics
    from plantstream.up import Orchestrator

    orch = Orchestrator(base, None)
    bootstrap, url = orch.start_stack()
    per_server = nodes // servers
    runs = []
    with tempfile.TemporaryDirectory(prefix="opcua-bench-") as tmp:
        for r in range(repeats):
            ports = [_free_port() for _ in range(servers)]
            reports = [Path(tmp) / f"server{r}-{i}.json" for i in range(servers)]
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "plantstream.bench.opcua",
                        "serve",
                        str(p),
                        str(per_server),
                        str(rate_hz),
                        str(rep),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    cwd=Path(__file__).resolve().parents[2],  # the repository root
                )
                for p, rep in zip(ports, reports, strict=True)
            ]
            try:
                for proc in procs:
                    assert proc.stdout is not None
                    if proc.stdout.readline().strip() != b"ready":
                        raise RuntimeError("the OPC UA bench server did not start")
                raw = bench_config(base, bootstrap, url, ports, per_server, publishing_ms)
                raw["pipeline"]["state_dir"] = str(Path(tmp) / f"state{r}")
                settings = Settings(**raw)
                topics.apply(settings, AdminClient(kafka_clients.admin_config(settings)))
                topics.register_schemas(settings, kafka_clients.registry(settings))
                result = asyncio.run(_measure(settings, seconds))
                offered = 0.0
                for rep in reports:
                    if rep.exists():
                        offered += float(json.loads(rep.read_text())["writes_per_s"])
                result["server_writes_per_s"] = round(offered)
                runs.append(result)
            finally:
                for proc in procs:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()

    def median(key: str) -> float:
        return cast(float, statistics.median(run[key] for run in runs))

    target = nodes * rate_hz
    return {
        "bench": "opcua",
        "nodes": nodes,
        "rate_hz": rate_hz,
        "servers": servers,
        "publishing_interval_ms": publishing_ms,
        "offered_changes_per_s": target,
        "seconds": seconds,
        "repeats": repeats,
        "median_changes_per_s": median("changes_per_s"),
        "median_frames_acked_per_s": median("frames_acked_per_s"),
        "median_server_writes_per_s": median("server_writes_per_s"),
        "median_producer_cpu": median("producer_cpu"),
        # the producer can only receive what the servers write: below 95 % of the target, they were the limit
        "server_bound": median("server_writes_per_s") < 0.95 * target,
        "runs": runs,
        "machine": machine(),
        "pid": os.getpid(),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m plantstream.bench.opcua")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="internal: one bench server process")
    s.add_argument("port", type=int)
    s.add_argument("nodes", type=int)
    s.add_argument("rate_hz", type=float)
    s.add_argument("report", type=Path)
    args = p.parse_args()
    if args.cmd == "serve":
        import logging

        logging.basicConfig(level=logging.ERROR)
        asyncio.run(serve(args.port, args.nodes, args.rate_hz, args.report))


if __name__ == "__main__":
    main()
