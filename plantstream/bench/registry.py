"""Every `plantstream bench NAME` command, registered in one list (BENCHMARKS).

A Benchmark names its options (with defaults and help), checks them (`check` returns the problem or
None), and runs from the module that measures (imported only when that benchmark runs): `run(module,
settings, options)` returns the JSON-able result. The command line turns each entry into a command
with one body: check, run, print `render(result)` on stderr when the module has one, write the JSON to
`--json-out` and print it on stdout. A new benchmark is a module in plantstream/bench/ and an entry here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from plantstream.core.config import Settings

Options = dict[str, Any]


@dataclass(frozen=True)
class Opt:
    name: str  # the Python name; the command-line flag is --name with dashes
    default: int | float | str | bool | None
    help: str
    kind: type = field(default=type(None))  # the option's type when the default is None

    @property
    def type(self) -> type:
        return type(self.default) if self.default is not None else self.kind


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    module: str  # where it is measured: plantstream.bench.<name>
    run: Callable[[ModuleType, Settings, Options], dict[str, Any]]
    options: tuple[Opt, ...] = ()
    check: Callable[[Options], str | None] = lambda _o: None
    render: str | None = None  # name of the module's function that summarises the result for people
    # options the command line applies to the settings before the run (not passed to it): "brokers"
    settings_options: tuple[str, ...] = ()

    def execute(self, settings: Settings, options: Options) -> tuple[dict[str, Any], str | None]:
        """Run it; the result and its human summary (None when the module has no renderer)."""
        module = importlib.import_module(self.module)
        result = self.run(module, settings, options)
        text = getattr(module, self.render)(result) if self.render else None
        return result, text


def write_result(result: dict[str, Any], path: str | None) -> None:
    """The result as indented JSON in `path` (folders created), when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


ASSETS = Opt("assets", 100, "synthetic assets")
BROKERS = Opt("brokers", None, "local Kafka nodes to start (1 or 3); default: pipeline.kafka.brokers", kind=int)


def _need(ok: bool, problem: str) -> str | None:
    return None if ok else problem


def _pipeline(m: ModuleType, s: Settings, o: Options) -> dict[str, Any]:
    return dict(
        m.run_pipeline_bench(
            s,
            assets=o["assets"],
            tags=o["tags"],
            rate_hz=o["rate"],
            duration_s=o["duration"],
            warmup_s=o["warmup"],
        )
    )


def _anomaly(m: ModuleType, s: Settings, o: Options) -> dict[str, Any]:
    from plantstream.bench import datasets

    if o["dataset"] == "simulator":
        result: dict[str, Any] = m.run_benchmark(seed=o["seed"], assets=o["assets"], hours=o["hours"])
    else:
        result = {}
        for name in PUBLIC_DATASETS[o["dataset"]]:
            root = (datasets.fetch if o["fetch"] else datasets.require)(datasets.DATASETS[name])
            runner = importlib.import_module(f"plantstream.bench.{name.replace('-', '_')}")
            result[name] = runner.run(root)
    result["machine"] = m.machine_description()
    return result


PUBLIC_DATASETS = {"tennessee-eastman": ["tennessee-eastman"], "nab": ["nab"], "public": ["tennessee-eastman", "nab"]}


def _dashboard(m: ModuleType, s: Settings, o: Options) -> dict[str, Any]:
    result: dict[str, Any] = m.run_dashboard_bench(hours=o["hours"], tags=o["tags"], scan_s=o["scan"], loads=o["loads"])
    if o["assets"]:
        from plantstream.bench.dashboard_plant import run_plant_case

        result[f"plant_{o['assets']}_assets"] = run_plant_case(assets=o["assets"], loads=min(o["loads"], 5))
    return result


def _broker(kind: str) -> Callable[[ModuleType, Settings, Options], dict[str, Any]]:
    def run(m: ModuleType, s: Settings, o: Options) -> dict[str, Any]:
        shape = o.get("shape", "sparkplug")
        return dict(
            m.run_broker_bench(
                s, kind, shape=shape, devices=o["devices"], tags=o["tags"], metrics=o["metrics"], repeats=o["repeats"]
            )
        )

    return run


def _broker_check(o: Options) -> str | None:
    if o.get("shape", "sparkplug") not in ("topic_per_tag", "umh_historian", "sparkplug"):
        return "--shape is topic_per_tag or umh_historian"
    return _need(
        o["devices"] >= 1 and o["tags"] >= 1 and o["metrics"] >= o["tags"] and o["repeats"] >= 1,
        "need --devices >= 1, --tags >= 1, --metrics >= --tags, --repeats >= 1",
    )


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        "pipeline",
        "Whole pipeline on a synthetic plant: samples/s per stage, latency, lag, CPU and RSS.",
        "plantstream.bench.pipeline",
        _pipeline,
        (
            ASSETS,
            Opt("tags", 25, "tags per asset (samples per frame)"),
            Opt("rate", 10.0, "scans per asset per second"),
            Opt("duration", 60.0, "seconds of load"),
            Opt("warmup", 15.0, "seconds before measuring"),
            BROKERS,
        ),
        render="render",
        settings_options=("brokers",),
    ),
    Benchmark(
        "worker",
        "One Faust worker draining a backlog with KPIs, OEE, alert rules and anomaly scoring on: samples/s.",
        "plantstream.bench.worker",
        lambda m, s, o: dict(
            m.run_worker_bench(
                s,
                assets=o["assets"],
                tags=o["tags"],
                frames=o["frames"],
                rate_hz=o["rate"],
                profile=o["profile"],
                peer_name=o["peer"],
                repeats=o["repeats"],
            )
        ),
        (
            ASSETS,
            Opt("tags", 25, "tags per asset (samples per frame)"),
            Opt("frames", 60_000, "frames in the backlog the worker drains"),
            Opt("rate", 10.0, "scans per asset per second, in event time"),
            Opt("profile", False, "record a py-spy profile of the worker"),
            Opt(
                "peer",
                None,
                "also drain the backlog with the worker on KPI windows only and with this reference peer (quix: "
                "Quix Streams, in a virtualenv of its own made on first use), compare their windows field by "
                "field and report the ratios",
                kind=str,
            ),
            Opt("repeats", 1, "rounds of runs (interleaved, the order rotating)"),
        ),
        check=lambda o: _need(o["peer"] in (None, "quix"), f"--peer {o['peer']}: the one reference peer is quix")
        or _need(o["repeats"] >= 1, "--repeats must be at least 1"),
        render="render",
    ),
    Benchmark(
        "alerts",
        "p50/p95/p99 from a sample's timestamp to its alert on plant.alerts.v1, one worker under live load.",
        "plantstream.bench.alerts",
        lambda m, s, o: dict(
            m.run_alert_latency_bench(
                s,
                assets=o["assets"],
                tags=o["tags"],
                rate_hz=o["rate"],
                duration_s=o["duration"],
                warmup_s=o["warmup"],
                trip_every_s=o["trip_every"],
            )
        ),
        (
            ASSETS,
            Opt("tags", 20, "tags per asset (samples per frame)"),
            Opt("rate", 5.0, "scans per asset per second (live)"),
            Opt("duration", 60.0, "seconds of load"),
            Opt("warmup", 10.0, "first seconds not counted"),
            Opt("trip_every", 20.0, "seconds between two trips of one asset"),
        ),
        check=lambda o: _need(
            o["assets"] >= 1
            and o["tags"] >= 4
            and o["rate"] > 0
            and o["duration"] > o["warmup"]
            and o["trip_every"] > 0,
            "need --assets >= 1, --tags >= 4, --rate > 0, --duration > --warmup, --trip-every > 0",
        ),
        render="render",
    ),
    Benchmark(
        "memory",
        "RSS of one real worker holding windows, OEE, alert and anomaly-model state of ASSETS x TAGS.",
        "plantstream.bench.memory",
        lambda m, s, o: dict(
            m.run_memory_bench(
                s, assets=o["assets"], tags=o["tags"], frames_per_asset=o["frames"], warmup_frames=o["warmup_frames"]
            )
        ),
        (
            Opt("assets", 1000, "synthetic assets"),
            Opt("tags", 20, "tags per asset"),
            Opt("frames", 90, "frames per asset (1 scan/s of event time)"),
            Opt("warmup_frames", 20, "anomaly model warm-up (frames)"),
        ),
        check=lambda o: _need(
            o["assets"] >= 1 and o["tags"] >= 4 and o["warmup_frames"] >= 20 and o["frames"] > o["warmup_frames"],
            "need --assets >= 1, --tags >= 4, --warmup-frames >= 20 and --frames > --warmup-frames",
        ),
        render="render",
    ),
    Benchmark(
        "modbus",
        "Register-block reads/s of one Modbus producer, and the others' rate with one silent device.",
        "plantstream.bench.modbus",
        lambda m, s, o: dict(m.run_modbus_bench(devices=o["devices"], seconds=o["seconds"], repeats=o["repeats"])),
        (
            Opt("devices", 20, "simulated devices behind one gateway"),
            Opt("seconds", 20.0, "measured seconds per run"),
            Opt("repeats", 3, "runs; the median is reported"),
        ),
    ),
    Benchmark(
        "opcua",
        "OPC UA data changes/s through one producer process into Kafka (servers in their own processes).",
        "plantstream.bench.opcua",
        lambda m, s, o: dict(
            m.run_opcua_bench(
                s, nodes=o["nodes"], rate_hz=o["rate"], seconds=o["seconds"], repeats=o["repeats"], servers=o["servers"]
            )
        ),
        (
            Opt("nodes", 2000, "variables changing on the simulated server"),
            Opt("rate", 5.0, "updates per second of every variable"),
            Opt("seconds", 10.0, "measured seconds per run"),
            Opt("repeats", 3, "runs; the median is reported"),
            Opt("servers", 2, "server processes sharing the nodes (one device each)"),
        ),
        check=lambda o: _need(
            o["nodes"] >= o["servers"] >= 1 and o["rate"] > 0 and o["seconds"] > 0 and o["repeats"] >= 1,
            "need --nodes >= --servers >= 1, --rate > 0, --seconds > 0, --repeats >= 1",
        ),
    ),
    Benchmark(
        "mqtt",
        "Metrics/s from a mosquitto backlog through one MQTT producer process to Kafka acknowledgement.",
        "plantstream.bench.broker",
        _broker("mqtt"),
        (
            Opt("shape", "umh_historian", "topic_per_tag (one JSON value per message) or umh_historian"),
            Opt("devices", 20, "assets (one mqtt device each)"),
            Opt("tags", 25, "tags per asset (per message for umh_historian)"),
            Opt("metrics", 500_000, "metrics in the backlog"),
            Opt("repeats", 3, "runs; the median is reported"),
        ),
        check=_broker_check,
        render="render",
    ),
    Benchmark(
        "sparkplug",
        "Metrics/s from a mosquitto backlog of DDATA through one Sparkplug B host process to Kafka acknowledgement.",
        "plantstream.bench.broker",
        _broker("sparkplug"),
        (
            Opt("devices", 20, "Sparkplug devices behind one edge node"),
            Opt("tags", 25, "metrics per DDATA message"),
            Opt("metrics", 500_000, "metrics in the backlog"),
            Opt("repeats", 3, "runs; the median is reported"),
        ),
        check=_broker_check,
        render="render",
    ),
    Benchmark(
        "anomaly",
        "The anomaly model on labelled data: simulated pump faults (event F1, false alarms/asset-hour), the "
        "Tennessee Eastman process (detection and false alarm rates against PCA T²/Q) or NAB's industrial series "
        "(NAB score). Public data sets are read from ~/.cache/plantstream/datasets (PLANTSTREAM_DATASETS); see "
        "docs/anomaly.md.",
        "plantstream.bench.anomaly",
        _anomaly,
        (
            Opt("dataset", "simulator", "simulator (labelled simulated pump faults), tennessee-eastman, nab or public"),
            Opt("seed", 11, "simulator: seed of the simulated plant and fault schedule"),
            Opt("hours", 6.0, "simulator: simulated hours per asset (1 frame/s)"),
            Opt("assets", 3, "simulator: simulated pumps"),
            Opt("fetch", False, "fill the data set cache from the data sets' repositories (git)"),
        ),
        check=lambda o: (
            f"--dataset {o['dataset']!r}: use simulator, tennessee-eastman, nab or public"
            if o["dataset"] != "simulator" and o["dataset"] not in PUBLIC_DATASETS
            else _need(o["hours"] > 0 and o["assets"] >= 1, "--hours must be > 0 and --assets >= 1")
        ),
    ),
    Benchmark(
        "storage",
        "Samples/s into SQLite and PostgreSQL through the stores' write path.",
        "plantstream.bench.storage",
        lambda m, s, o: dict(m.run(runs=o["runs"], n_batches=o["batches"], frames_per_batch=o["frames"], dsn=o["dsn"])),
        (
            Opt("runs", 5, "runs per store, each into an empty database; the median is reported"),
            Opt("batches", 20, "batches (transactions) per run"),
            Opt("frames", 500, "frames per batch, 20-50 samples each"),
            Opt("dsn", None, "PostgreSQL server to use; default: a throwaway local one", kind=str),
        ),
        check=lambda o: _need(
            o["runs"] >= 1 and o["batches"] >= 1 and o["frames"] >= 1, "--runs, --batches and --frames must be >= 1"
        ),
    ),
    Benchmark(
        "kafka-start",
        "Start-up seconds, idle CPU and memory of the local Kafka (free ports, a temporary state folder).",
        "plantstream.bench.kafka_start",
        lambda m, s, o: dict(
            m.run_kafka_start_bench(
                s, brokers=o["brokers"], repeats=o["repeats"], settle_s=o["settle"], window_s=o["window"]
            )
        ),
        (
            Opt("brokers", 3, "local Kafka nodes (1 or a cluster)"),
            Opt("repeats", 3, "fresh starts; medians are reported"),
            Opt("settle", 30.0, "seconds after start before measuring idle CPU"),
            Opt("window", 60.0, "seconds of idle CPU measured"),
        ),
        check=lambda o: _need(
            1 <= o["brokers"] <= 5 and o["repeats"] >= 1 and o["settle"] >= 0 and o["window"] > 0,
            "need 1 <= --brokers <= 5, --repeats >= 1, --settle >= 0 and --window > 0",
        ),
        render="render",
    ),
    Benchmark(
        "dashboard",
        "First paint and time to charts drawn in headless chromium, with HOURS of history for one asset, and the "
        "page of a plant of ASSETS assets (tree, search, selecting an asset).",
        "plantstream.bench.dashboard",
        _dashboard,
        (
            Opt("hours", 24.0, "hours of history for one asset"),
            Opt("tags", 10, "process-value tags of the asset"),
            Opt("scan", 1.0, "seconds between two samples of a tag"),
            Opt("loads", 7, "page loads; medians are reported"),
            Opt("assets", 1000, "assets of the plant case (search, lazy tree); 0 skips it"),
        ),
        check=lambda o: _need(
            o["hours"] > 0 and o["tags"] >= 1 and o["scan"] > 0 and o["loads"] >= 1 and o["assets"] >= 0,
            "need --hours > 0, --tags >= 1, --scan > 0, --loads >= 1 and --assets >= 0",
        ),
    ),
]
