"""Faults of a replicated cluster: three KRaft nodes (each a broker and a controller voter), readings and
every other topic with 3 replicas and min.insync.replicas 2, `plantstream up` with 2 workers and 2 storage
sinks writing one PostgreSQL database, the Modbus demo devices polled every 0.25 s as steady load.

Faults: SIGKILL of the leader of a readings partition (restarted after each), one broker stopped and
started again, a SIGKILL of the active controller, a worker and a sink SIGKILLed while a leader is killed.
After each run: every acknowledged frame stored once, no duplicate, every KPI and OEE window (stored) equal
to a recomputation from the readings topic, alert changes stored once; the longest pause in stored data
(any device) is recorded.

CI runs one of each fault in one run (the leader SIGKILL together with the worker and sink, a broker
stopped 15 s); PLANTSTREAM_SOAK=1 runs each scenario
PLANTSTREAM_CLUSTER_RUNS times (default 3): 5 leader SIGKILLs, a broker stopped 60 s, a controller SIGKILL,
a worker and a sink during a leader change. PLANTSTREAM_CLUSTER_RESULTS=<file.json> collects the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.stack import kafka
from plantstream.stack.postgres import LocalPostgres
from tests.conftest import Stack, plant_raw
from tests.faults import cluster as c
from tests.faults.checker import SOAK
from tests.helpers import prepare_topics

pytestmark = pytest.mark.integration

RUNS = int(os.environ.get("PLANTSTREAM_CLUSTER_RUNS", "3"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[c.Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    cl = c.start_cluster(state)
    try:
        yield cl
    finally:
        kafka.stop(cl.settings)


def test_cluster_status_lists_nodes_controller_and_replicated_topics(
    cluster: c.Cluster, stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    s = cluster.settings
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")},
        "PLANTSTREAM_PIPELINE__STATE_DIR": s.pipeline.state_dir,
        "PLANTSTREAM_PIPELINE__KAFKA__BROKER_PORT": str(s.pipeline.kafka.broker_port),
        "PLANTSTREAM_PIPELINE__KAFKA__CONTROLLER_PORT": str(s.pipeline.kafka.controller_port),
        "PLANTSTREAM_PIPELINE__KAFKA__BROKERS": "3",
    }
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "kafka", "status", "--json"], env=env, capture_output=True, text=True
    )
    doc = json.loads(out.stdout)
    k = doc["kafka"]
    assert k["running"] and k["bootstrap"] == cluster.bootstrap
    assert [n["node_id"] for n in k["nodes"]] == [1, 2, 3] and all(n["running"] for n in k["nodes"])
    health = k["health"]
    assert health["brokers"] == [1, 2, 3]
    assert health["controller"] in (1, 2, 3) and health["controller"] == cluster.controller()[0]
    assert health["under_replicated"] == [] and health["offline"] == []

    # plantstream's topics: 3 replicas, min.insync.replicas 2, as the defaults for a 3-broker cluster say
    raw = plant_raw(tmp_path, stack)
    raw["pipeline"]["kafka"]["bootstrap"] = cluster.bootstrap
    settings = Settings(**raw)
    prepare_topics(settings)
    admin = AdminClient(kafka_clients.admin_config(settings))
    name = settings.topic(topics.READINGS)
    md = admin.list_topics(name, timeout=10).topics[name]
    assert {len(p.replicas) for p in md.partitions.values()} == {3}
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([res])[res].result()
    assert configs["min.insync.replicas"].value == "2"

    # the human view names the active controller and says nothing is under-replicated
    text = subprocess.run(
        [sys.executable, "-m", "plantstream", "kafka", "status"], env=env, capture_output=True, text=True
    ).stdout
    assert "active controller" in text and "0 under-replicated, 0 offline" in text, text


def _run(
    tmp_path: Path, stack: Stack, cluster: c.Cluster, pg: LocalPostgres, scenario: str, faults: list[c.Fault]
) -> None:
    dsn = pg.dsn(pg.new_database())
    run = c.start_up(tmp_path, stack, cluster, dsn, duration=1800)
    t0 = time.monotonic()
    try:
        for fault in faults:
            fault(run, cluster)
    except BaseException:
        run.meter.__exit__()
        run.proc.kill()
        run.proc.wait()
        kafka.start(cluster.settings)  # the next test needs every node
        raise
    report = run.finish(scenario, t0, faults=len(faults), events=run.events).emit()
    c.record(report, scenario)
    report.assert_ok()
    assert report.kpi is not None and report.kpi.got > 0, "no KPI window was stored to compare"
    assert report.extra["oee_got"] > 0, "no OEE window was stored to compare"


@pytest.mark.skipif(SOAK, reason="the soak set runs each scenario on its own")
def test_cluster_faults_one_of_each(
    cluster: c.Cluster, stack: Stack, pg: LocalPostgres, tmp_path: Path, clean_env: None
) -> None:
    # the leader SIGKILL is the one of the worker-and-sink fault (the soak set runs it alone, 5 times)
    faults: list[c.Fault] = [
        c.controller_sigkill,
        c.worker_and_sink_sigkill,
        lambda run, cl: c.broker_stopped(run, cl, 15),
    ]
    _run(tmp_path, stack, cluster, pg, "cluster-one-of-each", faults)


SOAK_SCENARIOS: dict[str, list[c.Fault]] = {
    "cluster-leader-sigkill-x5": [c.leader_sigkill] * 5,
    "cluster-broker-stopped-60s": [lambda run, cl: c.broker_stopped(run, cl, 60)],
    "cluster-controller-sigkill": [c.controller_sigkill],
    "cluster-worker-sink-sigkill-during-leader-change": [c.worker_and_sink_sigkill],
}


@pytest.mark.skipif(not SOAK, reason="soak set: PLANTSTREAM_SOAK=1")
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("run_no", range(1, RUNS + 1))
@pytest.mark.parametrize("scenario", sorted(SOAK_SCENARIOS))
def test_cluster_fault_soak(
    scenario: str,
    run_no: int,
    cluster: c.Cluster,
    stack: Stack,
    pg: LocalPostgres,
    tmp_path: Path,
    clean_env: None,
) -> None:
    _run(tmp_path, stack, cluster, pg, scenario, SOAK_SCENARIOS[scenario])
