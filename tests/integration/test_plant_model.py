"""The plant's live model on Kafka (issue 17), over the real broker and registry, with two real workers
in one group (the broker shows each holding the same partitions of the readings and the alarm commands),
the dashboard, the storage sink and the alert sink as processes:

- plant.state.v1: an IT system with nothing but confluent_kafka reads the compacted topic from its
  beginning and has the whole plant, the same as the dashboard's read API serves (GET /api/v1/assets),
  whose answers also fit the OpenAPI document it serves;
- the ISA-18.2 alarm lifecycle: alarms raised by frames, acknowledged and shelved through the API as
  commands to the worker, the state on plant.alarm-state.v1, every transition on plant.alarm-events.v1
  and in the store with who did it, a shelved alarm not delivered to the webhook until its shelf expires,
  bad commands refused with the reason (HTTP, or a REJECTED event for a raw one), the worker unharmed;
- in chromium (as the dashboard's own tests): an operator acknowledges and shelves on the page, and
  the state on Kafka says so.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from confluent_kafka import OFFSET_BEGINNING, DeserializingConsumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

import schemas
from plantstream.core import kafka_clients, runstats, topics
from plantstream.core.config import Settings
from plantstream.core.metrics import metrics_port
from plantstream.core.records import alarm_command, reading_frame, sample
from sinks.dashboard import users
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_metrics_base, free_port, plant_raw, write_config
from tests.helpers import consume_until, decoder, prepare_topics, produce, stop, wait_for
from tests.integration.test_sink_metrics import scrape, type_of, value
from tests.servers import HttpReceiver
from tests.system import require

pytestmark = pytest.mark.integration

US = 1_000_000
PRESS = "demo.springfield.stamping.line1.press1"
CNC = "demo.springfield.machining.line2.cnc1"
PUMP = "demo.springfield.utilities.water.pump1"
TOKEN = "it-" + uuid.uuid4().hex
PASSWORDS = {"ann": "ann-pass-" + uuid.uuid4().hex[:8], "vic": "vic-pass-" + uuid.uuid4().hex[:8]}
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
RULES = [
    {"name": "press-oil-hot", "asset": PRESS, "kind": "threshold", "tag": "oil_temperature", "above": 75.0,
     "hysteresis": 2.0, "severity": "CRITICAL"},
    {"name": "cnc-vibration", "asset": CNC, "kind": "threshold", "tag": "vibration_rms", "above": 6.0,
     "severity": "WARNING", "latched": True},
]  # fmt: skip


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PLANTSTREAM_") and k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")
    }


@dataclass
class Plant:
    settings: Settings
    stack: Stack
    base: str
    hooks: HttpReceiver
    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]]
    config: Path

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15, **kw)

    @contextmanager
    def login(self, name: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.base, timeout=30) as c:
            r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
            assert r.status_code == 200, r.text
            yield c

    def alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} exited: {(self.tmp / f'{name}.log').read_text()[-3000:]}"


def live_frame(asset: str, t: int, seq: int, **values: Any) -> dict[str, Any]:
    units = {"oil_temperature": "degC", "vibration_rms": "mm/s", "flow": "m3/h"}
    return dict(
        reading_frame(
            asset=asset,
            device=asset.rsplit(".", 1)[-1],
            seq=seq,
            producer_id="it",
            scan_time=t,
            samples=[sample(k, t, v, unit=units.get(k, "")) for k, v in values.items()],
        )
    )


def send_frames(settings: Settings, frames: list[dict[str, Any]]) -> None:
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in frames])


def us(v: Any) -> Any:
    """AvroDeserializer gives timestamp-micros as datetimes: back to integer µs, everywhere in a record."""
    if isinstance(v, datetime):
        return (v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    if isinstance(v, dict):
        return {k: us(x) for k, x in v.items()}
    if isinstance(v, list):
        return [us(x) for x in v]
    return v


def read_compacted(plant: Plant, base: str) -> dict[str, dict[str, Any]]:
    """What an IT system does: the compacted topic from its beginning to its end, newest record per key,
    with only confluent_kafka (DeserializingConsumer, AvroDeserializer, the registry)."""
    topic = plant.settings.topic(base)
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": plant.stack.bootstrap,
            "group.id": f"it-twin-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": plant.stack.registry_url})),
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        latest: dict[str, dict[str, Any]] = {}
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            latest[msg.key()] = us(msg.value())
            if msg.offset() + 1 >= ends[msg.partition()]:
                left.discard(msg.partition())
        assert not left, f"{topic}: partitions {left} not read to their end"
        return latest
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def plant(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    tmp = tmp_path_factory.mktemp("plant-model")
    hooks = HttpReceiver()
    port = free_port()
    raw = plant_raw(
        tmp,
        stack,
        windows={"kpi_window_s": 5, "grace_s": 1, "idle_after_s": 2, "silence_after_min_s": 2,
                 "silence_after_intervals": 2},
        dashboard={"port": port, "token": TOKEN, "users_file": "users.yaml"},
        alerts=RULES,
        alerting={"channels": [{"kind": "webhook", "name": "ops", "url": hooks.url("ops")}]},
        alarms={"command_timeout_s": 20},
        metrics={"base_port": free_metrics_base()},  # the workers' /metrics: the ISA-18.2 alarm figures
    )  # fmt: skip
    settings = Settings(**raw)
    config = write_config(tmp, raw)
    for name, role in (("ann", "operator"), ("vic", "viewer")):
        users.upsert(Path(settings.pipeline.state_dir) / "users.yaml", name, role, PASSWORDS[name])
    prepare_topics(settings)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, args in (
        # two workers in one group: each asset's commands must reach the one that owns its readings
        ("worker", ["process"]),
        ("worker-2", ["process", "--instance", "2"]),
        ("dashboard", ["dashboard"]),
        ("alerts", ["sink", "alerts"]),
        ("storage", ["sink", "storage"]),
    ):
        with open(tmp / f"{name}.log", "ab") as out:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "plantstream", "--config", str(config), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env(),
                start_new_session=True,
            )
    p = Plant(settings, stack, f"http://127.0.0.1:{port}", hooks, tmp, procs, config)
    try:
        # the worker announces every configured asset once it owns the partitions: the whole plant
        def announced() -> bool:
            p.alive()
            try:
                return len(p.get("/api/v1/assets").json()["assets"]) == len(settings.plant.assets)
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_for(announced, 90, 0.5, "every asset announced on plant.state.v1")
        wait_for(lambda: len(members(settings)) == 2 and all(r for r, _ in members(settings)), 60, 0.5, "two workers")
        for readings, commands in members(settings):
            assert readings == commands, "a worker must hold the same partitions of the readings and the commands"
        yield p
    finally:
        for proc in procs.values():
            stop(proc, 20)
        hooks.close()
        text = "".join((tmp / f"{n}.log").read_text(errors="replace") for n in procs)
        assert TOKEN not in text and not any(pw in text for pw in PASSWORDS.values())


def members(settings: Settings) -> list[tuple[set[int], set[int]]]:
    """Each member of the worker group, as the broker reports it: (readings partitions, commands partitions)."""
    admin = AdminClient(kafka_clients.admin_config(settings))
    group = f"{settings.pipeline.group_id}-processor"
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return []
    out = []
    for m in desc.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        out.append(
            (
                {tp.partition for tp in tps if tp.topic == settings.topic(topics.READINGS)},
                {tp.partition for tp in tps if tp.topic == settings.topic(topics.ALARM_COMMANDS)},
            )
        )
    return out


def stream_frames(settings: Settings, stop_event: threading.Event, vibration: float = 2.0) -> threading.Thread:
    """Live frames of the press, the CNC and the pump, 2 a second, until `stop_event`."""

    def run() -> None:
        seq = 0
        while not stop_event.is_set():
            t = time.time_ns() // 1000
            send_frames(
                settings,
                [
                    live_frame(PRESS, t, seq, oil_temperature=55.0 + seq % 3, state=1, strokes_total=1000 + seq),
                    live_frame(CNC, t, seq, vibration_rms=vibration, state=1, parts_total=seq, parts_good=seq),
                    live_frame(PUMP, t, seq, flow=100.0 + seq % 5, running=True),
                ],
            )
            seq += 1
            stop_event.wait(0.5)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_it_system_reads_the_whole_plant_from_the_compacted_state_topic_as_the_api_serves_it(plant: Plant) -> None:
    s = plant.settings
    halt = threading.Event()
    th = stream_frames(s, halt)
    try:

        def online() -> bool:
            rows = {r["asset"]: r for r in plant.get("/api/v1/assets").json()["assets"]}
            return all(rows[a]["online"] for a in (PRESS, CNC, PUMP)) and rows[PRESS]["shift_oee"] is not None

        wait_for(online, 60, 0.5, "the three assets online on plant.state.v1, the shift's OEE so far")
        press = plant.get(f"/api/v1/assets/{PRESS}").json()["asset"]
        assert press["machine_state"]["state"] == "RUNNING" and press["shift_oee"] is not None
        assert {t["tag"] for t in press["tags"]} == {"oil_temperature", "state", "strokes_total"}
        assert press["kpi_window"] is not None and press["expected_interval_s"] == 1.0
    finally:
        halt.set()
        th.join()
    # the data stops: beyond the allowed silence (2 intervals of 1 s, at least 2 s) the assets are offline
    wait_for(
        lambda: all(
            r["offline_reason"] == "silence"
            for r in plant.get("/api/v1/assets").json()["assets"]
            if r["asset"] in (PRESS, CNC, PUMP)
        ),
        30,
        0.5,
        "the three assets offline: silence",
    )
    # the silence also ends the held machine state (no data: state unknown); then wait until nothing changes
    wait_for(
        lambda: plant.get(f"/api/v1/assets/{PRESS}").json()["asset"]["machine_state"] is None,
        30,
        0.5,
        "the press's machine state unknown after the silence",
    )
    last: list[Any] = [None]

    def resting() -> bool:
        now = plant.get("/api/v1/assets").json()["assets"]
        same, last[0] = now == last[0], now
        return same

    wait_for(resting, 30, 2.5, "the plant's state at rest")
    it = read_compacted(plant, topics.STATE)
    api = {r["asset"]: r for r in plant.get("/api/v1/assets").json()["assets"]}
    assert set(it) == set(api) == {a.path for a in s.plant.assets}  # the whole plant, in one pass
    for asset, rec in it.items():
        assert rec == api[asset], asset
    assert it[PRESS]["offline_since"] == it[PRESS]["last_report"] + 2 * US
    assert it[PRESS]["machine_state"] is None  # beyond the allowed silence the state is not known
    assert it["demo.springfield.packaging.line3.packer1"]["offline_reason"] == "no_data"  # never reported
    # the API answers fit the OpenAPI document it serves
    doc = plant.get("/api/v1/openapi.json").json()
    for path, body in (("/api/v1/assets", plant.get("/api/v1/assets").json()),
                       (f"/api/v1/assets/{PRESS}", plant.get(f"/api/v1/assets/{PRESS}").json()),
                       ("/api/v1/alarms", plant.get("/api/v1/alarms").json())):  # fmt: skip
        schema = doc["paths"][path.replace(PRESS, "{path}")]["get"]["responses"]["200"]["content"]
        jsonschema.validate(body, {**schema["application/json"]["schema"], "components": doc["components"]})
    assert plant.get("/api/v1/assets/demo.nowhere.x.y.z").status_code == 404
    # the asset tree's status comes from the same topic: offline, and why
    tree = plant.get("/api/state").json()["status"]
    assert (tree[PRESS]["online"], tree[PRESS]["reason"]) == (False, "silence")
    # `plantstream tail plant.state.v1 --latest`: the plant, one line per asset, as the topic holds it
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(plant.config), "tail", "plant.state.v1", "--latest"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [ln["key"] for ln in lines] == sorted(it), out.stderr[-2000:]
    assert all(ln["value"]["asset"] == ln["key"] for ln in lines)


def alarm(plant: Plant, asset: str, rule: str) -> dict[str, Any]:
    """The alarm's state as the read API serves it (from plant.alarm-state.v1)."""
    (found,) = [a for a in plant.get(f"/api/v1/assets/{asset}").json()["alarms"] if a["rule"] == rule]
    return dict(found)


def alarm_on_kafka(plant: Plant, asset: str, rule: str) -> dict[str, Any]:
    return read_compacted(plant, topics.ALARM_STATE)[f"{asset}/{rule}"]


def hot_oil(plant: Plant, temperature: float, seconds: int = 3) -> None:
    now = time.time_ns() // 1000
    base = int(now / US) * US
    send_frames(
        plant.settings,
        [
            live_frame(PRESS, base - (seconds - i) * US + 1, 1000 + i, oil_temperature=temperature, state=1)
            for i in range(seconds)
        ],
    )


def events(plant: Plant) -> list[dict[str, Any]]:
    dec = decoder(plant.settings, schemas.ALARM_EVENT)
    msgs = consume_until(
        plant.settings, plant.settings.topic(topics.ALARM_EVENTS), lambda _: False, timeout=1, linger=0.5
    )
    return [dec.decode(m.value()) for m in msgs]


def test_alarm_lifecycle_commands_refusals_and_annunciation(plant: Plant) -> None:
    s = plant.settings
    hot_oil(plant, 90.0)
    wait_for(lambda: alarm(plant, PRESS, "press-oil-hot")["state"] == "UNACK", 60, 0.3, "the alarm UNACK")
    first = alarm(plant, PRESS, "press-oil-hot")["alert_id"]
    wait_for(
        lambda: any(json.loads(r.body)["alert_id"] == first for r in plant.hooks.accepted), 60, 0.3, "RAISED delivered"
    )

    with plant.login("vic") as vic:  # a viewer may not act
        r = vic.post("/api/v1/alarm-commands", json={"asset": PRESS, "rule": "press-oil-hot", "action": "ACKNOWLEDGE"})
        assert r.status_code == 403 and "vic (viewer) may not ACKNOWLEDGE" in r.json()["error"]
    with plant.login("ann") as ann:
        bad = ann.post("/api/v1/alarm-commands", json={"asset": PRESS, "rule": "press-oil-hot", "action": "SHELVE"})
        assert bad.status_code == 400 and "duration_s is required" in bad.json()["error"]
        stale = ann.post(
            "/api/v1/alarm-commands",
            json={"asset": PRESS, "rule": "press-oil-hot", "action": "ACKNOWLEDGE", "alert_id": "not-the-current-one"},
        )
        assert stale.status_code == 409 and stale.json()["error"].startswith(
            "out of date: incident not-the-current-one"
        )
        unknown = ann.post(
            "/api/v1/alarm-commands", json={"asset": PRESS, "rule": "no-such-rule", "action": "ACKNOWLEDGE"}
        )
        assert unknown.status_code == 409 and "no alarm 'no-such-rule'" in unknown.json()["error"]
        nowhere = ann.post(
            "/api/v1/alarm-commands", json={"asset": "demo.nowhere.x.y.z", "rule": "hot", "action": "ACKNOWLEDGE"}
        )
        assert nowhere.status_code == 404 and nowhere.json()["error"].startswith("unknown asset 'demo.nowhere.x.y.z'")
        ok = ann.post(
            "/api/v1/alarm-commands",
            json={"asset": PRESS, "rule": "press-oil-hot", "action": "ACKNOWLEDGE", "alert_id": first,
                  "comment": "checking the cooler", "user": "someone else"},
        )  # fmt: skip
        assert ok.status_code == 200, ok.text
        assert (ok.json()["event"]["event"], ok.json()["state"]) == ("ACKNOWLEDGED", "ACKED")
        kafka = alarm_on_kafka(plant, PRESS, "press-oil-hot")
        assert (kafka["state"], kafka["acked_by"], kafka["ack_comment"]) == ("ACKED", "ann", "checking the cooler")
        again = ann.post(
            "/api/v1/alarm-commands", json={"asset": PRESS, "rule": "press-oil-hot", "action": "ACKNOWLEDGE"}
        )
        assert (
            again.status_code == 409
            and again.json()["error"] == "nothing to acknowledge: the alarm is ACKED, acknowledged by ann"
        )

        # shelved for 12 s: the next incident is not delivered; when the shelf expires while it is active, it is
        shelve = ann.post(
            "/api/v1/alarm-commands",
            json={"asset": PRESS, "rule": "press-oil-hot", "action": "SHELVE", "duration_s": 12,
                  "comment": "sensor swap"},
        )  # fmt: skip
        assert shelve.status_code == 200 and shelve.json()["state"] == "SHELVED", shelve.text
        until = alarm_on_kafka(plant, PRESS, "press-oil-hot")["shelved_until"]
        hot_oil(plant, 60.0)  # clears
        wait_for(lambda: not alarm(plant, PRESS, "press-oil-hot")["active"], 30, 0.3, "the alarm cleared")
        hot_oil(plant, 95.0)  # a new incident, while shelved
        wait_for(lambda: alarm(plant, PRESS, "press-oil-hot")["active"], 30, 0.3, "a new incident")
        second = alarm(plant, PRESS, "press-oil-hot")["alert_id"]
        assert second != first and alarm(plant, PRESS, "press-oil-hot")["state"] == "SHELVED"
        time.sleep(3)  # room for the alert sink to (wrongly) deliver it
        assert time.time_ns() // 1000 < until, "the shelf expired before the check: lengthen it"
        assert not any(json.loads(r.body)["alert_id"] == second for r in plant.hooks.accepted)
        # nobody unshelves: at expiry the worker's clock brings the alarm back, unacknowledged, and delivers it
        wait_for(
            lambda: any(json.loads(r.body)["alert_id"] == second for r in plant.hooks.accepted),
            60,
            0.3,
            "the incident delivered once the shelf expired",
        )
        assert min(r.at for r in plant.hooks.accepted if json.loads(r.body)["alert_id"] == second) * US >= until
        assert alarm_on_kafka(plant, PRESS, "press-oil-hot")["state"] == "UNACK"
        # out of service needs an admin: refused for an operator, by the dashboard before it reaches Kafka
        oos = ann.post(
            "/api/v1/alarm-commands", json={"asset": PRESS, "rule": "press-oil-hot", "action": "REMOVE_FROM_SERVICE"}
        )
        assert oos.status_code == 403

    # a raw command from another sender: refused by the worker with a REJECTED event naming why
    codec = kafka_clients.registry(s).codec(topics.subject(s, topics.ALARM_COMMANDS), schemas.ALARM_COMMAND)
    cid = uuid.uuid4().hex
    raw_cmd = alarm_command(
        command_id=cid, asset=PRESS, rule="press-oil-hot", action="SHELVE", user="mes", role="operator",
        time=time.time_ns() // 1000,
    )  # fmt: skip
    nowhere_cmd = {**raw_cmd, "command_id": uuid.uuid4().hex, "asset": "demo.nowhere.x.y.z", "action": "ACKNOWLEDGE"}
    produce(
        s,
        s.topic(topics.ALARM_COMMANDS),
        [
            (PRESS.encode(), codec.encode(raw_cmd)),
            (PRESS.encode(), b"\x00garbage"),
            (b"demo.nowhere.x.y.z", codec.encode(nowhere_cmd)),
        ],
    )
    ids = {cid, nowhere_cmd["command_id"]}
    wait_for(lambda: ids <= {e["command_id"] for e in events(plant)}, 30, 0.5, "the REJECTED events")
    rejected = {e["command_id"]: e for e in events(plant) if e["command_id"] in ids}
    assert (rejected[cid]["event"], rejected[cid]["reason"]) == (
        "REJECTED",
        "SHELVE needs shelve_duration_s: how long, in seconds (> 0)",
    )
    nowhere_rej = rejected[nowhere_cmd["command_id"]]
    assert nowhere_rej["event"] == "REJECTED" and nowhere_rej["reason"].startswith("unknown asset")
    plant.alive()  # nothing a sender writes stops the worker

    # the audit trail, stored by the storage sink, with who did what
    db = sqlite_path(s)

    def stored() -> list[tuple[str, str, str]]:
        with sqlite3.connect(db) as c:
            return c.execute(
                "SELECT event, user, to_state FROM alarm_events WHERE alarm = ? ORDER BY time",
                (f"{PRESS}/press-oil-hot",),
            ).fetchall()

    wait_for(lambda: ("SHELF_EXPIRED", "", "UNACK") in stored(), 30, 0.5, "the alarm events stored")
    trail = stored()
    for step in (("ACTIVATED", "", "UNACK"), ("ACKNOWLEDGED", "ann", "ACKED"), ("SHELVED", "ann", "SHELVED")):
        assert step in trail, trail
    # the ISA-18.2 figures: on the API and in the worker's metrics
    figures = plant.get("/api/v1/alarms").json()["figures"]
    assert figures["per_10min"] >= 2 and figures["standing"] >= 1
    assert figures["most_frequent"][0]["alarm"] == f"{PRESS}/press-oil-hot"
    runs = runstats.read_all(s.pipeline.state_dir)
    counts: dict[str, int] = {}
    for name in ("processor", "processor-2"):  # one figure per worker, for the assets it owns: summed
        for k, v in runs[name]["counts"].items():
            counts[k] = counts.get(k, 0) + v
    assert counts["alarms_per_10min"] >= 2 and counts["commands_rejected"] >= 1 and counts["commands_applied"] >= 2
    # and on each worker's /metrics, as Prometheus scrapes them
    bodies = [scrape(port) for port in (metrics_port(s, "processor"), metrics_port(s, "processor-2")) if port]
    assert len(bodies) == 2 and all(bodies), "both workers serve /metrics"
    assert all(type_of(b, "plantstream_alarms_per_10min") == "gauge" for b in bodies)
    assert sum(value(b, "plantstream_alarms_per_10min") or 0 for b in bodies) >= 2
    assert sum(value(b, "plantstream_alarms_standing") or 0 for b in bodies) >= 1
    activations = [value(b, "plantstream_alarm_activations_24h", alarm=f"{PRESS}/press-oil-hot") for b in bodies]
    assert sum(a or 0 for a in activations) >= 1, activations


def test_browser_operator_acknowledges_and_shelves_and_kafka_says_so(plant: Plant) -> None:
    require("chromium")
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    s = plant.settings
    # the CNC's latched vibration alarm: raised, then back below the limit (latched: still to acknowledge)
    now = int(time.time_ns() // 1000 / US) * US
    send_frames(s, [live_frame(CNC, now - 2 * US, 5000, vibration_rms=9.0, state=1),
                    live_frame(CNC, now - US, 5001, vibration_rms=2.0, state=1)])  # fmt: skip
    wait_for(lambda: alarm(plant, CNC, "cnc-vibration")["state"] == "LATCHED", 60, 0.3, "the latched alarm")
    aid = alarm(plant, CNC, "cnc-vibration")["alert_id"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 1100}).new_page()
            page.set_default_timeout(30_000)
            page.goto(plant.base + "/login")
            page.fill("#name", "ann")
            page.fill("#password", PASSWORDS["ann"])
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-live='1']")
            # returned to normal, latched: still listed until acknowledged; the acknowledgement resets it
            row = f"tr.alert[data-alert-id='{aid}']"
            page.wait_for_selector(f"{row}[data-alarm-state='LATCHED'] button.ack")
            assert "latched" in page.inner_text(row)
            page.screenshot(path=str(ARTIFACTS / "alarm-latched.png"), full_page=True)
            page.click(f"{row} button.ack")
            page.wait_for_selector(row, state="detached")
            kafka = alarm_on_kafka(plant, CNC, "cnc-vibration")
            assert (kafka["state"], kafka["acked_by"], kafka["alert_id"]) == ("NORMAL", "ann", aid)
            # a new incident, active: acknowledged, then shelved for 1 h, then unshelved, from the page
            now = int(time.time_ns() // 1000 / US) * US
            send_frames(s, [live_frame(CNC, now, 5002, vibration_rms=8.0, state=1)])
            wait_for(lambda: alarm(plant, CNC, "cnc-vibration")["alert_id"] != aid, 60, 0.3, "the next incident")
            aid2 = alarm(plant, CNC, "cnc-vibration")["alert_id"]
            row = f"tr.alert[data-alert-id='{aid2}']"
            page.wait_for_selector(f"{row}[data-alarm-state='UNACK'] button.ack")
            page.click(f"{row} button.ack")
            page.wait_for_selector(f"{row}.acked")
            assert "acknowledged by ann" in page.inner_text(row)
            kafka = alarm_on_kafka(plant, CNC, "cnc-vibration")
            assert (kafka["state"], kafka["acked_by"], kafka["alert_id"]) == ("ACKED", "ann", aid2)
            page.select_option(f"{row} select.shelve-for", "3600")
            clicked = time.time_ns() // 1000
            page.click(f"{row} button.shelve")
            page.wait_for_selector(f"{row}[data-alarm-state='SHELVED']")
            assert "shelved by ann until" in page.inner_text(row)
            kafka = alarm_on_kafka(plant, CNC, "cnc-vibration")
            assert (kafka["state"], kafka["shelved_by"]) == ("SHELVED", "ann")
            assert abs(kafka["shelved_until"] - (clicked + 3600 * US)) < 10 * US
            page.screenshot(path=str(ARTIFACTS / "alarm-shelved.png"), full_page=True)
            page.click(f"{row} button.unshelve")
            page.wait_for_selector(f"{row}[data-alarm-state='ACKED']")
            assert alarm_on_kafka(plant, CNC, "cnc-vibration")["state"] == "ACKED"
            # the ISA-18.2 figures on the page, from the alarm states on Kafka
            figure = "#alarm-figures tr[data-figure='alarms, last 10 min'] td.num"
            page.wait_for_function(f'Number(document.querySelector("{figure}").textContent) >= 2')
            for name in ("standing (active now)", "chattering", "stale (active > 24 h)"):
                assert page.locator(f"#alarm-figures tr[data-figure='{name}'] td.num").count() == 1, name
            page.wait_for_function('document.querySelector("#alarm-figures").innerText.includes("cnc1/cnc-vibration")')
        finally:
            browser.close()
