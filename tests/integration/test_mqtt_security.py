"""The MQTT reader against a mosquitto that requires TLS, a client certificate and a password: a wrong
password is refused, logged once with the fix, and retried without crashing; the right credentials read
data. No Kafka: frames go to a list."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.stack.mosquitto import Mosquitto
from producers.readers.mqtt import run_mqtt_producer
from tests.conftest import free_port

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(60)]

ASSET = "acme.berlin.utilities.air.compressor1"


def _cert(cn: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool = False, ip: str | None = None) -> Any:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def pki(folder: Path) -> dict[str, Path]:
    pem = serialization.Encoding.PEM
    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _cert("test CA", ca_key, ca_name, ca_key, ca=True)
    out["ca"] = folder / "ca.pem"
    out["ca"].write_bytes(ca.public_bytes(pem))
    for name, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"plantstream-{name}", key, ca_name, ca_key, ip=ip)
        out[f"{name}_cert"] = folder / f"{name}.pem"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(pem))
        out[f"{name}_key"] = folder / f"{name}-key.pem"
        out[f"{name}_key"].write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        )
    return out


def settings_for(tmp_path: Path, port: int, files: dict[str, Path], password: str) -> Settings:
    broker = {
        "host": "127.0.0.1",
        "port": port,
        "tls": True,
        "cafile": str(files["ca"]),
        "certfile": str(files["client_cert"]),
        "keyfile": str(files["client_key"]),
        "username": "plant",
        "password": password,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.5,
    }
    return Settings(
        plant={"assets": [{"path": ASSET}]},
        devices=[
            {
                "name": "compressor1",
                "protocol": "mqtt",
                "asset": ASSET,
                "broker": "plant",
                "topic": "acme/berlin/utilities/air/compressor1/{tag}",
                "frame_period_s": 0.2,
                "tags": [{"name": "pressure", "unit": "bar", "type": "float64"}],
            }
        ],
        pipeline={"state_dir": str(tmp_path / "state"), "mqtt": {"brokers": {"plant": broker}}},
    )


async def run_reader(settings: Settings, seconds: float, publish: Any = None) -> tuple[list[Any], RunStats]:
    frames: list[Any] = []
    stats = RunStats("producer-mqtt")
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_mqtt_producer(settings, frames.append, stop, stats))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if publish is not None and stats.get("mqtt_connects"):
            publish()
            publish = None
    stop.set()
    await asyncio.wait_for(task, 10)
    return frames, stats


async def test_tls_client_certificate_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = pki(tmp_path)
    (tmp_path / "passwd").write_text("")
    import subprocess

    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "plant", "s3cret"], check=True)
    port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        persistence=False,
        extra_conf=(
            f"cafile {files['ca']}\ncertfile {files['server_cert']}\nkeyfile {files['server_key']}\n"
            f"require_certificate true\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        ),
    )
    broker.start()
    try:
        caplog.set_level(logging.INFO)
        frames, stats = await run_reader(settings_for(tmp_path, port, files, "wrong"), 3.0)
        refused = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in refused]  # retried for 3 s, logged once
        assert "Fix: check username/password" in refused[0].getMessage()
        assert stats.get("mqtt_connects") == 0
        # the device is unreachable: one frame marks its tags BAD, nothing else
        assert [[(x["tag"], x["quality"]) for x in f["samples"]] for f in frames] == [[("pressure", "BAD")]]

        def publish() -> None:
            c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
            c.username_pw_set("plant", "s3cret")
            ctx = ssl.create_default_context(cafile=str(files["ca"]))
            ctx.load_cert_chain(str(files["client_cert"]), str(files["client_key"]))
            c.tls_set_context(ctx)
            c.connect("127.0.0.1", port)
            c.loop_start()
            c.publish("acme/berlin/utilities/air/compressor1/pressure", "6.25", qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()

        frames, stats = await run_reader(settings_for(tmp_path, port, files, "s3cret"), 3.0, publish)
        assert stats.get("mqtt_connects") == 1
        values = [(s["tag"], s["value"]) for f in frames for s in f["samples"] if s["quality"] == "GOOD"]
        assert values == [("pressure", 6.25)]
    finally:
        broker.stop()
