"""docker-compose.yml stays consistent with plantstream's config model, its CLI and its plant files.

No Docker engine is needed: the compose file is read with yaml.safe_load. Each check returns the
problems it finds. Every test runs its check on the real file (no problems expected) and on
deliberately broken copies (the expected problem must be reported), so a check that silently
stopped looking fails as surely as a compose file that drifted.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from pydantic import BaseModel

from plantstream.core import config as ps_config
from plantstream.core.config import DEMO_CONFIG, ConfigError, Settings, load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

PLANTSTREAM_SERVICES = ("simulator", "topics", "producer-modbus", "producer-opcua", "processor", "sink-storage")
# the Kafka cluster: three KRaft nodes, each a broker and a controller voter (docs/deployment.md)
KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")
REQUIRED_SERVICES = (*KAFKA_NODES, "schema-registry", "kafka-ui", "postgres", *PLANTSTREAM_SERVICES)
# services that talk to Kafka and the registry, so they wait for `topics` to finish
KAFKA_CLIENTS = ("producer-modbus", "producer-opcua", "processor", "sink-storage")
STATEFUL_SERVICES = {
    **{node: "/var/lib/kafka/data" for node in KAFKA_NODES},
    "postgres": "/var/lib/postgresql/data",
}
NEEDS_HEALTHCHECK = (*KAFKA_NODES, "schema-registry", "postgres", "simulator")
CCOMPAT_PATH = "/apis/ccompat/v7"

ENV_PREFIX = "PLANTSTREAM_"
ENV_ALIASES = frozenset(ps_config._ENV_ALIASES)  # KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL
ENV_SPECIAL = frozenset({"PLANTSTREAM_CONFIG", "PLANTSTREAM_SECRETS_DIR"})
REQUIRED_ENV = (
    "KAFKA_BOOTSTRAP",
    "SCHEMA_REGISTRY_URL",
    "PLANTSTREAM_CONFIG",
    "PLANTSTREAM_PIPELINE__STATE_DIR",
)

# The command names the CLI promises (docs and issues rely on them).
CLI_COMMANDS = frozenset(
    {
        ("up",),
        ("kafka", "start"),
        ("kafka", "stop"),
        ("kafka", "status"),
        ("simulate",),
        ("produce", "modbus"),
        ("produce", "opcua"),
        ("produce", "mqtt"),
        ("produce", "sparkplug"),
        ("process",),
        ("sink", "storage"),
        ("topics", "apply"),
        ("tail",),
        ("status",),
        ("check-config",),
    }
)
GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--config", "-c", "--log-level"})

Compose = dict[str, Any]
Check = Callable[[Compose], list[str]]


# --- reading the compose file -------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    # YAML aliases share one object between services; a plain tree lets a test break one service only
    tree: Compose = json.loads(json.dumps(data))
    return tree


def services(compose: Compose) -> dict[str, dict[str, Any]]:
    svc = compose.get("services") or {}
    return {name: (spec or {}) for name, spec in svc.items()}


def plantstream_services(compose: Compose) -> list[str]:
    """Services running the plantstream image: the required ones, plus any built from the Dockerfile."""
    svc = services(compose)
    built = [n for n, s in svc.items() if "build" in s]
    return sorted(set(built) | {n for n in PLANTSTREAM_SERVICES if n in svc})


def environment(spec: dict[str, Any]) -> dict[str, str | None]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {k: v for k, v in pairs}
    return {k: None if v is None else str(v) for k, v in env.items()}


def command_args(spec: dict[str, Any]) -> list[str]:
    cmd = spec.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def depends_on(spec: dict[str, Any]) -> dict[str, str]:
    """{service: condition}; the short list form means service_started."""
    deps = spec.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def mounts(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short or long syntax."""
    out = []
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", ""))))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def published_ports(spec: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host_ip, host_port, container_port, protocol) of every published port."""
    out: list[tuple[str, int, int, str]] = []
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            if p.get("published") is not None:
                out.append(
                    (str(p.get("host_ip", "")), int(p["published"]), int(p["target"]), str(p.get("protocol", "tcp")))
                )
            continue
        text, _, proto = str(p).partition("/")
        parts = text.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: Docker picks a free host port
        ip = parts[0].strip("[]") if len(parts) == 3 else ""
        host, container = parts[-2], parts[-1]
        hosts, containers = _port_range(host), _port_range(container)
        for i, hp in enumerate(hosts):
            out.append((ip, hp, containers[i] if i < len(containers) else containers[0], proto or "tcp"))
    return out


def _port_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def listeners(value: str | None) -> dict[str, tuple[str, int]]:
    """KAFKA_(ADVERTISED_)LISTENERS -> {listener name: (host, port)}."""
    out = {}
    for item in (value or "").split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)://([^:]*):(\d+)\s*", item)
        if m:
            out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


# --- the config model ---------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (through Optional/Annotated), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def settings_field_problem(name: str) -> str | None:
    """None when PLANTSTREAM_<A>__<B>... names a field of Settings (as pydantic-settings reads it)."""
    model: type[BaseModel] | None = Settings
    walked: list[str] = []
    for part in name[len(ENV_PREFIX) :].lower().split("__"):
        where = ".".join(walked) or "the top level"
        if model is None:
            return f"{where} is a value, not a section: it has no field {part!r}"
        field = model.model_fields.get(part)
        if field is None:
            return f"{where} has no field {part!r} (fields: {', '.join(model.model_fields)})"
        walked.append(part)
        model = _model_of(field.annotation)
    return None


def env_name_problem(name: str) -> str | None:
    if name in ENV_ALIASES or name in ENV_SPECIAL:
        return None
    if not name.startswith(ENV_PREFIX):
        aliases = ", ".join(sorted(ENV_ALIASES))
        return f"plantstream reads no such variable (only PLANTSTREAM_* and {aliases})"
    return settings_field_problem(name)


@contextmanager
def process_environment(env: dict[str, str]) -> Iterator[None]:
    """Exactly `env` as plantstream's deployment variables; load_config writes os.environ, so restore all."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX) or name in ENV_ALIASES:
                del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- the checks ---------------------------------------------------------------------------------


def check_services(compose: Compose) -> list[str]:
    svc = services(compose)
    problems = [f"service {name!r} is missing" for name in REQUIRED_SERVICES if name not in svc]
    problems += [
        f"service {name!r} does not build the plantstream image (no build:)"
        for name in PLANTSTREAM_SERVICES
        if name in svc and "build" not in svc[name]
    ]
    return problems


def check_environment(compose: Compose) -> list[str]:
    problems = []
    svc = services(compose)
    for name in plantstream_services(compose):
        env = environment(svc[name])
        problems += [f"{name}: {var}: {why}" for var in env if (why := env_name_problem(var))]
        problems += [f"{name}: {var} is not set" for var in REQUIRED_ENV if not env.get(var)]
    return problems


def cli_commands() -> set[tuple[str, ...]]:
    """The commands the real Typer app defines."""
    import typer.main

    from plantstream.cli import app

    root = typer.main.get_command(app)
    out: set[tuple[str, ...]] = set()
    for name, cmd in getattr(root, "commands", {}).items():
        subs = getattr(cmd, "commands", None)
        out |= {(name, s) for s in subs} if subs else {(name,)}
    return out


def dockerfile_entrypoint(path: Path = DOCKERFILE) -> list[str] | None:
    entry = None
    for line in path.read_text().splitlines():
        m = re.match(r"\s*ENTRYPOINT\s+(.*)$", line)
        if m:
            entry = json.loads(m.group(1))
    return entry


def check_commands(compose: Compose, known: set[tuple[str, ...]] | None = None) -> list[str]:
    known = cli_commands() if known is None else known
    problems = []
    if dockerfile_entrypoint() != ["plantstream"]:
        problems.append('Dockerfile: ENTRYPOINT must be ["plantstream"] so that command is the subcommand')
    svc = services(compose)
    for name in plantstream_services(compose):
        spec = svc[name]
        if spec.get("entrypoint") not in (None, ["plantstream"], "plantstream"):
            problems.append(f"{name}: entrypoint {spec['entrypoint']!r} bypasses the plantstream CLI")
        args = command_args(spec)
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt in GLOBAL_OPTIONS_WITH_VALUE and args:
                args.pop(0)
        words = tuple(a for a in args[:2] if not a.startswith("-"))
        match = next((words[:n] for n in (2, 1) if words[:n] in CLI_COMMANDS), None)
        if match is None:
            problems.append(
                f"{name}: command {command_args(spec)!r} is not a plantstream CLI command "
                f"(one of: {sorted(' '.join(c) for c in CLI_COMMANDS)})"
            )
        elif match not in known:
            problems.append(f"{name}: `plantstream {' '.join(match)}` is not defined in plantstream/cli.py")
        build = spec.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
        if build is not None and (REPO / str(context)).resolve() / dockerfile != DOCKERFILE:
            problems.append(f"{name}: builds {context}/{dockerfile}, not the repository's Dockerfile")
    return problems


def kafka_nodes(compose: Compose) -> list[str]:
    """The services running a Kafka node (they set KAFKA_PROCESS_ROLES), the required ones first."""
    svc = services(compose)
    running = [n for n, spec in svc.items() if environment(spec).get("KAFKA_PROCESS_ROLES")]
    return [n for n in KAFKA_NODES if n in svc] + sorted(set(running) - set(KAFKA_NODES))


def kafka_internal_listener(compose: Compose, node: str = "kafka") -> str | None:
    """host:port of a Kafka node's listener advertised to the compose network (host = the service name)."""
    kafka = services(compose).get(node, {})
    env = environment(kafka)
    names = {node, kafka.get("hostname"), kafka.get("container_name")} - {None}
    bound = listeners(env.get("KAFKA_LISTENERS"))
    for listener, (host, port) in listeners(env.get("KAFKA_ADVERTISED_LISTENERS")).items():
        if host in names and listener in bound and bound[listener][1] == port:
            return f"{host}:{port}"
    return None


def kafka_bootstrap(compose: Compose) -> str | None:
    """Every Kafka node's in-compose listener, comma-separated: what clients bootstrap from."""
    found = [kafka_internal_listener(compose, n) for n in kafka_nodes(compose)]
    return ",".join(f for f in found if f) if found and all(found) else None


def check_cluster(compose: Compose) -> list[str]:
    """The Kafka nodes form one KRaft cluster: one cluster id, distinct node ids, every node a voter at its
    controller listener, and replication that the number of nodes can hold."""
    svc = services(compose)
    nodes = kafka_nodes(compose)
    envs = {n: environment(svc[n]) for n in nodes}
    problems = []
    if len({e.get("CLUSTER_ID") for e in envs.values()}) != 1:
        problems.append(f"kafka: the nodes have different CLUSTER_IDs: {[e.get('CLUSTER_ID') for e in envs.values()]}")
    ids = [e.get("KAFKA_NODE_ID") for e in envs.values()]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"kafka: node ids {ids} are not distinct")
    voters = {
        f"{e.get('KAFKA_NODE_ID')}@{n}:{listeners(e.get('KAFKA_LISTENERS')).get('CONTROLLER', ('', '?'))[1]}"
        for n, e in envs.items()
    }
    for n, e in envs.items():
        got = set((e.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "").split(","))
        if got != voters:
            problems.append(f"{n}: KAFKA_CONTROLLER_QUORUM_VOTERS is {sorted(got)}, not every node {sorted(voters)}")
        if set((e.get("KAFKA_PROCESS_ROLES") or "").split(",")) != {"broker", "controller"}:
            problems.append(f"{n}: KAFKA_PROCESS_ROLES must be broker,controller")
        for key in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            if int(e.get(key) or 1) > len(nodes):
                problems.append(f"{n}: {key} {e.get(key)} is more than the {len(nodes)} Kafka node(s)")
        if int(e.get("KAFKA_MIN_INSYNC_REPLICAS") or 1) >= int(e.get("KAFKA_DEFAULT_REPLICATION_FACTOR") or 1) > 1:
            problems.append(f"{n}: KAFKA_MIN_INSYNC_REPLICAS leaves no replica to lose; writes stop with one node down")
    return problems


def check_wiring(compose: Compose) -> list[str]:
    """kafka-ui and the plantstream services point at the kafka listener and the registry in compose."""
    svc = services(compose)
    problems = []
    for node in kafka_nodes(compose):
        if kafka_internal_listener(compose, node) is None:
            problems.append(
                f"{node}: no advertised listener on the service name (e.g. PLAINTEXT://{node}:19092) "
                "that KAFKA_LISTENERS also binds"
            )
        kafka = svc.get(node, {})
        kenv = environment(kafka)
        bound = listeners(kenv.get("KAFKA_LISTENERS"))
        published = {(hp, cp) for _, hp, cp, _ in published_ports(kafka)}
        for listener, (host, port) in listeners(kenv.get("KAFKA_ADVERTISED_LISTENERS")).items():
            if host in ("localhost", "127.0.0.1"):
                inner = bound.get(listener, ("", -1))[1]
                if (port, inner) not in published:
                    problems.append(
                        f"{node}: listener {listener} advertises {host}:{port} but ports do not publish {port}:{inner}"
                    )
    internal = kafka_bootstrap(compose)
    reg = svc.get("schema-registry", {})
    reg_ports = {cp for _, _, cp, _ in published_ports(reg)} or {8080}
    expected_registry = {f"http://schema-registry:{p}{CCOMPAT_PATH}" for p in reg_ports}

    ui = environment(svc.get("kafka-ui", {}))
    if not ui.get("KAFKA_CLUSTERS_0_NAME"):
        problems.append("kafka-ui: KAFKA_CLUSTERS_0_NAME is not set")
    ui_bootstrap = ui.get("KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS")
    if internal and ui_bootstrap != internal:
        problems.append(
            f"kafka-ui: KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS is {ui_bootstrap!r}, not every Kafka "
            f"node's in-compose listener {internal!r}"
        )
    reg_bootstrap = environment(reg).get("APICURIO_KAFKASQL_BOOTSTRAP_SERVERS")
    if internal and reg_bootstrap != internal:
        problems.append(
            f"schema-registry: APICURIO_KAFKASQL_BOOTSTRAP_SERVERS is {reg_bootstrap!r}, not every Kafka node's "
            f"in-compose listener {internal!r}"
        )
    ui_registry = ui.get("KAFKA_CLUSTERS_0_SCHEMAREGISTRY")
    if ui_registry not in expected_registry:
        problems.append(
            f"kafka-ui: KAFKA_CLUSTERS_0_SCHEMAREGISTRY is {ui_registry!r}, not the "
            f"schema-registry service's Confluent-compatible API {sorted(expected_registry)}"
        )
    elif urlsplit(ui_registry).hostname not in svc:
        problems.append(f"kafka-ui: registry host of {ui_registry!r} is not a compose service")

    for name in plantstream_services(compose):
        env = environment(svc[name])
        if internal and env.get("KAFKA_BOOTSTRAP") != internal:
            problems.append(f"{name}: KAFKA_BOOTSTRAP is {env.get('KAFKA_BOOTSTRAP')!r}, not {internal!r}")
        if env.get("SCHEMA_REGISTRY_URL") not in expected_registry:
            problems.append(
                f"{name}: SCHEMA_REGISTRY_URL is {env.get('SCHEMA_REGISTRY_URL')!r}, not {sorted(expected_registry)}"
            )
    return problems


def check_ports(compose: Compose) -> list[str]:
    problems = []
    seen: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for name, spec in services(compose).items():
        try:
            ports = published_ports(spec)
        except ValueError as e:
            problems.append(f"{name}: cannot read ports {spec.get('ports')!r}: {e}")
            continue
        for ip, host_port, _, proto in ports:
            for other, other_ip in seen.get((host_port, proto), []):
                wildcard = {"", "0.0.0.0", "::"}
                if ip == other_ip or ip in wildcard or other_ip in wildcard:
                    problems.append(f"host port {host_port}/{proto} is published by both {other} and {name}")
            seen.setdefault((host_port, proto), []).append((name, ip))
    return problems


def check_depends(compose: Compose) -> list[str]:
    svc = services(compose)
    problems = []
    for name in NEEDS_HEALTHCHECK:
        hc = svc.get(name, {}).get("healthcheck")
        if name in svc and (not hc or hc.get("disable") or not hc.get("test")):
            problems.append(f"{name}: has no healthcheck")
    for name, spec in svc.items():
        for dep, cond in depends_on(spec).items():
            if dep not in svc:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            elif cond == "service_healthy" and not (svc[dep].get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
    for name in (n for n in plantstream_services(compose) if n != "simulator"):
        deps = depends_on(svc[name])
        for infra in (*kafka_nodes(compose), "schema-registry"):
            if deps.get(infra) != "service_healthy":
                problems.append(f"{name}: does not wait for {infra} (condition: service_healthy)")
    for name in KAFKA_CLIENTS:
        if name in svc and depends_on(svc[name]).get("topics") != "service_completed_successfully":
            problems.append(f"{name}: does not wait for topics (condition: service_completed_successfully)")
    if "topics" in svc and str(svc["topics"].get("restart", "no")) != "no":
        problems.append('topics: runs once; restart must be "no" or it never completes')
    for producer in ("producer-modbus", "producer-opcua"):
        if producer in svc and depends_on(svc[producer]).get("simulator") != "service_healthy":
            problems.append(f"{producer}: does not wait for the simulator (condition: service_healthy)")
    declared = set(compose.get("volumes") or {})
    for name, target in STATEFUL_SERVICES.items():
        named = [src for src, tgt in mounts(svc.get(name, {})) if tgt == target and src and not is_bind(src)]
        if name in svc and not named:
            problems.append(f"{name}: {target} is not on a named volume; its data would not survive")
    for name, spec in svc.items():
        for src, _ in mounts(spec):
            if src and not is_bind(src) and src not in declared:
                problems.append(f"{name}: volume {src!r} is not declared under top-level volumes:")
    return problems


def device_host(device: Any) -> str:
    """The host a device is reached at: Modbus TCP `host`, the OPC UA endpoint's host name."""
    if isinstance(device, dict):
        return str(device.get("host") or urlsplit(device.get("endpoint", "")).hostname or "")
    return str(getattr(device, "host", None) or urlsplit(getattr(device, "endpoint", "")).hostname or "")


def with_host(device: dict[str, Any], host: str) -> None:
    """Move a raw device to another host (its `host`, or its OPC UA endpoint's host; MQTT devices stay)."""
    if "broker" in device or device.get("protocol") in ("mqtt", "sparkplug_b"):
        return
    if "endpoint" in device:
        u = urlsplit(device["endpoint"])
        device["endpoint"] = urlunsplit(u._replace(netloc=f"{host}:{u.port}"))
    else:
        device["host"] = host


def _without_hosts(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in devices:
        d = {k: v for k, v in d.items() if k != "host"}
        if "endpoint" in d:
            d["endpoint"] = urlsplit(d["endpoint"])._replace(netloc=f"host:{urlsplit(d['endpoint']).port}").geturl()
        out.append(d)
    return out


def check_plant_mount(compose: Compose, base: Path = REPO) -> list[str]:
    """The plant file each service reads exists in the repository, loads, and fits the compose network."""
    svc = services(compose)
    problems = []
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    for name in plantstream_services(compose):
        env = environment(svc[name])
        target = env.get("PLANTSTREAM_CONFIG")
        if not target:
            continue  # check_environment reports it
        sources = [src for src, tgt in mounts(svc[name]) if tgt == target and is_bind(src)]
        if not sources:
            problems.append(f"{name}: no bind mount puts a plant file at PLANTSTREAM_CONFIG={target}")
            continue
        path = (base / sources[0]).resolve()
        if not path.is_relative_to(base.resolve()):
            problems.append(f"{name}: mounted plant file {sources[0]} is outside the repository")
        if not path.is_file():
            problems.append(f"{name}: mounted plant file {sources[0]} does not exist")
            continue
        deployment = {k: v for k, v in env.items() if k != "PLANTSTREAM_CONFIG" and v is not None}
        try:
            with process_environment(deployment):
                settings = load_config(path)
        except ConfigError as e:
            problems.append(f"{name}: {sources[0]} with this service's environment does not load: {e}")
            continue
        k = settings.pipeline
        if env.get("KAFKA_BOOTSTRAP") and k.kafka.bootstrap != env["KAFKA_BOOTSTRAP"]:
            problems.append(f"{name}: KAFKA_BOOTSTRAP did not reach pipeline.kafka.bootstrap")
        if env.get("SCHEMA_REGISTRY_URL") and k.registry.url != env["SCHEMA_REGISTRY_URL"]:
            problems.append(f"{name}: SCHEMA_REGISTRY_URL did not reach pipeline.registry.url")
        for d in settings.devices:
            broker = getattr(d, "broker", None)
            if broker is not None:  # mqtt / sparkplug_b: the broker must be a service the simulator publishes to
                bhost = k.mqtt.brokers[broker].host
                if bhost not in svc:
                    problems.append(f"{name}: device {d.name} reads broker {bhost!r}, which is not a compose service")
                continue
            host = device_host(d)
            if host not in svc:
                problems.append(f"{name}: device {d.name} polls host {host!r}, which is not a compose service")
            elif command_args(svc[host])[-1:] != ["simulate"]:
                problems.append(f"{name}: device {d.name} polls {host!r}, which does not run `simulate`")
        if command_args(svc[name])[-1:] == ["simulate"] and k.simulator.bind_host not in ("0.0.0.0", "::"):
            problems.append(
                f"{name}: the simulator binds {k.simulator.bind_host or 'each device host'}; set "
                "PLANTSTREAM_PIPELINE__SIMULATOR__BIND_HOST=0.0.0.0 so other containers reach it"
            )
        raw = yaml.safe_load(path.read_text())
        if raw.get("plant") != demo.get("plant") or _without_hosts(raw.get("devices", [])) != _without_hosts(
            demo.get("devices", [])
        ):
            problems.append(
                f"{name}: {sources[0]} is no longer the demo plant (apart from device hosts); "
                f"copy the change from {DEMO_CONFIG.relative_to(REPO)}"
            )
    return problems


# --- the tests ----------------------------------------------------------------------------------


def broken(compose: Compose, change: Callable[[Compose], object]) -> Compose:
    copy: Compose = json.loads(json.dumps(compose))
    change(copy)
    return copy


def assert_catches(check: Check, compose: Compose, cases: dict[str, tuple[Callable[[Compose], object], str]]) -> None:
    assert check(compose) == [], f"{check.__name__} on docker-compose.yml"
    for label, (change, expected) in cases.items():
        problems = check(broken(compose, change))
        assert any(expected in p for p in problems), (
            f"{check.__name__} missed a broken copy ({label}): expected a problem mentioning {expected!r}, "
            f"got {problems}"
        )


def env_of(service: str) -> Callable[[Compose], dict[str, Any]]:
    return lambda c: c["services"][service].setdefault("environment", {})


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


def test_required_services_exist(compose: Compose) -> None:
    assert_catches(
        check_services,
        compose,
        {
            "kafka-ui removed": (lambda c: c["services"].pop("kafka-ui"), "'kafka-ui' is missing"),
            "topics removed": (lambda c: c["services"].pop("topics"), "'topics' is missing"),
            "processor from another image": (
                lambda c: c["services"]["processor"].pop("build"),
                "'processor' does not build",
            ),
        },
    )


def test_env_var_names_are_read_by_the_config(compose: Compose) -> None:
    assert_catches(
        check_environment,
        compose,
        {
            "misspelt field": (
                lambda c: env_of("processor")(c).update(PLANTSTREAM_PIPELINE__KAFKA__BOOTSTRAPP="x"),
                "has no field 'bootstrapp'",
            ),
            "unknown section": (
                lambda c: env_of("sink-storage")(c).update(PLANTSTREAM_PIPELINE__STORE__KIND="x"),
                "has no field 'store'",
            ),
            "path below a plain value": (
                lambda c: env_of("topics")(c).update(PLANTSTREAM_PIPELINE__STATE_DIR__PATH="/x"),
                "is a value, not a section",
            ),
            "single underscore": (
                lambda c: env_of("simulator")(c).update(PLANTSTREAM_PIPELINE_GROUP_ID="g"),
                "has no field 'pipeline_group_id'",
            ),
            "foreign variable": (
                lambda c: env_of("processor")(c).update(KAFKA_BROKERS="kafka:19092"),
                "plantstream reads no such variable",
            ),
            "registry URL dropped": (
                lambda c: env_of("processor")(c).pop("SCHEMA_REGISTRY_URL"),
                "processor: SCHEMA_REGISTRY_URL is not set",
            ),
            "list syntax, misspelt": (
                lambda c: c["services"]["topics"].update(
                    environment=["KAFKA_BOOTSTRAP=kafka:19092", "PLANTSTREAM_PIPELINE__WINDOW__GRACE_S=1"]
                ),
                "has no field 'window'",
            ),
        },
    )


def test_env_name_resolution_walks_the_model() -> None:
    # every field of every section is reachable, so the checker's model walk stays honest
    def leaves(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for fname, field in model.model_fields.items():
            sub = _model_of(field.annotation)
            yield f"{prefix}{fname.upper()}"
            if sub is not None:
                yield from leaves(sub, f"{prefix}{fname.upper()}__")

    names = list(leaves(Settings, ENV_PREFIX))
    assert "PLANTSTREAM_PIPELINE__SIMULATOR__BIND_HOST" in names
    assert "PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD" in names
    assert [n for n in names if env_name_problem(n)] == []
    assert all(env_name_problem(full) is None for full in ps_config._ENV_ALIASES.values())


def test_commands_are_cli_commands(compose: Compose) -> None:
    assert_catches(
        check_commands,
        compose,
        {
            "typo": (lambda c: c["services"]["processor"].update(command=["proces"]), "not a plantstream CLI command"),
            "wrong subcommand": (
                lambda c: c["services"]["sink-storage"].update(command="sink alert"),
                "not a plantstream CLI command",
            ),
            "missing subcommand": (
                lambda c: c["services"]["topics"].update(command=["topics"]),
                "not a plantstream CLI command",
            ),
            "entrypoint override": (
                lambda c: c["services"]["simulator"].update(entrypoint=["python", "-m", "x"]),
                "bypasses the plantstream CLI",
            ),
            "other Dockerfile": (
                lambda c: c["services"]["processor"].update(build={"context": "docker"}),
                "not the repository's Dockerfile",
            ),
        },
    )
    # a documented name the CLI does not define (yet) is reported too
    problems = check_commands(compose, known=cli_commands() - {("process",)})
    assert any("`plantstream process` is not defined" in p for p in problems), problems
    # global options before the command are allowed
    ok = broken(compose, lambda c: c["services"]["processor"].update(command=["--log-level", "debug", "process"]))
    assert check_commands(ok) == []


def test_kafka_ui_and_services_point_at_kafka_and_registry(compose: Compose) -> None:
    assert kafka_bootstrap(compose) == "kafka:19092,kafka-2:19092,kafka-3:19092"
    assert_catches(
        check_wiring,
        compose,
        {
            "ui on the host listener": (
                lambda c: env_of("kafka-ui")(c).update(KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS="kafka:9092"),
                "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS is 'kafka:9092'",
            ),
            "ui at another registry host": (
                lambda c: env_of("kafka-ui")(c).update(
                    KAFKA_CLUSTERS_0_SCHEMAREGISTRY="http://registry:8080" + CCOMPAT_PATH
                ),
                "KAFKA_CLUSTERS_0_SCHEMAREGISTRY",
            ),
            "ui at the native Apicurio API": (
                lambda c: env_of("kafka-ui")(c).update(
                    KAFKA_CLUSTERS_0_SCHEMAREGISTRY="http://schema-registry:8080/apis/registry/v3"
                ),
                "KAFKA_CLUSTERS_0_SCHEMAREGISTRY",
            ),
            "ui without a registry": (
                lambda c: env_of("kafka-ui")(c).pop("KAFKA_CLUSTERS_0_SCHEMAREGISTRY"),
                "KAFKA_CLUSTERS_0_SCHEMAREGISTRY is None",
            ),
            "internal listener renamed": (
                lambda c: env_of("kafka")(c).update(
                    KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://broker:19092,PLAINTEXT_HOST://localhost:9092"
                ),
                "no advertised listener on the service name",
            ),
            "host listener not published": (
                lambda c: c["services"]["kafka"].update(ports=["127.0.0.1:29092:9092"]),
                "advertises localhost:9092 but ports do not publish 9092:9092",
            ),
            "third node's host listener not published": (
                lambda c: c["services"]["kafka-3"].update(ports=["127.0.0.1:9292:9292"]),
                "kafka-3: listener PLAINTEXT_HOST advertises localhost:9292 but ports do not publish 9292:9092",
            ),
            "service bootstraps from one node only": (
                lambda c: env_of("processor")(c).update(KAFKA_BOOTSTRAP="kafka:19092"),
                "processor: KAFKA_BOOTSTRAP is 'kafka:19092'",
            ),
            "ui misses a node": (
                lambda c: env_of("kafka-ui")(c).update(KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS="kafka:19092,kafka-2:19092"),
                "not every Kafka node's in-compose listener",
            ),
            "registry journal on one node": (
                lambda c: env_of("schema-registry")(c).update(APICURIO_KAFKASQL_BOOTSTRAP_SERVERS="kafka:19092"),
                "schema-registry: APICURIO_KAFKASQL_BOOTSTRAP_SERVERS",
            ),
            "service on the host listener": (
                lambda c: env_of("producer-modbus")(c).update(KAFKA_BOOTSTRAP="localhost:9092"),
                "producer-modbus: KAFKA_BOOTSTRAP is 'localhost:9092'",
            ),
            "service at the host registry port": (
                lambda c: env_of("processor")(c).update(
                    SCHEMA_REGISTRY_URL="http://schema-registry:8081" + CCOMPAT_PATH
                ),
                "processor: SCHEMA_REGISTRY_URL",
            ),
        },
    )


def test_published_ports_do_not_collide(compose: Compose) -> None:
    assert published_ports(
        {"ports": ["127.0.0.1:8081:8080", "9000-9001:9000-9001/udp", 5000, {"published": 7000, "target": 70}]}
    ) == [
        ("127.0.0.1", 8081, 8080, "tcp"),
        ("", 9000, 9000, "udp"),
        ("", 9001, 9001, "udp"),
        ("", 7000, 70, "tcp"),
    ]
    assert_catches(
        check_ports,
        compose,
        {
            "postgres on the UI port": (
                lambda c: c["services"]["postgres"].update(ports=["127.0.0.1:8080:5432"]),
                "host port 8080/tcp is published by both",
            ),
            "registry on all interfaces, kafka port": (
                lambda c: c["services"]["schema-registry"].update(ports=["9092:8080"]),
                "host port 9092/tcp is published by both kafka and schema-registry",
            ),
            "long syntax": (
                lambda c: c["services"]["kafka-ui"].update(ports=[{"published": 5432, "target": 8080}]),
                "host port 5432/tcp",
            ),
        },
    )


def test_startup_order_and_healthchecks(compose: Compose) -> None:
    assert_catches(
        check_depends,
        compose,
        {
            "registry without healthcheck": (
                lambda c: c["services"]["schema-registry"].pop("healthcheck"),
                "waits for schema-registry to be healthy, but schema-registry has no",
            ),
            "postgres without healthcheck": (
                lambda c: c["services"]["postgres"].pop("healthcheck"),
                "postgres: has no healthcheck",
            ),
            "processor does not wait for topics": (
                lambda c: c["services"]["processor"]["depends_on"].pop("topics"),
                "processor: does not wait for topics",
            ),
            "topics starts before the third node is healthy": (
                lambda c: c["services"]["topics"]["depends_on"].pop("kafka-3"),
                "topics: does not wait for kafka-3",
            ),
            "sink only waits for kafka to start": (
                lambda c: c["services"]["sink-storage"].update(depends_on=["kafka", "schema-registry", "topics"]),
                "sink-storage: does not wait for kafka",
            ),
            "topics restarts": (
                lambda c: c["services"]["topics"].update(restart="unless-stopped"),
                "topics: runs once",
            ),
            "producer does not wait for the simulator": (
                lambda c: c["services"]["producer-modbus"]["depends_on"].pop("simulator"),
                "producer-modbus: does not wait for the simulator",
            ),
            "OPC UA producer does not wait for the simulator": (
                lambda c: c["services"]["producer-opcua"]["depends_on"].pop("simulator"),
                "producer-opcua: does not wait for the simulator",
            ),
            "unknown dependency": (
                lambda c: c["services"]["processor"]["depends_on"].update(zookeeper={"condition": "service_started"}),
                "unknown service 'zookeeper'",
            ),
            "postgres data not on a volume": (
                lambda c: c["services"]["postgres"].pop("volumes"),
                "postgres: /var/lib/postgresql/data is not on a named volume",
            ),
            "undeclared volume": (
                lambda c: c["volumes"].pop("plantstream-data"),
                "volume 'plantstream-data' is not declared",
            ),
        },
    )


def test_mounted_plant_file_exists_and_loads(compose: Compose, tmp_path: Path) -> None:
    assert check_plant_mount(compose) == []

    def mounted(c: Compose) -> str:
        return next(src for src, tgt in mounts(c["services"]["processor"]) if tgt == "/app/config/plant.yaml")

    source = mounted(compose)
    assert (REPO / source).is_file()

    # broken plant files live in a stand-in repository, mounted by the same relative path
    def repo_with(change: Callable[[dict[str, Any]], object]) -> Path:
        raw = yaml.safe_load((REPO / source).read_text())
        change(raw)
        base = tmp_path / f"repo{len(list(tmp_path.iterdir()))}"
        (base / source).parent.mkdir(parents=True)
        (base / source).write_text(yaml.safe_dump(raw, sort_keys=False))
        return base

    outside = tmp_path / "outside.yaml"
    outside.write_text((REPO / source).read_text())

    cases: dict[str, tuple[Compose, Path, str]] = {
        "mount points at a missing file": (
            broken(
                compose,
                lambda c: c["services"]["processor"].update(
                    volumes=["./docker/nope.yaml:/app/config/plant.yaml:ro", "plantstream-data:/data"]
                ),
            ),
            REPO,
            "processor: mounted plant file ./docker/nope.yaml does not exist",
        ),
        "config path not mounted": (
            broken(compose, lambda c: env_of("sink-storage")(c).update(PLANTSTREAM_CONFIG="/etc/plant.yaml")),
            REPO,
            "sink-storage: no bind mount puts a plant file at PLANTSTREAM_CONFIG=/etc/plant.yaml",
        ),
        "file outside the repository": (
            broken(
                compose,
                lambda c: c["services"]["topics"].update(
                    volumes=[f"{outside}:/app/config/plant.yaml:ro", "plantstream-data:/data"]
                ),
            ),
            REPO,
            f"topics: mounted plant file {outside} is outside the repository",
        ),
        "devices still on loopback": (
            compose,
            repo_with(lambda r: [with_host(d, "127.0.0.1") for d in r["devices"]]),
            "polls host '127.0.0.1', which is not a compose service",
        ),
        "OPC UA endpoint on loopback": (
            compose,
            repo_with(lambda r: [with_host(d, "127.0.0.1") for d in r["devices"] if d["protocol"] == "opcua"]),
            "device filler1-opcua polls host '127.0.0.1', which is not a compose service",
        ),
        "devices on a service that does not simulate": (
            compose,
            repo_with(lambda r: [with_host(d, "kafka") for d in r["devices"]]),
            "polls 'kafka', which does not run `simulate`",
        ),
        "plant file invalid": (
            compose,
            repo_with(lambda r: r["devices"][0]["tags"][0].update(type="float33")),
            "does not load",
        ),
        "plant drifted from the demo": (
            compose,
            repo_with(lambda r: r["plant"]["assets"][0].update(description="changed")),
            "no longer the demo plant",
        ),
        "simulator binds the device host": (
            broken(compose, lambda c: env_of("simulator")(c).pop("PLANTSTREAM_PIPELINE__SIMULATOR__BIND_HOST")),
            REPO,
            "simulator: the simulator binds each device host",
        ),
        "env override rejected by the model": (
            broken(compose, lambda c: env_of("processor")(c).update(PLANTSTREAM_PIPELINE__KAFKA__PARTITIONS="0")),
            REPO,
            "processor: ./docker/plant.compose.yaml with this service's environment does not load",
        ),
    }
    for label, (variant, base, expected) in cases.items():
        problems = check_plant_mount(variant, base)
        assert any(expected in p for p in problems), f"missed ({label}): expected {expected!r}, got {problems}"


def test_environment_is_restored_after_loading(compose: Compose) -> None:
    before = dict(os.environ)
    check_plant_mount(compose)
    assert dict(os.environ) == before


def test_kafka_nodes_form_one_cluster(compose: Compose) -> None:
    assert kafka_nodes(compose) == list(KAFKA_NODES)
    assert_catches(
        check_cluster,
        compose,
        {
            "a node is not a voter": (
                lambda c: env_of("kafka-2")(c).update(KAFKA_CONTROLLER_QUORUM_VOTERS="1@kafka:9093,2@kafka-2:9093"),
                "kafka-2: KAFKA_CONTROLLER_QUORUM_VOTERS",
            ),
            "two nodes with one id": (lambda c: env_of("kafka-3")(c).update(KAFKA_NODE_ID=2), "are not distinct"),
            "another cluster id": (lambda c: env_of("kafka")(c).update(CLUSTER_ID="x"), "different CLUSTER_IDs"),
            "more replicas than nodes": (
                lambda c: env_of("kafka")(c).update(KAFKA_DEFAULT_REPLICATION_FACTOR=4),
                "KAFKA_DEFAULT_REPLICATION_FACTOR 4 is more than the 3 Kafka node(s)",
            ),
            "no replica to lose": (
                lambda c: env_of("kafka-2")(c).update(KAFKA_MIN_INSYNC_REPLICAS=3),
                "kafka-2: KAFKA_MIN_INSYNC_REPLICAS leaves no replica to lose",
            ),
            "broker only": (lambda c: env_of("kafka-3")(c).update(KAFKA_PROCESS_ROLES="broker"), "broker,controller"),
        },
    )
