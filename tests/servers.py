"""Real receivers on free loopback ports for the alert delivery tests: an HTTP server that records
requests (and can fail or hang on purpose), an SMTP server (aiosmtpd, STARTTLS + AUTH) and a
mosquitto MQTT broker with a recording subscriber."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port
from tests.system import require


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """POST /<name>: answers `plan[name]` statuses in turn (then 200); `hang[name]` seconds of sleep
    before answering. Only answered requests that got 2xx are in `accepted`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.accepted: list[Request] = []
        self.plan: dict[str, list[int]] = {}
        self.hang: dict[str, float] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.path, headers, self.rfile.read(n), time.time())
                name = self.path.strip("/")
                with receiver._lock:
                    receiver.requests.append(req)
                    queue = receiver.plan.get(name) or []
                    status = queue.pop(0) if queue else 200
                delay = receiver.hang.get(name, 0.0)
                if delay:
                    time.sleep(delay)
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.accepted.append(req)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def got(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.accepted if r.path.strip("/") == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class SmtpServer:
    controller: Controller
    port: int
    cafile: Path
    username: str
    password: str
    messages: list[Message] = field(default_factory=list)

    def close(self) -> None:
        self.controller.stop()


class _Recorder:
    def __init__(self, out: list[Message]) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        msg["X-Test-Rcpt"] = ",".join(envelope.rcpt_tos)
        msg["X-Test-TLS"] = "yes" if session.ssl else "no"
        msg["X-Test-Auth"] = str(session.authenticated)
        self.out.append(msg)
        return "250 OK"


def start_smtp(folder: Path, username: str = "alerts", password: str = "s3cret-pw") -> SmtpServer:
    """aiosmtpd requiring STARTTLS before AUTH and AUTH before mail."""
    import ssl

    cert, key = self_signed_cert(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            username.encode(),
            password.encode(),
        )
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client waiting)
        return AuthResult(success=ok, handled=False)

    messages: list[Message] = []
    port = free_port()
    controller = Controller(
        _Recorder(messages),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
    )
    controller.start()
    return SmtpServer(controller, port, cert, username, password, messages)


@dataclass
class MqttMessage:
    topic: str
    payload: bytes
    retain: bool


class MqttBroker:
    """mosquitto on a free port with a generated config (no persistence: nothing outlives the test)."""

    def __init__(self, folder: Path) -> None:
        exe = require("mosquitto")
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
        )
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"mosquitto did not start; see {folder / 'mosquitto.log'}") from None
                time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MqttRecorder:
    """Subscribes to `topic` and records what arrives."""

    def __init__(self, port: int, topic: str = "#") -> None:
        self.messages: list[MqttMessage] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)

        def on_connect(c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            c.subscribe(topic, qos=1)

        def on_subscribe(*_: Any) -> None:
            ready.set()

        def on_message(_c: Any, _u: Any, m: Any) -> None:
            with self._lock:
                self.messages.append(MqttMessage(m.topic, bytes(m.payload), bool(m.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("MQTT test subscriber could not subscribe")

    def payloads(self) -> list[MqttMessage]:
        """Messages with a body (the empty retained 'clear' messages left out)."""
        with self._lock:
            return [m for m in self.messages if m.payload]

    def all(self) -> list[MqttMessage]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str = "#", wait_s: float = 1.0) -> list[MqttMessage]:
    """What a board that subscribes now would be shown: the broker's retained messages."""
    r = MqttRecorder(port, topic)
    time.sleep(wait_s)
    r.close()
    return [m for m in r.all() if m.retain]
