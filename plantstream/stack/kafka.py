"""`plantstream kafka start|stop|status`: a single-node KRaft broker+controller on loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from plantstream.core import local_stack, logs
from plantstream.core.config import Settings
from plantstream.core.local_stack import ProcessInfo, alive, read_info, write_info
from plantstream.stack import maven
from plantstream.stack.process import StackError, java, port_free, spawn, tail, terminate
from plantstream.stack.tls import ensure_broker_tls

_log = logs.get(__name__)

HOST = "127.0.0.1"


@dataclass
class KafkaStatus:
    running: bool
    bootstrap: str | None
    pid: int | None
    data_dir: str


def home(settings: Settings) -> Path:
    return local_stack.service_home(settings, local_stack.KAFKA)


def secured(settings: Settings) -> bool:
    """The local broker is started with TLS and SCRAM when the clients are configured for SASL_SSL."""
    return settings.pipeline.kafka.security_protocol == "SASL_SSL"


EXTERNAL = "EXTERNAL"  # the name of the optional second listener (pipeline.kafka.external_listener)
_TLS_HOSTS = ("127.0.0.1", "localhost")  # the names the local broker's certificate is issued for


def _listeners(settings: Settings, protocol: str) -> list[str]:
    """listeners / advertised.listeners / protocol map lines; inter-broker traffic stays on `protocol`.

    With an external listener, clients bootstrapping at its advertised address get that address back in
    metadata (Kafka answers with the endpoints of the listener a request came in on) and stay on it."""
    k = settings.pipeline.kafka
    ext = k.external_listener
    listeners = [f"{protocol}://{HOST}:{k.broker_port}"]
    advertised = [f"{protocol}://{HOST}:{k.broker_port}"]
    protocols = [f"{protocol}:{protocol}"]
    if ext is not None:
        if ext.port in (k.broker_port, k.controller_port):
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
    listeners.append(f"CONTROLLER://{HOST}:{k.controller_port}")
    # the controller listener stays on loopback inside the one process; clients never see it
    protocols.append("CONTROLLER:PLAINTEXT")
    return [
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        f"inter.broker.listener.name={protocol}",
        f"listener.security.protocol.map={','.join(protocols)}",
    ]


def _security_lines(settings: Settings, h: Path) -> list[str]:
    k = settings.pipeline.kafka
    if not secured(settings):
        return _listeners(settings, "PLAINTEXT")
    if not (k.sasl_mechanism and k.sasl_mechanism.startswith("SCRAM") and k.sasl_username and k.sasl_password):
        raise StackError(
            "a secured local broker (security_protocol: SASL_SSL) needs pipeline.kafka.sasl_mechanism SCRAM-SHA-256 "
            "or SCRAM-SHA-512, sasl_username and sasl_password (env PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD)"
        )
    lines = _listeners(settings, "SASL_SSL")
    tls = ensure_broker_tls(h / "tls", _TLS_HOSTS)
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


def _properties(settings: Settings, data: Path) -> str:
    k = settings.pipeline.kafka
    return (
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                *_security_lines(settings, data.parent),
                "controller.listener.names=CONTROLLER",
                f"controller.quorum.voters=1@{HOST}:{k.controller_port}",
                f"log.dirs={data}",
                # one node: every internal topic has one replica
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                f"num.partitions={k.partitions}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.check.interval.ms=60000",
                "log.segment.bytes=67108864",
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


def status(settings: Settings) -> KafkaStatus:
    h = home(settings)
    info = read_info(h / "pid.json")
    running = info is not None and alive(info)
    return KafkaStatus(
        running=running,
        bootstrap=info.endpoint if running and info else None,
        pid=info.pid if running and info else None,
        data_dir=str(h / "data"),
    )


def start(settings: Settings, timeout: float = 90.0) -> KafkaStatus:
    """Start the broker unless it already runs; return once it answers metadata requests."""
    current = status(settings)
    if current.running:
        return current
    k = settings.pipeline.kafka
    ext = k.external_listener
    for port in (k.broker_port, k.controller_port, *([ext.port] if ext else [])):
        if not port_free(HOST, port):
            raise StackError(
                f"port {port} on {HOST} is taken by another program, so the local broker cannot start. "
                f"Fix: stop that program, or choose free ports with PLANTSTREAM_PIPELINE__KAFKA__BROKER_PORT "
                f"and PLANTSTREAM_PIPELINE__KAFKA__CONTROLLER_PORT (pipeline.kafka.external_listener.port for the "
                f"external listener), or point KAFKA_BOOTSTRAP at a broker"
            )
    libs = maven.kafka_libs(k.version)
    h = home(settings)
    data = h / "data"
    props = h / "server.properties"
    props.write_text(_properties(settings, data))
    log4j = h / "log4j2.properties"
    log = h / "server.log"
    log4j.write_text(_LOG4J2.format(log=log))
    classpath = f"{libs}/*"
    java_exe = java()
    if not (data / "meta.properties").exists():
        cluster = (h / "cluster.id").read_text().strip() if (h / "cluster.id").exists() else ""
        if not cluster:
            # a KRaft cluster id is 16 random bytes in url-safe base64 without padding
            import base64

            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            (h / "cluster.id").write_text(cluster)
        fmt_cmd = [
            java_exe,
            "-cp",
            classpath,
            f"-Dlog4j2.configurationFile={log4j}",
            "kafka.tools.StorageTool",
            "format",
            # one argument: a random id may start with "-", which the tool would take for an option
            f"--cluster-id={cluster}",
            "-c",
            str(props),
            "--ignore-formatted",
            *_scram_users(settings),
        ]
        for attempt in (1, 2):
            fmt = subprocess.run(fmt_cmd, capture_output=True, text=True, timeout=120)
            if fmt.returncode == 0:
                break
            # seen once under heavy load; the tool is idempotent (--ignore-formatted), so try again
            _log.warning("formatting KRaft storage failed (attempt %d): %s%s", attempt, fmt.stdout, fmt.stderr)
            time.sleep(2)
        else:
            raise StackError(f"formatting KRaft storage in {data} failed:\n{fmt.stdout}{fmt.stderr}")
    marker = str(props)
    cmd = [
        java_exe,
        f"-Xmx{k.heap_mb}m",
        f"-Xms{min(256, k.heap_mb)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        classpath,
        "kafka.Kafka",
        marker,
    ]
    proc = spawn(cmd, h / "stdout.log", cwd=h)
    endpoint = f"{HOST}:{k.broker_port}"
    info = ProcessInfo(pid=proc.pid, marker=marker, started_at=time.time(), endpoint=endpoint)
    write_info(h / "pid.json", info)
    try:
        _wait_ready(settings, endpoint, proc, h, timeout)
    except BaseException:
        proc.kill()  # a failed start must not leave a half-started broker behind
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


def _wait_ready(settings: Settings, endpoint: str, proc: subprocess.Popen[bytes], h: Path, timeout: float) -> None:
    from confluent_kafka.admin import AdminClient

    from plantstream.core.kafka_clients import security_config

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": endpoint, "log_level": 0, **security_config(settings)})
    while time.monotonic() < deadline:
        # our own child: poll() is exact, while /proc may still show the forking Python before exec
        if proc.poll() is not None:
            raise StackError(
                f"the Kafka broker exited during start-up. Last log lines:\n{tail(h / 'stdout.log')}"
                f"\n{tail(h / 'server.log')}"
            )
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:  # not answering yet
            pass
        time.sleep(0.3)
    raise StackError(f"the Kafka broker did not answer on {endpoint} within {timeout:.0f}s; see {h / 'server.log'}")


def stop(settings: Settings) -> bool:
    """Stop the broker if it runs (controlled shutdown on SIGTERM). Returns whether it was running."""
    h = home(settings)
    info = read_info(h / "pid.json")
    if info is None or not alive(info):
        return False
    terminate(info, timeout=60)
    return True


def wipe(settings: Settings) -> None:
    """Stop and delete the broker's data (tests and `plantstream kafka reset`)."""
    stop(settings)
    shutil.rmtree(home(settings), ignore_errors=True)
