"""One MQTT connection on the asyncio loop (paho-mqtt driven by the loop's reader/writer callbacks).

`run(stop)` connects, subscribes and reconnects with backoff until `stop`. QoS 1 messages are
acknowledged by the caller (`ack(mid)`) once what they carried is safe on disk: paho's manual-ack
mode, which aiomqtt does not offer. Messages are handed to `on_message` synchronously in the loop
thread, without a task or a queue per message. With MQTT 5 the broker is told our Receive Maximum
(`max_unacked`), so holding acks for a frame period does not throttle it; with 3.1.1 the broker's
own in-flight limit applies: set max_unacked at or below it (docs/configuration.md).
A refused or dropped connection is reported through `on_down(cause)` with the fix, once per cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from plantstream.core import logs
from plantstream.core.config import MqttBroker

log = logs.get(__name__)

OnMessage = Callable[[mqtt.MQTTMessage], None]


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


_READ_CHUNK = 256 * 1024
_PUBACK = 0x40  # MQTT control packet type PUBACK, no flags
_PUBACK_PACKET = struct.Struct("!BBH")  # type, remaining length 2, packet id


class BufferedClient(mqtt.Client):
    """paho reads every packet with two or three recv calls (type byte, length bytes, body); this one reads
    what the socket holds in one call and serves paho's reads from it. Measured on a backlog of small
    messages: about 45% less CPU per message in paho's receive path. `_sock_recv` is paho's own hook for
    socket reads (it maps TLS want-read/want-write and a closed socket), and `_handle_publish` its
    PUBLISH handler, both overridden here, hence the paho-mqtt < 3 pin."""

    _rbuf: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        avail = len(self._rbuf) - self._rpos
        if avail == 0:
            chunk = super()._sock_recv(_READ_CHUNK)
            if not chunk:
                return chunk  # closed by the broker
            self._rbuf, self._rpos, avail = chunk, 0, len(chunk)
        end = self._rpos + min(bufsize, avail)
        out = self._rbuf[self._rpos : end]
        self._rpos = end
        return out

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """MQTT 5 QoS 0/1 PUBLISH without properties (what brokers forward from most publishers), decoded
        here: paho builds a Properties object per message (two dicts of all 27 property kinds, then a
        `clear()` over them), about a quarter of our CPU per small message. Anything else goes to paho."""
        header: int = self._in_packet["command"]
        packet: bytes | bytearray = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if self._protocol != mqtt.MQTTv5 or qos == 2 or len(packet) < 2:
            return super()._handle_publish()
        pos = 2 + int.from_bytes(packet[:2], "big")
        topic = bytes(packet[2:pos])
        mid = 0
        if qos:
            mid = int.from_bytes(packet[pos : pos + 2], "big")
            pos += 2
        if pos >= len(packet) or packet[pos] != 0:  # properties (or a malformed packet): paho's own path
            return super()._handle_publish()
        message = mqtt.MQTTMessage(mid=mid, topic=topic)
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = bytes(packet[pos + 1 :])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)  # QoS 1: acknowledged by the reader (manual_ack)
        return mqtt.MQTT_ERR_SUCCESS

    @property
    def buffered(self) -> int:
        """Bytes read from the socket that paho has not consumed yet (the loop will not see them as readable)."""
        pending = getattr(self._sock, "pending", None)  # TLS: decrypted bytes held by the SSL object
        return len(self._rbuf) - self._rpos + (pending() if callable(pending) else 0)


class MqttConnection:
    """Connect/subscribe/reconnect loop of one broker; `on_up(session_present)` after each subscribe."""

    def __init__(
        self,
        broker: MqttBroker,
        *,
        name: str,
        client_id: str,
        local_port: int,
        subscriptions: list[tuple[str, int]],
        on_message: OnMessage,
        on_up: Callable[[bool], None] = lambda _present: None,
        on_down: Callable[[str], None] = lambda _cause: None,
        will: Callable[[], Will | None] | None = None,
        password: str | None = None,
    ) -> None:
        self.broker = broker
        self.name = name
        self.client_id = client_id
        self.host = broker.host or "127.0.0.1"
        self.port = broker.effective_port(local_port)
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_up = on_up
        self._on_down = on_down
        self._will = will
        self._password = password
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[tuple[bool, str | None]] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_cause = ""
        self.connected = asyncio.Event()
        self.connects = 0

    @property
    def where(self) -> str:
        return f"MQTT broker {self.name!r} ({self.host}:{self.port})"

    # --- public --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = self.broker.reconnect_min_s
        while not stop.is_set():
            cause = await self._session(stop)
            if stop.is_set():
                return
            if cause is None:
                backoff = self.broker.reconnect_min_s
                cause = self._lost_cause or "connection lost"
            self._on_down(cause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(2 * backoff, self.broker.reconnect_max_s)

    def ack(self, mids: Sequence[int]) -> None:
        """PUBACKs for these QoS 1 messages, queued as one buffer: paho would queue a packet per ack and
        write each with its own send call (a frame's acks come together, thousands at a time)."""
        c = self._client
        # the session, not our subscribe: a persistent session's backlog arrives between CONNACK and SUBACK,
        # and an ack dropped then holds one of the broker's in-flight slots until the next reconnect
        if mids and c is not None and c.is_connected():
            c._packet_queue(_PUBACK, b"".join(_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids), 0, 1)
        # after a reconnect the broker redelivers what was not acked: nothing to do here

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        c = self._client
        if c is None or not self.connected.is_set():
            return False
        return c.publish(topic, payload, qos=qos, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS

    async def publish_confirmed(self, topic: str, payload: bytes, timeout: float = 5.0, retain: bool = False) -> bool:
        """QoS 1 publish that waits for the broker's PUBACK (STATE messages)."""
        c = self._client
        if c is None or not self.connected.is_set():
            return False
        info = c.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return info.is_published()

    # --- one session -------------------------------------------------------------------------------

    async def _session(self, stop: asyncio.Event) -> str | None:
        """Connect, subscribe and serve until lost (returns None) or stop; a cause when connecting failed."""
        assert self._loop is not None
        client = self._make_client()
        self._client = client
        self._connack = self._loop.create_future()
        self._lost = asyncio.Event()
        self._lost_cause = ""
        try:
            await asyncio.wait_for(
                self._loop.run_in_executor(None, self._connect, client), self.broker.connect_timeout_s
            )
        except TimeoutError:
            self._drop(client)
            return f"no answer from {self.host}:{self.port} within {self.broker.connect_timeout_s:g} s"
        except ConnectionRefusedError:
            self._drop(client)
            return f"cannot connect to {self.host}:{self.port} (connection refused: is the broker running?)"
        except ssl.SSLError as e:
            self._drop(client)
            return (
                f"TLS handshake with {self.host}:{self.port} failed ({e.reason or e}). Fix: check tls, cafile, certfile"
            )
        except OSError as e:
            self._drop(client)
            return f"cannot connect to {self.host}:{self.port} ({e.strerror or e})"
        misc = asyncio.ensure_future(self._misc(client))
        try:
            try:
                present, refused = await asyncio.wait_for(self._connack, self.broker.connect_timeout_s)
            except TimeoutError:
                wait = self.broker.connect_timeout_s
                return f"{self.host}:{self.port} accepted TCP but sent no CONNACK within {wait:g} s"
            if refused is not None:
                return refused
            if not await self._subscribe(client):
                return self._lost_cause or "the broker refused the subscriptions"
            self.connects += 1
            self.connected.set()
            log.info(
                "%s: connected as %r, subscribed to %s",
                self.where,
                self.client_id,
                ", ".join(f for f, _ in self._subscriptions) or "nothing",
            )
            self._on_up(present)
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            return None
        finally:
            self.connected.clear()
            misc.cancel()
            if stop.is_set() and not self._lost.is_set():
                await self._disconnect(client)
            self._drop(client)

    async def _subscribe(self, client: mqtt.Client) -> bool:
        if not self._subscriptions:
            return True
        assert self._loop is not None
        done: asyncio.Future[list[Any]] = self._loop.create_future()

        def on_subscribe(_c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
            if not done.done():
                done.set_result(list(codes))

        client.on_subscribe = on_subscribe
        client.subscribe(self._subscriptions)
        try:
            codes = await asyncio.wait_for(done, self.broker.connect_timeout_s)
        except TimeoutError:
            self._lost_cause = "the broker did not answer the subscription"
            return False
        refused = [f for (f, _), c in zip(self._subscriptions, codes, strict=False) if getattr(c, "is_failure", False)]
        if refused:
            log.error(
                "%s refused the subscription(s) %s: the user may not read them. Fix: the broker's ACL",
                self.where,
                refused,
            )
        return True

    def _make_client(self) -> BufferedClient:
        b = self.broker
        v5 = b.protocol_version == "5"
        client = BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else b.clean_session,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.max_inflight_messages_set(200)  # our own publishes: STATE, rebirth requests
        if b.username is not None:
            client.username_pw_set(b.username, self._password)
        if b.tls:
            ctx = ssl.create_default_context(cafile=b.cafile)
            if b.certfile and b.keyfile:
                ctx.load_cert_chain(b.certfile, b.keyfile)
            if b.tls_insecure:
                ctx.check_hostname = False
            client.tls_set_context(ctx)
        w = self._will() if self._will is not None else None
        if w is not None:
            client.will_set(w.topic, w.payload, w.qos, w.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_paho_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    def _connect(self, client: mqtt.Client) -> None:
        b = self.broker
        if b.protocol_version == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if b.clean_session else b.session_expiry_s
            props.ReceiveMaximum = b.max_unacked
            client.connect(self.host, self.port, b.keepalive_s, clean_start=b.clean_session, properties=props)
        else:
            client.connect(self.host, self.port, b.keepalive_s)
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    async def _disconnect(self, client: mqtt.Client) -> None:
        with contextlib.suppress(Exception):
            client.disconnect()
            for _ in range(25):
                if not client.want_write():
                    break
                await asyncio.sleep(0.02)

    def _drop(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None and self._loop is not None and sock.fileno() >= 0:
            self._forget_fd(sock.fileno())
        with contextlib.suppress(Exception):
            client._sock_close()

    async def _misc(self, client: mqtt.Client) -> None:
        while True:
            await asyncio.sleep(1.0)
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS and not self._lost.is_set():
                self._lost_cause = self._lost_cause or "keepalive timed out"
                self._lost.set()

    # --- paho callbacks (event loop thread, except on_socket_open during connect) ---------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if self._connack is None or self._connack.done():
            return
        if getattr(reason, "is_failure", False):
            text = str(reason)
            fix = {
                "Not authorized": "check username/password and the broker's ACL",
                "Bad user name or password": "check username/password",
                "Client identifier not valid": "set another client_id",
                "Unsupported protocol version": "set protocol_version: 3.1.1",
            }.get(text, "see the broker's log")
            self._connack.set_result((False, f"the broker refused the connection ({text}). Fix: {fix}"))
        else:
            self._connack.set_result((bool(getattr(flags, "session_present", False)), None))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not self._lost_cause:
            self._lost_cause = f"connection lost ({reason})" if reason else "connection lost"
        self._lost.set()

    def _on_paho_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg)

    def _on_socket_open(self, paho_client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None
        loop = self._loop
        client = cast(BufferedClient, paho_client)

        def readable() -> None:
            try:
                rc = client.loop_read()
                # what was read ahead is not "readable" to the loop: serve it now, a batch at a time so the
                # other tasks (the frame cutter) get their turn, then come back for the rest
                for _ in range(1000):
                    if rc != mqtt.MQTT_ERR_SUCCESS or not client.buffered:
                        break
                    rc = client.loop_read()
                else:
                    loop.call_soon(readable)
            except Exception as e:  # a broken socket: the session ends, run() reconnects
                rc = mqtt.MQTT_ERR_CONN_LOST
                self._lost_cause = f"connection lost ({type(e).__name__}: {e})"
            if rc != mqtt.MQTT_ERR_SUCCESS and not self._lost.is_set():
                self._lost_cause = self._lost_cause or f"connection lost ({mqtt.error_string(rc)})"
                self._lost.set()

        self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), readable)

    def _on_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.call_soon_threadsafe(self._forget_fd, sock.fileno())

    def _on_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        assert self._loop is not None

        def writable() -> None:
            try:
                client.loop_write()
            except Exception as e:
                self._lost_cause = f"connection lost ({type(e).__name__}: {e})"
                self._lost.set()

        self._loop.call_soon_threadsafe(self._loop.add_writer, sock.fileno(), writable)

    def _on_unregister_write(self, _c: Any, _u: Any, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.call_soon_threadsafe(self._forget_writer, sock.fileno())

    def _forget_writer(self, fd: int) -> None:
        assert self._loop is not None
        with contextlib.suppress(OSError, ValueError):  # the socket may be closed by now
            self._loop.remove_writer(fd)

    def _forget_fd(self, fd: int) -> None:
        assert self._loop is not None
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(fd)
        self._forget_writer(fd)
