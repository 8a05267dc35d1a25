"""The OPC UA producer against the OPC UA simulator over real loopback sockets (asyncua on both sides).

Kafka is needed only by the last test (frames through Publisher into a real broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

import schemas
from plantstream.core import topics
from plantstream.core.config import OpcUaDevice, OpcUaTag, Settings
from plantstream.core.runstats import RunStats
from plantstream.simulators.opcua import OpcUaSimulator
from producers.publisher import Publisher
from producers.readers.base import now_us
from producers.readers.opcua import CLIENT_APP_URI, browse_tags, browse_yaml, ensure_certificate, run_opcua_producer
from tests.conftest import Stack, free_port, plant_raw
from tests.helpers import consume_all, decoder, frame_codec, prepare_topics

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(30)]

ASSET = "demo.springfield.stamping.line1.press1"
TYPED: dict[str, bool | int | float | str] = {
    "bool": True,
    "int16": -1234,
    "uint16": 65000,
    "int32": -100_000,
    "uint32": 4_000_000_000,
    "int64": -(2**40),
    "uint64": 2**40 + 7,
    "float32": 1.5,
    "float64": 3.14159,
    "string": "hello plant",
}


# --- helpers ---------------------------------------------------------------------------------------


def tag(name: str, type_: str = "float64", **kw: Any) -> dict[str, Any]:
    return {"name": name, "node_id": f"ns=2;s=press1.{name}", "type": type_, **kw}


def settings_for(
    tmp_path: Path,
    tags: list[dict[str, Any]],
    server: dict[str, Any] | None = None,
    stack: Stack | None = None,
    **device: Any,
) -> Settings:
    raw = plant_raw(tmp_path, stack, simulator={"update_interval_s": 0.1})
    port = device.pop("port", None) or free_port()
    raw["devices"] = [
        {
            "name": "press1-opcua",
            "protocol": "opcua",
            "asset": ASSET,
            "endpoint": f"opc.tcp://127.0.0.1:{port}/plant",
            "publishing_interval_ms": 100,
            "sampling_interval_ms": 0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "timeout_s": 2.0,
            "tags": tags,
            **device,
        }
    ]
    raw["pipeline"]["opcua_server"] = server or {}
    return Settings(**raw)


@contextlib.asynccontextmanager
async def producing(settings: Settings) -> AsyncIterator[list[dict[str, Any]]]:
    frames: list[dict[str, Any]] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_opcua_producer(settings, frames.append, stop))
    try:
        yield frames
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def samples(frames: list[dict[str, Any]], name: str | None = None) -> list[dict[str, Any]]:
    return [s for f in frames for s in f["samples"] if name is None or s["tag"] == name]


def last_good(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return {s["tag"]: s["value"] for s in samples(frames) if s["quality"] == "GOOD"}


# --- values and modes ------------------------------------------------------------------------------


async def test_values_read_equal_values_served_for_every_type(tmp_path: Path) -> None:
    s = settings_for(tmp_path, [tag(t, t) for t in TYPED])
    async with OpcUaSimulator(s) as sim:
        sim.pause()
        for name, value in TYPED.items():
            await sim.set_value("press1-opcua", name, value)
        async with producing(s) as frames:
            await until(lambda: len(last_good(frames)) == len(TYPED), 5, "a value of every tag")
    got = last_good(frames)
    for name, value in TYPED.items():
        assert got[name] == pytest.approx(value) and type(got[name]) is type(value), name
    assert all(f["asset"] == ASSET and f["device"] == "press1-opcua" for f in frames)


async def test_subscription_batches_the_changes_of_a_publish_cycle_into_one_frame(tmp_path: Path) -> None:
    names = [f"temp{i}" for i in range(6)]
    s = settings_for(tmp_path, [tag(n, unit="degC") for n in names], publishing_interval_ms=300)
    async with OpcUaSimulator(s), producing(s) as frames:
        await asyncio.sleep(2.0)
    changes = samples(frames)
    # the server changes 6 tags every 0.1 s: ~120 changes in 2 s, in ~7 publish cycles
    assert len(changes) >= 60
    assert len(frames) <= 2.0 / 0.3 + 3, f"{len(frames)} frames for {len(changes)} changes: not batched"
    assert max(len(f["samples"]) for f in frames) >= 12  # several changes of several tags per frame
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert all(s["unit"] == "degC" and s["quality"] == "GOOD" for s in changes)
    # source timestamps come from the server, before the frame was made
    assert all(s["source_time"] <= f["scan_time"] for f in frames for s in f["samples"])


async def test_deadband_suppresses_small_changes(tmp_path: Path) -> None:
    s = settings_for(tmp_path, [tag("filtered", deadband_abs=1.0), tag("raw")])
    async with OpcUaSimulator(s) as sim:
        sim.pause()
        for name in ("filtered", "raw"):
            await sim.set_value("press1-opcua", name, 10.0)
        async with producing(s) as frames:
            await until(lambda: len(samples(frames)) >= 2, 5, "the initial values")
            for v in (10.3, 10.6, 10.9, 12.5):
                for name in ("filtered", "raw"):
                    await sim.set_value("press1-opcua", name, v)
                await asyncio.sleep(0.25)
            await until(lambda: 12.5 in [x["value"] for x in samples(frames, "filtered")], 5, "the big change")
    assert [x["value"] for x in samples(frames, "raw")] == [10.0, 10.3, 10.6, 10.9, 12.5]
    assert [x["value"] for x in samples(frames, "filtered")] == [10.0, 12.5]


async def test_polling_mode_reads_all_tags_in_one_call_and_skips_unchanged_values(tmp_path: Path) -> None:
    s = settings_for(tmp_path, [tag("a"), tag("b", "int32")], mode="polling", publishing_interval_ms=100)
    async with OpcUaSimulator(s) as sim:
        sim.pause()
        await sim.set_value("press1-opcua", "a", 1.25)
        await sim.set_value("press1-opcua", "b", 7)
        async with producing(s) as frames:
            await until(lambda: last_good(frames) == {"a": 1.25, "b": 7}, 5, "the first poll")
            await asyncio.sleep(0.5)  # ~5 more polls of unchanged values
            assert len(samples(frames)) == 2, "an unchanged value was sent again"
            await sim.set_value("press1-opcua", "b", 8)
            await until(lambda: last_good(frames).get("b") == 8, 5, "the changed value")
    assert [x["value"] for x in samples(frames, "a")] == [1.25]


async def test_server_restart_resumes_without_duplicates(tmp_path: Path) -> None:
    s = settings_for(tmp_path, [tag("temp"), tag("count", "uint32", role="counter_total")])
    sim = OpcUaSimulator(s)
    await sim.start()
    try:
        async with producing(s) as frames:
            await until(lambda: len(samples(frames, "temp")) >= 5, 5, "values before the restart")
            await sim.close()
            await until(lambda: any(x["quality"] == "BAD" for x in samples(frames)), 8, "the gap marked BAD")
            restarted = now_us()
            sim = OpcUaSimulator(s)
            await sim.start()
            t0 = time.monotonic()
            await until(
                lambda: any(x["source_time"] > restarted and x["quality"] == "GOOD" for x in samples(frames, "temp")),
                10,
                "values after the restart",
            )
            resumed_in = time.monotonic() - t0
            await asyncio.sleep(0.5)
    finally:
        await sim.close()
    assert resumed_in < 5
    good = [(x["tag"], x["source_time"]) for x in samples(frames) if x["quality"] == "GOOD"]
    assert len(good) == len(set(good)), "a (tag, source_time) was sent twice"
    gap = [f for f in frames if all(x["quality"] == "BAD" for x in f["samples"])]
    assert gap and {x["tag"] for x in gap[0]["samples"]} == {"temp", "count"}


# --- security --------------------------------------------------------------------------------------


async def _client_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "pki" / "client-cert.der", tmp_path / "pki" / "client-key.pem"
    await ensure_certificate(key, cert, CLIENT_APP_URI, [ExtendedKeyUsageOID.CLIENT_AUTH], "plantstream-test")
    return cert, key


@pytest.mark.parametrize(("policy", "mode"), [("Basic256Sha256", "SignAndEncrypt"), ("Aes256_Sha256_RsaPss", "Sign")])
async def test_secure_session_with_certificates_trust_lists_and_password(
    tmp_path: Path, policy: str, mode: str
) -> None:
    cert, key = await _client_cert(tmp_path)
    client_trust, server_trust = tmp_path / "trusted-clients", tmp_path / "trusted-servers"
    client_trust.mkdir()
    server_trust.mkdir()
    shutil.copy(cert, client_trust / cert.name)
    server = {
        "security_policies": [policy],  # no None endpoint: plain connections are refused
        "users": {"operator": "s3cret"},
        "trust_dir": str(client_trust),
    }
    s = settings_for(
        tmp_path,
        [tag("temp")],
        server,
        security_policy=policy,
        security_mode=mode,
        client_cert=str(cert),
        client_key=str(key),
        server_trust_dir=str(server_trust),
        username="operator",
        password="s3cret",
    )
    async with OpcUaSimulator(s) as sim:
        shutil.copy(sim.cert_path, server_trust / "server.der")
        async with producing(s) as frames:
            await until(lambda: len(samples(frames, "temp")) >= 3, 10, "values over the secure channel")
    assert all(x["quality"] == "GOOD" for x in samples(frames, "temp"))


async def test_wrong_password_fails_with_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = settings_for(tmp_path, [tag("temp")], {"users": {"operator": "s3cret"}}, username="operator", password="nope")
    caplog.set_level(logging.WARNING, logger="plantstream.producers.readers.opcua")
    async with OpcUaSimulator(s), producing(s) as frames:
        await until(lambda: "wrong username or password" in caplog.text, 8, "the password error")
    assert "press1-opcua" in caplog.text and "'operator'" in caplog.text and "nope" not in caplog.text
    assert samples(frames) and all(x["quality"] == "BAD" and x["value"] is None for x in samples(frames))


async def test_untrusted_client_certificate_fails_with_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = await _client_cert(tmp_path)
    (tmp_path / "empty-trust").mkdir()
    server = {"security_policies": ["Basic256Sha256"], "trust_dir": str(tmp_path / "empty-trust")}
    s = settings_for(
        tmp_path,
        [tag("temp")],
        server,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        client_cert=str(cert),
        client_key=str(key),
    )
    caplog.set_level(logging.WARNING, logger="plantstream.producers.readers.opcua")
    async with OpcUaSimulator(s), producing(s) as frames:
        await until(lambda: "rejected the client certificate" in caplog.text, 10, "the certificate error")
    assert str(cert) in caplog.text and "trust list" in caplog.text
    assert not [x for x in samples(frames) if x["quality"] == "GOOD"]


async def test_untrusted_server_certificate_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "no-servers").mkdir()
    s = settings_for(
        tmp_path,
        [tag("temp")],
        security_policy="Basic256Sha256",
        security_mode="Sign",
        server_trust_dir=str(tmp_path / "no-servers"),
    )
    caplog.set_level(logging.WARNING, logger="plantstream.producers.readers.opcua")
    async with OpcUaSimulator(s), producing(s):
        await until(lambda: "server_trust_dir" in caplog.text, 8, "the server certificate error")
    assert "press1-opcua" in caplog.text


# --- errors per tag, discovery ---------------------------------------------------------------------


async def test_unknown_node_id_marks_that_tag_bad_while_others_flow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings_for(tmp_path, [tag("temp"), tag("pressure")])
    device = s.devices[0]
    assert isinstance(device, OpcUaDevice)
    served = device.model_copy(update={"tags": device.tags[:1]})  # the server lacks `pressure`
    caplog.set_level(logging.WARNING, logger="plantstream.producers.readers.opcua")
    async with OpcUaSimulator(s, devices=[served]), producing(s) as frames:
        await until(lambda: len(samples(frames, "temp")) >= 5, 5, "values of the known tag")
    bad = samples(frames, "pressure")
    assert len(bad) == 1 and bad[0]["quality"] == "BAD" and bad[0]["value"] is None
    assert "'pressure'" in caplog.text and "BadNodeIdUnknown" in caplog.text and "ns=2;s=press1.pressure" in caplog.text
    assert caplog.text.count("BadNodeIdUnknown") == 1  # logged once, not per publish


async def test_browse_output_loads_as_config_tags(tmp_path: Path) -> None:
    configured = [
        tag("oil_temperature", unit="degC"),
        tag("strokes", "uint32", role="counter_total"),
        tag("on", "bool"),
    ]
    s = settings_for(tmp_path, configured)
    async with OpcUaSimulator(s) as sim:
        text = browse_yaml(await browse_tags(sim.endpoints[0]))
    assert "Objects/demo/springfield/stamping/line1/press1/oil_temperature" in text
    tags = [OpcUaTag(**t) for t in yaml.safe_load(text)["tags"]]
    got = {(t.name, t.node_id, t.type.value if t.type else None, t.unit) for t in tags}
    assert got == {
        ("oil_temperature", "ns=2;s=press1.oil_temperature", "float64", "degC"),
        ("strokes", "ns=2;s=press1.strokes", "uint32", ""),
        ("on", "ns=2;s=press1.on", "bool", ""),
    }


# --- into Kafka ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_frames_reach_kafka_as_avro_reading_frames(tmp_path: Path, stack: Stack) -> None:
    s = settings_for(tmp_path, [tag(t, t) for t in TYPED], stack=stack)
    prepare_topics(s)
    stats = RunStats("producer-opcua", s.pipeline.state_dir)
    sink = Publisher(s, frame_codec(s), stats)
    sent: list[dict[str, Any]] = []

    def emit(frame: dict[str, Any]) -> None:
        sent.append(frame)
        sink.emit(frame)

    async with OpcUaSimulator(s) as sim:
        sim.pause()
        for name, value in TYPED.items():
            await sim.set_value("press1-opcua", name, value)
        stop = asyncio.Event()
        task = asyncio.create_task(run_opcua_producer(s, emit, stop, stats))
        await until(lambda: len(last_good(sent)) == len(TYPED), 10, "a value of every tag")
        stop.set()
        await task
    assert await asyncio.to_thread(sink.close, 30) == 0
    dec = decoder(s, schemas.READING_FRAME)
    msgs = await asyncio.to_thread(consume_all, s, s.topic(topics.READINGS), len(sent), 30)
    assert {m.key() for m in msgs} == {ASSET.encode()}
    got = [dec.decode(m.value()) for m in msgs]
    assert last_good(got) == pytest.approx(TYPED)
    assert sorted(f["seq"] for f in got) == [f["seq"] for f in sent]
