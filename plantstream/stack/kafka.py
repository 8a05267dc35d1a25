"""`plantstream kafka start|stop|status`: a KRaft cluster of combined broker+controller nodes on loopback.

One node by default (the demo and the tests); `pipeline.kafka.brokers: 3` starts three, each with its own
data directory and bounded heap, all three voters of the controller quorum. Node n listens on
broker_port + 100*(n-1) and controller_port + 100*(n-1). A topology keeps its own data folder, so a
single broker and a 3-node cluster never share storage (KRaft fixes the voters when storage is formatted).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from plantstream.core import local_stack, logs
from plantstream.core.config import Settings
from plantstream.core.local_stack import ProcessInfo, alive, read_info, write_info
from plantstream.stack import maven
from plantstream.stack.process import StackError, java, port_free, spawn, tail, terminate
from plantstream.stack.tls import ensure_broker_tls

_log = logs.get(__name__)

HOST = "127.0.0.1"


NODE_PORT_STEP = 100  # node n listens on broker_port + 100*(n-1), controller_port + 100*(n-1)


@dataclass(frozen=True)
class Node:
    """One KRaft node of the local launcher: a broker and a controller voter in one JVM."""

    node_id: int
    broker_port: int
    controller_port: int
    home: Path  # server.properties, pid.json, logs, and data/ below it

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.broker_port}"

    @property
    def data(self) -> Path:
        return self.home / "data"


@dataclass
class NodeStatus:
    node_id: int
    running: bool
    pid: int | None
    bootstrap: str
    controller: str
    data_dir: str


@dataclass
class KafkaStatus:
    running: bool  # every node of the topology runs
    bootstrap: str | None  # the running nodes' broker endpoints, comma-separated
    pid: int | None  # the first running node's (the only one of a single broker)
    data_dir: str
    nodes: list[NodeStatus] = field(default_factory=list)


def home(settings: Settings) -> Path:
    return local_stack.service_home(settings, local_stack.KAFKA)


def heap_mb(settings: Settings, count: int) -> int:
    k = settings.pipeline.kafka
    return k.heap_mb or (768 if count == 1 else 384)


def nodes(settings: Settings, count: int | None = None) -> list[Node]:
    """The nodes of a topology (default: the configured one). A single broker keeps the original layout."""
    k = settings.pipeline.kafka
    n = count or k.brokers
    where = _topology_home(settings, n)
    broker, controller = k.broker_port, k.controller_port
    if n != k.brokers:  # not the configured topology: the ports it was started with
        with contextlib.suppress(OSError, ValueError):
            broker, controller = json.loads((where / "ports.json").read_text())
    if n == 1:
        return [Node(1, broker, controller, where)]
    step = NODE_PORT_STEP
    return [Node(i, broker + step * (i - 1), controller + step * (i - 1), where / f"node-{i}") for i in range(1, n + 1)]


def _topology_home(settings: Settings, count: int) -> Path:
    return home(settings) if count == 1 else home(settings) / local_stack.cluster_dir(count)


def _topologies(settings: Settings) -> list[int]:
    """Node counts with storage under the state folder, the configured one first."""
    dirs = sorted(home(settings).glob(local_stack.cluster_dir("[0-9]*")))
    found = [int(p.name.removeprefix(local_stack.cluster_dir(""))) for p in dirs]
    if (home(settings) / "pid.json").exists():
        found.append(1)
    k = settings.pipeline.kafka.brokers
    return [k, *(n for n in found if n != k)]


def secured(settings: Settings) -> bool:
    """The local broker is started with TLS and SCRAM when the clients are configured for SASL_SSL."""
    return settings.pipeline.kafka.security_protocol == "SASL_SSL"


EXTERNAL = "EXTERNAL"  # the name of the optional second listener (pipeline.kafka.external_listener)
_TLS_HOSTS = ("127.0.0.1", "localhost")  # the names the local broker's certificate is issued for


def _listeners(settings: Settings, protocol: str, node: Node) -> list[str]:
    """listeners / advertised.listeners / protocol map lines; inter-broker traffic stays on `protocol`.

    With an external listener, clients bootstrapping at its advertised address get that address back in
    metadata (Kafka answers with the endpoints of the listener a request came in on) and stay on it."""
    k = settings.pipeline.kafka
    ext = k.external_listener
    listeners = [f"{protocol}://{HOST}:{node.broker_port}"]
    advertised = [f"{protocol}://{HOST}:{node.broker_port}"]
    protocols = [f"{protocol}:{protocol}"]
    if ext is not None:
        if k.brokers > 1:
            raise StackError(
                "pipeline.kafka.external_listener works with one local broker only. Fix: remove it, or set "
                "pipeline.kafka.brokers: 1"
            )
        if ext.port in (node.broker_port, node.controller_port):
            raise StackError(
                f"pipeline.kafka.external_listener.port {ext.port} is already the broker_port or controller_port. "
                "Fix: give the external listener a port of its own"
            )
        if protocol == "SASL_SSL" and ext.advertised_host not in _TLS_HOSTS:
            raise StackError(
                f"pipeline.kafka.external_listener.advertised_host {ext.advertised_host!r}: the secured local "
                f"broker's certificate names only {', '.join(_TLS_HOSTS)}, so clients would reject it. Fix: "
                "advertise one of those, or run the broker with security_protocol PLAINTEXT"
            )
        listeners.append(f"{EXTERNAL}://{HOST}:{ext.port}")
        advertised.append(f"{EXTERNAL}://{ext.advertised_host}:{ext.advertised_port}")
        protocols.append(f"{EXTERNAL}:{protocol}")  # the same security as the main listener
    listeners.append(f"CONTROLLER://{HOST}:{node.controller_port}")
    # the controller listener stays on loopback; clients never see it
    protocols.append("CONTROLLER:PLAINTEXT")
    return [
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        f"inter.broker.listener.name={protocol}",
        f"listener.security.protocol.map={','.join(protocols)}",
    ]


def _security_lines(settings: Settings, node: Node) -> list[str]:
    k = settings.pipeline.kafka
    if not secured(settings):
        return _listeners(settings, "PLAINTEXT", node)
    if not (k.sasl_mechanism and k.sasl_mechanism.startswith("SCRAM") and k.sasl_username and k.sasl_password):
        raise StackError(
            "a secured local broker (security_protocol: SASL_SSL) needs pipeline.kafka.sasl_mechanism SCRAM-SHA-256 "
            "or SCRAM-SHA-512, sasl_username and sasl_password (env PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD)"
        )
    lines = _listeners(settings, "SASL_SSL", node)
    tls = ensure_broker_tls(home(settings) / "tls", _TLS_HOSTS)  # one CA for every node
    mech = k.sasl_mechanism
    password = k.sasl_password.get_secret_value().replace('"', '\\"')
    jaas = (
        "org.apache.kafka.common.security.scram."
        f'ScramLoginModule required username="{k.sasl_username}" password="{password}";'
    )
    # every SASL listener needs its own JAAS entry; the external one authenticates clients the same way
    names = ["sasl_ssl"] + ([EXTERNAL.lower()] if k.external_listener is not None else [])
    return [
        *lines,
        f"sasl.enabled.mechanisms={mech}",
        f"sasl.mechanism.inter.broker.protocol={mech}",
        *(f"listener.name.{name}.{mech.lower()}.sasl.jaas.config={jaas}" for name in names),
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls.ca_cert}",
    ]


def replication_defaults(count: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a cluster of `count` nodes: 3 and 2 from three nodes on."""
    rf = min(3, count)
    return rf, (2 if rf >= 3 else 1)


# a small box: every node shares two cores with the others and with the pipeline
_SMALL_NODE = [
    "num.network.threads=2",
    "num.io.threads=2",
    "background.threads=2",
    "num.recovery.threads.per.data.dir=1",
    "num.replica.fetchers=1",
    "queued.max.requests=200",
    "log.cleaner.threads=1",
    "log.cleaner.dedupe.buffer.size=16777216",
]


def _properties(settings: Settings, data: Path, node: Node | None = None, count: int = 1) -> str:
    k = settings.pipeline.kafka
    node = node or Node(1, k.broker_port, k.controller_port, data.parent)
    voters = nodes(settings, count) if count > 1 else [node]
    rf, min_isr = replication_defaults(count)
    return (
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                *_security_lines(settings, node),
                "controller.listener.names=CONTROLLER",
                "controller.quorum.voters=" + ",".join(f"{v.node_id}@{HOST}:{v.controller_port}" for v in voters),
                f"log.dirs={data}",
                # internal topics replicated like plantstream's own: one replica per node up to three
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=10",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={min_isr}",
                "transaction.state.log.num.partitions=4",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={min_isr}",
                f"num.partitions={k.partitions}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.check.interval.ms=60000",
                "log.segment.bytes=67108864",
                *(_SMALL_NODE if count > 1 else []),
            ]
        )
        + "\n"
    )


_LOG4J2 = """status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.ak.name = org.apache.kafka
logger.ak.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def _node_info(node: Node) -> ProcessInfo | None:
    info = read_info(node.home / "pid.json")
    return info if info is not None and alive(info) else None


def _status_of(settings: Settings, count: int) -> KafkaStatus:
    ns = nodes(settings, count)
    infos = [_node_info(n) for n in ns]
    listed = [
        NodeStatus(
            n.node_id,
            info is not None,
            info.pid if info else None,
            n.endpoint,
            f"{HOST}:{n.controller_port}",
            str(n.data),
        )
        for n, info in zip(ns, infos, strict=True)
    ]
    up = [x for x in listed if x.running]
    return KafkaStatus(
        running=len(up) == len(listed),
        # every node, also one that is down: a client keeps the list for bootstrapping again later
        bootstrap=",".join(n.endpoint for n in ns) if up else None,
        pid=up[0].pid if up else None,
        data_dir=str(ns[0].data) if count == 1 else str(_topology_home(settings, count)),
        nodes=listed,
    )


def status(settings: Settings) -> KafkaStatus:
    """The configured topology's nodes; if none of them runs, another topology running under the state folder
    (e.g. `kafka start --brokers 3` with a config that says one broker)."""
    found = _status_of(settings, settings.pipeline.kafka.brokers)
    if found.bootstrap:
        return found
    for count in _topologies(settings)[1:]:
        other = _status_of(settings, count)
        if other.bootstrap:
            return other
    return found


# JVM flags of a cluster node: three JVMs share two cores with the pipeline, so a serial collector (no
# GC threads) on a small heap, and the C1 compiler only: a node starts in 8.6 s instead of 14.0 s and idles
# at 5.2 % of a core for three nodes instead of 7.3 % (docs/deployment.md)
_SMALL_JVM = [
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=2",
    "-XX:ReservedCodeCacheSize=64m",
    "-Xss512k",
]


def jvm_flags(settings: Settings, count: int) -> list[str]:
    heap = heap_mb(settings, count)
    if count == 1:
        return [f"-Xmx{heap}m", f"-Xms{min(256, heap)}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    return [f"-Xmx{heap}m", f"-Xms{min(128, heap)}m", *_SMALL_JVM]


def _cluster_id(where: Path) -> str:
    f = where / "cluster.id"
    cluster = f.read_text().strip() if f.exists() else ""
    if not cluster:
        # a KRaft cluster id is 16 random bytes in url-safe base64 without padding
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(cluster)
    return cluster


def _format(settings: Settings, java_exe: str, classpath: str, node: Node, cluster: str) -> None:
    if (node.data / "meta.properties").exists():
        return
    fmt_cmd = [
        java_exe,
        "-Xshare:auto",
        "-XX:TieredStopAtLevel=1",  # a one-shot tool: start fast, never optimise
        "-cp",
        classpath,
        f"-Dlog4j2.configurationFile={node.home / 'log4j2.properties'}",
        "kafka.tools.StorageTool",
        "format",
        # one argument: a random id may start with "-", which the tool would take for an option
        f"--cluster-id={cluster}",
        "-c",
        str(node.home / "server.properties"),
        "--ignore-formatted",
        *_scram_users(settings),
    ]
    for attempt in (1, 2):
        fmt = subprocess.run(fmt_cmd, capture_output=True, text=True, timeout=120)
        if fmt.returncode == 0:
            return
        # seen once under heavy load; the tool is idempotent (--ignore-formatted), so try again
        _log.warning("formatting KRaft storage failed (attempt %d): %s%s", attempt, fmt.stdout, fmt.stderr)
        time.sleep(2)
    raise StackError(f"formatting KRaft storage in {node.data} failed:\n{fmt.stdout}{fmt.stderr}")


def start(settings: Settings, timeout: float = 90.0) -> KafkaStatus:
    """Start every node that is not running (all of them, or one that was stopped or killed); return once
    the cluster's metadata lists every node as a broker. Another topology already running is returned as is."""
    current = status(settings)
    k = settings.pipeline.kafka
    count = k.brokers
    if current.running or (current.bootstrap and len(current.nodes) != count):
        return current
    ns = nodes(settings, count)
    todo = [n for n in ns if _node_info(n) is None]
    ext = k.external_listener
    for n in todo:
        for port in (n.broker_port, n.controller_port, *([ext.port] if ext else [])):
            if not port_free(HOST, port):
                raise StackError(
                    f"port {port} on {HOST} is taken by another program, so local Kafka node {n.node_id} cannot "
                    "start. Fix: stop that program, or choose free ports with PLANTSTREAM_PIPELINE__KAFKA__BROKER_PORT "
                    "and PLANTSTREAM_PIPELINE__KAFKA__CONTROLLER_PORT (node n uses them + 100*(n-1); "
                    "pipeline.kafka.external_listener.port for the external listener), or point KAFKA_BOOTSTRAP at "
                    "a broker"
                )
    libs = maven.kafka_libs(k.version)
    classpath = f"{libs}/*"
    java_exe = java()
    cluster = _cluster_id(_topology_home(settings, count))
    (_topology_home(settings, count) / "ports.json").write_text(json.dumps([k.broker_port, k.controller_port]))
    for n in todo:
        n.home.mkdir(parents=True, exist_ok=True)
        (n.home / "server.properties").write_text(_properties(settings, n.data, n, count))
        (n.home / "log4j2.properties").write_text(_LOG4J2.format(log=n.home / "server.log"))
    with ThreadPoolExecutor(max_workers=len(todo) or 1) as pool:  # one JVM each; in parallel
        list(pool.map(lambda n: _format(settings, java_exe, classpath, n, cluster), todo))
    procs: list[tuple[Node, subprocess.Popen[bytes]]] = []
    try:
        for n in todo:
            marker = str(n.home / "server.properties")
            cmd = [
                java_exe,
                *jvm_flags(settings, count),
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={n.home / 'log4j2.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                marker,
            ]
            proc = spawn(cmd, n.home / "stdout.log", cwd=n.home)
            write_info(n.home / "pid.json", ProcessInfo(proc.pid, marker, time.time(), n.endpoint))
            procs.append((n, proc))
        _wait_ready(settings, ns, procs, timeout)
    except BaseException:
        for _, proc in procs:  # a failed start must not leave half-started nodes behind
            proc.kill()
            proc.wait()
        raise
    return status(settings)


def _scram_users(settings: Settings) -> list[str]:
    if not secured(settings):
        return []
    k = settings.pipeline.kafka
    assert k.sasl_password is not None
    # KRaft stores SCRAM credentials in the metadata log, written when the storage is formatted
    return ["--add-scram", f"{k.sasl_mechanism}=[name={k.sasl_username},password={k.sasl_password.get_secret_value()}]"]


def _wait_ready(
    settings: Settings, ns: list[Node], procs: list[tuple[Node, subprocess.Popen[bytes]]], timeout: float
) -> None:
    from confluent_kafka.admin import AdminClient

    from plantstream.core.kafka_clients import security_config

    bootstrap = ",".join(n.endpoint for n in ns)
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **security_config(settings)})
    want = {n.node_id for n in ns}
    seen: set[int] = set()
    while time.monotonic() < deadline:
        for n, proc in procs:
            # our own child: poll() is exact, while /proc may still show the forking Python before exec
            if proc.poll() is not None:
                raise StackError(
                    f"Kafka node {n.node_id} exited during start-up. Last log lines:\n{tail(n.home / 'stdout.log')}"
                    f"\n{tail(n.home / 'server.log')}"
                )
        try:
            seen = set(admin.list_topics(timeout=2).brokers)
            if want <= seen:
                return
        except Exception:  # not answering yet
            pass
        time.sleep(0.3)
    where = ", ".join(str(n.home / "server.log") for n in ns if n.node_id not in seen)
    raise StackError(
        f"Kafka did not list every node as a broker on {bootstrap} within {timeout:.0f}s (registered: "
        f"{sorted(seen) or 'none'}); see {where}"
    )


def stop(settings: Settings) -> bool:
    """Stop every local node under the state folder, of any topology, together (controlled shutdown on
    SIGTERM; stopped one by one, the last nodes of a cluster would wait for a quorum that is gone).
    Returns whether any was running."""
    infos = [
        info for count in _topologies(settings) for n in nodes(settings, count) if (info := _node_info(n)) is not None
    ]
    if not infos:
        return False
    with ThreadPoolExecutor(max_workers=len(infos)) as pool:
        list(pool.map(lambda info: terminate(info, timeout=60), infos))
    return True


def stop_node(settings: Settings, node_id: int, timeout: float = 60.0) -> bool:
    """Stop one node of the configured topology (controlled shutdown). Returns whether it was running."""
    info = _node_info(nodes(settings)[node_id - 1])
    if info is None:
        return False
    terminate(info, timeout=timeout)
    return True


def wipe(settings: Settings) -> None:
    """Stop and delete the brokers' data (tests and `plantstream kafka reset`)."""
    stop(settings)
    shutil.rmtree(home(settings), ignore_errors=True)
