"""Prometheus /metrics for every long-running component, from the same counters as its RunStats.

One source of truth: the counters a component keeps for `plantstream up` are exported as
`plantstream_<name>_total{component=...}`, its measurements as `plantstream_<name>{quantile=...}`.

The naming rule for gauges: whatever a component sets with `RunStats.put` (a level that also goes
down: consumer lag, buffer fill, "store paused") is exported as the gauge `plantstream_<name>`, with
the labels it was put with (e.g. `plantstream_consumer_lag_records{component=..., topic=...}`).
Everything counted with `RunStats.add` stays a counter with its `_total` name.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from plantstream.core import logs
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats, base_component

log = logs.get(__name__)

# fixed offsets, so a Prometheus scrape config can be written once per host
PORT_OFFSETS = {
    "simulator": 0,
    "producer-modbus": 1,
    "producer-opcua": 2,
    "processor": 3,
    "sink-storage": 4,
    "sink-alerts": 5,
    "dashboard": 6,
}


class RunStatsCollector(Collector):
    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        component = snap["component"]
        levels = snap.get("levels", {})
        for name, series in sorted(levels.items()):
            label_names = sorted(series[0]["labels"]) if series else []
            g = GaugeMetricFamily(
                f"plantstream_{name}", f"{name}, a level set by {component}", labels=["component", *label_names]
            )
            for s in series:
                g.add_metric([component, *(s["labels"][k] for k in label_names)], float(s["value"]))
            yield g
        for name, value in sorted(snap["counts"].items()):
            if name in levels:
                continue
            c = CounterMetricFamily(f"plantstream_{name}", f"{name} counted by {component}", labels=["component"])
            c.add_metric([component], float(value))
            yield c
        for name, q in sorted(snap.get("quantiles", {}).items()):
            g = GaugeMetricFamily(f"plantstream_{name}", f"{name}, recent quantiles", labels=["component", "quantile"])
            for label, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max")):
                g.add_metric([component, label], float(q[key]))
            yield g


# the n-th process of a component (`up --workers/--sinks`) listens INSTANCE_PORT_STEP * (n - 1) above the first
INSTANCE_PORT_STEP = 10


def metrics_port(settings: Settings, component: str) -> int | None:
    m = settings.pipeline.metrics
    base = base_component(component)
    if not m.enabled or base not in PORT_OFFSETS:
        return None
    instance = int(component.rpartition("-")[2]) if base != component else 1
    return m.base_port + PORT_OFFSETS[base] + INSTANCE_PORT_STEP * (instance - 1)


def serve(settings: Settings, stats: RunStats) -> int | None:
    """Start the /metrics endpoint in a background thread; a taken port is a warning, not a failure."""
    port = metrics_port(settings, stats.component)
    if port is None:
        return None
    registry = CollectorRegistry()
    registry.register(RunStatsCollector(stats))
    registry.register(ProcessCollector(registry=None))
    try:
        start_http_server(port, addr=settings.pipeline.metrics.host, registry=registry)
    except OSError as e:
        log.warning(
            "metrics: cannot listen on %s:%d (%s); running without /metrics. Fix: free the port or set "
            "PLANTSTREAM_PIPELINE__METRICS__BASE_PORT",
            settings.pipeline.metrics.host,
            port,
            e.strerror,
        )
        return None
    log.info("metrics: http://%s:%d/metrics", settings.pipeline.metrics.host, port)
    return port
