"""The `plantstream` command line."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from plantstream.bench.registry import BENCHMARKS, Benchmark, write_result
from plantstream.core import logs
from plantstream.core.config import ConfigError, Settings, load_config
from plantstream.core.errors import ToolError

app = typer.Typer(no_args_is_help=True, add_completion=False)
kafka_app = typer.Typer(no_args_is_help=True, help="The local Kafka broker and schema registry.")
topics_app = typer.Typer(no_args_is_help=True, help="Topics and their Avro schemas.")
produce_app = typer.Typer(no_args_is_help=True, help="Device producers.")
sink_app = typer.Typer(no_args_is_help=True, help="Sinks.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON out).")
users_app = typer.Typer(no_args_is_help=True, help="The dashboard's users (pipeline.dashboard.users_file).")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(produce_app, name="produce")
app.add_typer(sink_app, name="sink")
app.add_typer(bench_app, name="bench")
app.add_typer(users_app, name="users")

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="plant YAML (default: $PLANTSTREAM_CONFIG or the demo plant)")
]


class Ctx:
    config_path: str | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_config(self.config_path)
            except ConfigError as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2) from e
        return self._settings


ctx_state = Ctx()


@app.callback()
def _root(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """plantstream: shop-floor data from OPC UA and Modbus devices to Kafka, KPIs, storage and alerts."""
    ctx_state.config_path = config
    ctx_state._settings = None  # loaded for this invocation (in-process runners invoke the app more than once)
    logs.configure(log_level)


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


@app.command("check-config")
def check_config(file: Annotated[str, typer.Argument(help="plant YAML to validate")]) -> None:
    """Validate a config file; exit 0 when usable, 2 with the problems listed otherwise."""
    try:
        s = load_config(file)
    except ConfigError as e:
        raise _fail(str(e), 2) from e
    from producers.replay import ReplayError, check_source

    problems = []
    for src in s.replay:
        try:
            check_source(src)
        except ReplayError as e:
            problems.append(f"  - replay[{src.name}]: {e}")
    if problems:
        raise _fail(f"{file}: {len(problems)} problem(s) in the replay sources:\n" + "\n".join(problems), 2)
    n_tags = sum(len(d.tags) for d in s.devices)
    typer.echo(
        f"{file}: OK ({len(s.plant.assets)} assets, {len(s.devices)} devices, {n_tags} tags, "
        f"{len(s.replay)} replay sources)"
    )


# --- local stack -------------------------------------------------------------------------------


def with_overrides(
    s: Settings, *, brokers: int | None = None, workers: int | None = None, sinks: int | None = None
) -> Settings:
    """The settings with command-line counts in place of the configured ones (checked like the config)."""
    from plantstream.core.config import shared_store_problem

    p = s.pipeline
    kafka = p.kafka.model_copy(update={"brokers": brokers}) if brokers is not None else p.kafka
    storage = p.storage.model_copy(update={"sinks": sinks}) if sinks is not None else p.storage
    for name, value in (("--brokers", brokers), ("--workers", workers), ("--sinks", sinks)):
        if value is not None and not 1 <= value <= (5 if name == "--brokers" else 32):
            raise _fail(f"{name} {value}: use 1 to {5 if name == '--brokers' else 32}", 2)
    if problem := shared_store_problem(storage):
        raise _fail(problem, 2)
    pipeline = p.model_copy(
        update={"kafka": kafka, "storage": storage, **({"workers": workers} if workers is not None else {})}
    )
    return s.model_copy(update={"pipeline": pipeline})


BrokersOpt = Annotated[
    int | None,
    typer.Option("--brokers", help="local Kafka nodes, each a broker and a controller voter (default: the config)"),
]


@kafka_app.command("start")
def kafka_start(brokers: BrokersOpt = None) -> None:
    """Fetch (first time), start and wait for the broker(s) and the schema registry."""
    from plantstream.stack import kafka, registry

    s = with_overrides(ctx_state.settings(), brokers=brokers)
    try:
        k = kafka.start(s)
        if len(k.nodes) != s.pipeline.kafka.brokers:
            typer.echo(f"kafka: a {len(k.nodes)}-node local Kafka already runs here; `plantstream kafka stop` first")
        typer.echo(
            f"kafka: running on {k.bootstrap} ({len(k.nodes)} node(s), pids "
            f"{', '.join(str(n.pid) for n in k.nodes)}, data {k.data_dir})"
        )
        r = registry.start(s)
        typer.echo(f"registry: running on {r.url} (pid {r.pid})")
    except Exception as e:
        raise _fail(str(e)) from e


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the registry and the broker (data is kept)."""
    from plantstream.stack import kafka, registry

    s = ctx_state.settings()
    typer.echo("registry: stopped" if registry.stop(s) else "registry: was not running")
    typer.echo("kafka: stopped" if kafka.stop(s) else "kafka: was not running")


@kafka_app.command("status")
def kafka_status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False) -> None:
    """Is the local stack up, and where: every Kafka node, the active controller, under-replicated partitions."""
    from plantstream.stack import kafka, kafka_health, registry

    s = ctx_state.settings()
    k = kafka.status(s)
    r = registry.status(s)
    bootstrap = s.pipeline.kafka.bootstrap or k.bootstrap
    url = s.pipeline.registry.url or r.url
    health = kafka_health.health(s) if k.bootstrap and not s.pipeline.kafka.bootstrap else None
    doc = {
        "running": bool(bootstrap and url),
        "bootstrap": bootstrap,
        "registry_url": url,
        "kafka": {
            **asdict(k),
            "configured": bool(s.pipeline.kafka.bootstrap),
            **({"health": health.as_dict()} if health else {}),
        },
        "registry": {**asdict(r), "configured": bool(s.pipeline.registry.url)},
    }
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        typer.echo(f"kafka:    {'up on ' + bootstrap if bootstrap else 'down (`plantstream kafka start`)'}")
        if health is not None:
            typer.echo("\n".join("          " + line for line in kafka_health.render(health).splitlines()))
        typer.echo(f"registry: {'up on ' + url if url else 'down (`plantstream kafka start`)'}")
    if not doc["running"]:
        raise typer.Exit(1)


# --- topics, tail -------------------------------------------------------------------------------


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or update the declared topics and register their schemas (idempotent)."""
    from confluent_kafka.admin import AdminClient

    from plantstream.core import kafka_clients, topics

    s = ctx_state.settings()
    try:
        kafka_clients.wait_for_broker(s, "topics", max_wait=5)
        changes = topics.apply(s, AdminClient(kafka_clients.admin_config(s)))
        ids = topics.register_schemas(s, kafka_clients.registry(s), attempts=4)
    except Exception as e:
        raise _fail(str(e)) from e
    for c in changes:
        typer.echo(c)
    for subj, i in ids.items():
        typer.echo(f"schema {subj}: id {i}")
    typer.echo("topics: up to date" if not changes else f"topics: {len(changes)} change(s) applied")


@app.command("tail")
def tail_cmd(
    topic: Annotated[str, typer.Argument(help="topic name, e.g. plant.readings.v1")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning/--from-end")] = True,
    max_messages: Annotated[int | None, typer.Option("--max", "-n", help="stop after N messages")] = None,
    idle_timeout: Annotated[float | None, typer.Option("--idle-timeout", help="stop after S idle seconds")] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="the newest message per key, then stop (plant.state.v1: the plant now)")
    ] = False,
) -> None:
    """Print a topic as JSON lines (values decoded with the registry)."""
    from plantstream.tail import tail

    tail(
        ctx_state.settings(),
        topic,
        from_beginning=from_beginning,
        limit=max_messages,
        idle_timeout=idle_timeout,
        latest=latest,
    )


@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Topics, partitions, message counts and rates, and lag per plantstream consumer group."""
    from plantstream.core import kafka_clients
    from plantstream.status import collect, render

    s = ctx_state.settings()
    try:
        kafka_clients.wait_for_broker(s, "status", max_wait=5)
        snap = collect(s)
    except Exception as e:
        raise _fail(str(e)) from e
    typer.echo(json.dumps(snap) if as_json else render(snap))


# --- pipeline components ------------------------------------------------------------------------


@app.command("simulate")
def simulate(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
    faults: Annotated[
        int | None, typer.Option(help="inject labelled faults, at most N (0 = none); default: the config")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the signals and the fault schedule")] = None,
    speed: Annotated[float | None, typer.Option(help="simulated seconds per real second (accelerated time)")] = None,
    ground_truth: Annotated[
        str | None, typer.Option("--ground-truth", help="write the faults (JSON lines) here")
    ] = None,
    fault_hours: Annotated[float | None, typer.Option(help="simulated hours the fault schedule covers")] = None,
) -> None:
    """Serve the configured plant's devices (Modbus TCP/RTU, OPC UA) with simulated machine signals."""
    from plantstream.simulators.service import run_simulator, simulator_overrides

    try:
        settings = simulator_overrides(
            ctx_state.settings(), faults=faults, seed=seed, speed=speed, ground_truth=ground_truth, hours=fault_hours
        )
    except ValueError as e:
        raise _fail(str(e), 2) from e
    run_simulator(settings, duration)


@produce_app.command("modbus")
def produce_modbus(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
) -> None:
    """Poll the configured Modbus devices and produce ReadingFrames to Kafka."""
    from producers.service import run_modbus

    raise typer.Exit(run_modbus(ctx_state.settings(), duration))


@produce_app.command("opcua")
def produce_opcua(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
    browse: Annotated[
        str | None, typer.Option("--browse", help="list the variables of this endpoint as config tags (YAML) and exit")
    ] = None,
    username: Annotated[str | None, typer.Option(help="--browse: user name (password from $OPCUA_PASSWORD)")] = None,
) -> None:
    """Subscribe to (or poll) the configured OPC UA devices and produce ReadingFrames to Kafka."""
    if browse is not None:
        import asyncio

        from producers.readers.opcua import browse_tags, browse_yaml

        try:
            tags = asyncio.run(browse_tags(browse, username=username, password=os.environ.get("OPCUA_PASSWORD")))
        except Exception as e:  # any failure to browse is the user's to fix: say which and why
            raise _fail(f"cannot browse {browse}: {type(e).__name__}: {e}", 1) from e
        typer.echo(browse_yaml(tags), nl=False)
        return
    from producers.service import run_opcua

    raise typer.Exit(run_opcua(ctx_state.settings(), duration))


@produce_app.command("mqtt")
def produce_mqtt(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
) -> None:
    """Subscribe to the configured MQTT topics (plain, JSON, UMH _historian) and produce ReadingFrames."""
    from producers.service import run_mqtt

    raise typer.Exit(run_mqtt(ctx_state.settings(), duration))


@produce_app.command("sparkplug")
def produce_sparkplug(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
    discover: Annotated[
        float | None,
        typer.Option("--discover", help="listen this many seconds for births and print them as config (YAML)"),
    ] = None,
    broker: Annotated[str, typer.Option(help="--discover: a broker name of pipeline.mqtt.brokers")] = "local",
    group: Annotated[str | None, typer.Option(help="--discover: only this Sparkplug group")] = None,
) -> None:
    """Run the Sparkplug B host application for the configured edge nodes and produce ReadingFrames."""
    settings = ctx_state.settings()
    if discover is not None:
        import asyncio

        from producers.readers.sparkplug import discover as run_discover

        if broker not in settings.pipeline.mqtt.brokers:
            known = sorted(settings.pipeline.mqtt.brokers)
            raise _fail(f"--broker {broker!r}: not in pipeline.mqtt.brokers ({known})", 2)
        typer.echo(asyncio.run(run_discover(settings, broker, discover, group)), nl=False)
        return
    from producers.service import run_sparkplug

    raise typer.Exit(run_sparkplug(settings, duration))


@produce_app.command("replay")
def produce_replay(
    source: Annotated[str | None, typer.Option(help="name of a replay source in the config; default: all")] = None,
    speed: Annotated[str, typer.Option(help="1 = original pace, 60 = 60x faster, max = as fast as possible")] = "max",
) -> None:
    """Replay historian exports (CSV/Parquet) as historical frames, with a progress bar."""
    from producers.service import run_replay

    try:
        pace = None if speed == "max" else float(speed)
    except ValueError as e:
        raise _fail(f"--speed {speed!r}: use a positive number or max", 2) from e
    if pace is not None and pace <= 0:
        raise _fail(f"--speed {speed!r}: use a positive number or max", 2)
    raise typer.Exit(run_replay(ctx_state.settings(), source, pace))


InstanceOpt = Annotated[
    int,
    typer.Option(
        "--instance", min=1, help="which of several processes in the consumer group this is (its counters file)"
    ),
]


@app.command("process")
def process(instance: InstanceOpt = 1) -> None:
    """Run the Faust stream processor (KPI windows, dead letters)."""
    from processors.worker.app import run_worker
    from processors.worker.faust_compat import UnsupportedVersions

    try:
        run_worker(ctx_state.settings(), instance=instance)
    except UnsupportedVersions as e:
        raise _fail(str(e), 2) from e


@app.command("train")
def train_model(
    asset: Annotated[str, typer.Option(help="asset path whose anomaly model is trained")],
    source: Annotated[
        str | None, typer.Option(help="replay source (config replay:) holding its normal history")
    ] = None,
    since: Annotated[str | None, typer.Option(help="store: first time of the history (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="store: end of the history (ISO 8601, exclusive)")] = None,
    out: Annotated[str | None, typer.Option(help="write the checkpoint here (JSON) instead of to the worker")] = None,
) -> None:
    """Fit an asset's anomaly model on normal history (a replay source, or the SQLite store between --since and
    --until) and hand it to the worker (its model changelog), so the model judges from the first live frame.
    Stop the worker first; it restores the trained model when it starts."""
    from datetime import UTC, datetime
    from pathlib import Path

    from plantstream.train import TrainError, publish, train

    def micros(text: str | None, flag: str) -> int | None:
        if text is None:
            return None
        try:
            t = datetime.fromisoformat(text)
        except ValueError as e:
            raise _fail(f"{flag} {text!r} is not an ISO 8601 time such as 2026-01-01T00:00:00Z", 2) from e
        return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1_000_000)

    settings = ctx_state.settings()
    try:
        state = train(settings, asset, source, micros(since, "--since"), micros(until, "--until"))
        if out:
            Path(out).write_text(json.dumps(state, allow_nan=False) + "\n")
            where = out
        else:
            where = publish(settings, asset, state)
    except TrainError as e:
        raise _fail(str(e), 2) from e
    typer.echo(
        json.dumps(
            {
                "asset": asset,
                "model": state.get("kind"),
                "frames": state.get("n"),
                "warmup_frames": state.get("warmup"),
                "left_out": state.get("features", {}).get("dropped", []),
                "written_to": where,
            }
        )
    )


@sink_app.command("storage")
def sink_storage(instance: InstanceOpt = 1) -> None:
    """Write readings and KPI windows from Kafka into the store (SQLite or PostgreSQL)."""
    from sinks.storage import main as run

    run(ctx_state.settings(), instance)


@sink_app.command("alerts")
def sink_alerts() -> None:
    """Deliver alert state changes to the configured channels (webhook, e-mail, MQTT)."""
    from sinks.alerts.sink import main as run

    run(ctx_state.settings())


@app.command("dashboard")
def dashboard_cmd(
    host: Annotated[str | None, typer.Option(help="listen address (default: pipeline.dashboard.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: pipeline.dashboard.port)")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="--no-live: the store's history only")] = True,
) -> None:
    """The plant's live web page: asset tree, OEE, trends, alerts with acknowledge, pipeline health."""
    from sinks.dashboard.server import ExposureError
    from sinks.dashboard.server import main as run
    from sinks.dashboard.users import UsersFileError

    try:
        run(ctx_state.settings(), host=host, port=port, live=live)
    except (ExposureError, UsersFileError) as e:
        raise _fail(str(e), 2) from None


def _users_file(file: str | None) -> Path:
    from sinks.dashboard.auth import users_path

    if file:
        return Path(file)
    s = ctx_state.settings()
    p = users_path(s.pipeline.dashboard, s.pipeline.state_dir)
    if p is None:
        raise _fail("no users file: pass --file or set pipeline.dashboard.users_file (e.g. users.yaml)", 2)
    return p


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="sign-in name")],
    role: Annotated[str, typer.Option(help="viewer (read-only), operator (acknowledge, shelve) or admin")] = "viewer",
    file: Annotated[str | None, typer.Option(help="users file (default: pipeline.dashboard.users_file)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Add a dashboard user, or set their role and password (argon2id hash; never the password itself)."""
    import getpass

    from sinks.dashboard.users import upsert

    path = _users_file(file)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise _fail("the two passwords differ", 2)
    try:
        upsert(path, name, role, password)
    except ValueError as e:
        raise _fail(str(e), 2) from None
    typer.echo(f"{name} ({role}) in {path}")


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="sign-in name")],
    file: Annotated[str | None, typer.Option(help="users file (default: pipeline.dashboard.users_file)")] = None,
) -> None:
    """Remove a dashboard user (their sessions end at their next request)."""
    from sinks.dashboard.users import remove

    path = _users_file(file)
    if not remove(path, name):
        raise _fail(f"no user {name!r} in {path}", 1)
    typer.echo(f"{name} removed from {path}")


@users_app.command("list")
def users_list(
    file: Annotated[str | None, typer.Option(help="users file (default: pipeline.dashboard.users_file)")] = None,
) -> None:
    """The users and their roles."""
    from sinks.dashboard.users import UsersFile, UsersFileError

    try:
        users = UsersFile(_users_file(file)).load()
    except UsersFileError as e:
        raise _fail(str(e), 2) from None
    for name, (role, _hash) in sorted(users.items()):
        typer.echo(f"{name}\t{role}")


@app.command("up")
def up_cmd(
    duration: Annotated[float | None, typer.Option(help="seconds to run; default until Ctrl-C")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Faust worker processes in one consumer group (default: pipeline.workers)")
    ] = None,
    sinks: Annotated[
        int | None,
        typer.Option(
            help="storage sink processes in one consumer group; more than one needs PostgreSQL "
            "(default: pipeline.storage.sinks)"
        ),
    ] = None,
    brokers: BrokersOpt = None,
) -> None:
    """Run the whole pipeline locally: stack, simulator, producer, processor, sinks, dashboard."""
    from plantstream.up import up

    s = with_overrides(ctx_state.settings(), brokers=brokers, workers=workers, sinks=sinks)
    raise typer.Exit(up(s, ctx_state.config_path or os.environ.get("PLANTSTREAM_CONFIG"), duration))


def _bench_command(b: Benchmark) -> Callable[..., None]:
    """The one body of every `plantstream bench NAME`: check the options, run, summary on stderr, JSON out."""

    def command(**options: Any) -> None:
        json_out = options.pop("json_out")
        problem = b.check(options)
        if problem:
            raise _fail(problem, 2)
        settings = ctx_state.settings()
        if "brokers" in b.settings_options:
            settings = with_overrides(settings, brokers=options.pop("brokers"))
        try:
            result, text = b.execute(settings, options)
        except ToolError as e:  # a data set not fetched, a local server that cannot start: say so, no trace
            raise _fail(str(e), 2) from e
        if text:
            typer.echo(text, err=True)
        write_result(result, json_out)
        typer.echo(json.dumps(result))

    params = [
        inspect.Parameter(
            o.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=o.default,
            annotation=Annotated[o.type | None if o.default is None else o.type, typer.Option(help=o.help)],
        )
        for o in b.options
    ]
    params.append(
        inspect.Parameter(
            "json_out",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option("--json-out", help="also write the JSON here")],
        )
    )
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = b.help
    return command


for _b in BENCHMARKS:
    bench_app.command(_b.name)(_bench_command(_b))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
