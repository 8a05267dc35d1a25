"""The OPC UA producer: subscribes to (or polls) each configured OPC UA device and emits ReadingFrames.

Each device has its own session. In subscription mode the server samples every item at its
sampling interval (with an optional deadband DataChangeFilter) and all data changes of one publish
response become ONE frame; in polling mode all tags are read in one Read call per period.

Samples carry the server's source timestamp (else its server timestamp) and the quality class of
their StatusCode. A sample whose source timestamp is not newer than the last one sent for its tag
is skipped, so reconnects, republished notifications and unchanged polled values never duplicate a
(tag, source_time). When the connection is lost, one frame with every tag BAD (value null) marks
the gap; the session, subscription and monitored items are then rebuilt with exponential backoff.
A tag the server rejects (unknown node id, ...) is BAD and logged by name; the other tags go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from plantstream.core import logs
from plantstream.core.config import OpcUaDevice, OpcUaSecurityMode, OpcUaSecurityPolicy, OpcUaTag, Settings, TagType
from plantstream.core.errors import ProducerError
from plantstream.core.records import Quality, ReadingFrame, Sample, reading_frame, sample
from plantstream.core.runstats import RunStats
from producers.device_events import EventEmit
from producers.readers.base import DeviceReader, Emit, default_producer_id, now_us, run_readers, wait_stop

log = logs.get(__name__)

CLIENT_APP_URI = "urn:plantstream:opcua-producer"
DISCONNECT_TIMEOUT_S = 2.0
MAX_SAMPLES_PER_FRAME = 5000  # ~250 kB of Avro
_AVRO_LONG_MIN, _AVRO_LONG_MAX = -(2**63), 2**63 - 1

VARIANT_TYPES: dict[TagType, ua.VariantType] = {
    TagType.BOOL: ua.VariantType.Boolean,
    TagType.INT16: ua.VariantType.Int16,
    TagType.UINT16: ua.VariantType.UInt16,
    TagType.INT32: ua.VariantType.Int32,
    TagType.UINT32: ua.VariantType.UInt32,
    TagType.INT64: ua.VariantType.Int64,
    TagType.UINT64: ua.VariantType.UInt64,
    TagType.FLOAT32: ua.VariantType.Float,
    TagType.FLOAT64: ua.VariantType.Double,
    TagType.STRING: ua.VariantType.String,
}
# ns=0 data type ids -> the config's tag types (SByte/Byte fit the 16-bit types)
DATA_TYPE_TAGS: dict[int, TagType] = {
    1: TagType.BOOL,
    2: TagType.INT16,
    3: TagType.UINT16,
    4: TagType.INT16,
    5: TagType.UINT16,
    6: TagType.INT32,
    7: TagType.UINT32,
    8: TagType.INT64,
    9: TagType.UINT64,
    10: TagType.FLOAT32,
    11: TagType.FLOAT64,
    12: TagType.STRING,
}
_POLICY_CLASSES: dict[OpcUaSecurityPolicy, type[security_policies.SecurityPolicy]] = {
    OpcUaSecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    OpcUaSecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    OpcUaSecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    OpcUaSecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}
_PASSWORD_CODES = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadUserSignatureInvalid,
}
_CERT_CODES = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadSecurityChecksFailed,
}


# --- pure helpers ---------------------------------------------------------------------------------


def int_range(kind: TagType) -> tuple[int, int]:
    bits = {TagType.INT16: 16, TagType.UINT16: 16, TagType.INT32: 32, TagType.UINT32: 32}.get(kind, 64)
    if kind.value.startswith("u"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quality_of(status: ua.StatusCode | int | None) -> Quality:
    """GOOD, UNCERTAIN or BAD: the severity bits (31-30) of an OPC UA StatusCode."""
    code = 0 if status is None else status if isinstance(status, int) else int(status.value)
    qualities: tuple[Quality, ...] = ("GOOD", "UNCERTAIN", "BAD", "BAD")
    return qualities[(code >> 30) & 0b11]


def status_name(status: ua.StatusCode | int) -> str:
    code = status if isinstance(status, int) else int(status.value)
    return str(ua.status_codes.get_name_and_doc(code)[0]) or f"0x{code:08X}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_us(t: dt.datetime) -> int:
    """UTC microseconds since the epoch (naive datetimes from asyncua are UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def avro_value(value: Any, tag: OpcUaTag) -> bool | int | float | str | None:
    """An OPC UA value as a ReadingFrame sample value (the union null|long|double|boolean|string)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if tag.scale != 1 or tag.offset != 0:
            return float(value) * tag.scale + tag.offset
        if isinstance(value, int) and not _AVRO_LONG_MIN <= value <= _AVRO_LONG_MAX:
            return float(value)
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, ua.LocalizedText):
        return value.Text
    return str(value)


@dataclass
class Change:
    """One value of one tag as the server reported it."""

    tag: int  # index into the device's tags
    value: Any
    status: int
    source_time: int | None  # microseconds; None = the server gave none


class FrameBuilder:
    """Turns batches of changes into frames; drops every (tag, source_time) not newer than the last sent."""

    def __init__(self, device: OpcUaDevice, producer_id: str) -> None:
        self.device = device
        self._producer_id = producer_id
        self.seq = 0
        self._last_sent: list[int | None] = [None] * len(device.tags)

    def frame(self, changes: Sequence[Change], scan_time: int) -> ReadingFrame | None:
        samples: list[Sample] = []
        for c in changes:
            t = c.source_time if c.source_time is not None else scan_time
            last = self._last_sent[c.tag]
            if last is not None and t <= last:
                continue  # already sent (republish after a reconnect, unchanged polled value)
            self._last_sent[c.tag] = t
            tag = self.device.tags[c.tag]
            quality = quality_of(c.status)
            value = None if quality == "BAD" else avro_value(c.value, tag)
            samples.append(sample(tag.name, t, value, quality, tag.unit))
        return self._frame(samples, scan_time) if samples else None

    def bad_frame(self, tags: Sequence[int], scan_time: int) -> ReadingFrame:
        """Every listed tag BAD at scan_time: marks a gap; does not move the duplicate check."""
        samples = [sample(self.device.tags[i].name, scan_time, None, "BAD", self.device.tags[i].unit) for i in tags]
        return self._frame(samples, scan_time)

    def _frame(self, samples: list[Sample], scan_time: int) -> ReadingFrame:
        frame = reading_frame(
            asset=self.device.asset,
            device=self.device.name,
            seq=self.seq,
            producer_id=self._producer_id,
            scan_time=scan_time,
            samples=samples,
        )
        self.seq += 1
        return frame


def data_change_filter(tag: OpcUaTag) -> ua.DataChangeFilter | None:
    if tag.deadband_abs is None and tag.deadband_pct is None:
        return None
    f = ua.DataChangeFilter()
    f.Trigger = ua.DataChangeTrigger.StatusValue
    if tag.deadband_abs is not None:
        f.DeadbandType = ua.DeadbandType.Absolute
        f.DeadbandValue = tag.deadband_abs
    else:
        f.DeadbandType = ua.DeadbandType.Percent  # the server needs the item's EURange for this
        f.DeadbandValue = float(tag.deadband_pct or 0.0)
    return f


def describe_error(e: BaseException, device: OpcUaDevice, cert_path: Path | None = None) -> str:
    """The operator-facing cause of a failed connect, with the fix."""
    code = getattr(e, "code", None)
    if isinstance(e, ua.UaStatusCodeError) and code in _PASSWORD_CODES:
        who = f"user {device.username!r}" if device.username else "anonymous access"
        return (
            f"the server rejected {who} ({status_name(code)}): wrong username or password, or the user is not "
            f"allowed. Fix: check username/password of device {device.name!r}"
        )
    if isinstance(e, ua.UaStatusCodeError) and code in _CERT_CODES:
        return (
            f"the server rejected the client certificate {cert_path} ({status_name(code)}). Fix: add that "
            "certificate to the server's trusted client certificates (its trust list)"
        )
    if isinstance(e, ServerNotTrusted):
        return str(e)
    if isinstance(e, ua.UaStatusCodeError):
        return f"the server answered {status_name(code or 0)}: {e}"
    if isinstance(e, ConnectionRefusedError):
        return f"cannot connect to {device.endpoint} (connection refused: is the server running?)"
    if isinstance(e, TimeoutError):
        return f"no answer from {device.endpoint} within {device.timeout_s:g} s"
    if isinstance(e, OSError):
        return f"cannot connect to {device.endpoint} ({e.strerror or e})"
    if isinstance(e, ua.UaError) and "No matching endpoints" in str(e):
        return (
            f"the server offers no endpoint with security {device.security_policy.value}/"
            f"{device.security_mode.value}. Fix: use a policy and mode the server offers"
        )
    return f"{type(e).__name__}: {e}"


class ServerNotTrusted(ProducerError):
    """The server's certificate is not in the device's server_trust_dir."""


# --- certificates ---------------------------------------------------------------------------------


async def ensure_certificate(
    key: Path, cert: Path, app_uri: str, uses: list[x509.ObjectIdentifier], organization: str
) -> None:
    """A self-signed OPC UA application certificate (DER) and key (PEM), generated when missing."""
    key.parent.mkdir(parents=True, exist_ok=True)
    cert.parent.mkdir(parents=True, exist_ok=True)
    await setup_self_signed_certificate(
        key, cert, app_uri, socket.gethostname(), uses, {"organizationName": organization}
    )


def under_state_dir(settings: Settings, folder: str) -> Path:
    """A configured folder: absolute as given, relative = under pipeline.state_dir (where the demo PKI lives)."""
    d = Path(folder).expanduser()
    return d if d.is_absolute() else Path(settings.pipeline.state_dir).expanduser() / d


def client_cert_paths(settings: Settings, device: OpcUaDevice) -> tuple[Path, Path]:
    state = Path(settings.pipeline.state_dir).expanduser() / "opcua"
    cert = Path(device.client_cert).expanduser() if device.client_cert else state / "client-cert.der"
    key = Path(device.client_key).expanduser() if device.client_key else cert.with_name("client-key.pem")
    return cert, key


def load_certs(folder: Path) -> list[bytes]:
    out = []
    for f in sorted(folder.iterdir()) if folder.is_dir() else []:
        data = f.read_bytes()
        try:
            c = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
        except ValueError:
            continue
        out.append(c.public_bytes(encoding=Encoding.DER))
    return out


# --- the subscription ------------------------------------------------------------------------------


class _NoHandler:
    """Handler placeholder: it keeps asyncua in callback mode; publish_callback below does the work."""


class _FrameSubscription(Subscription):
    """All data changes of one publish response go to `on_batch` at once (one frame, not one per change)."""

    def __init__(
        self,
        session: Any,
        params: ua.CreateSubscriptionParameters,
        on_batch: Callable[[list[Change]], None],
        on_status: Callable[[ua.StatusCode], None],
    ) -> None:
        super().__init__(session, params, _NoHandler())  # type: ignore[arg-type]
        self._on_batch = on_batch
        self._on_status = on_status

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return
        self.last_sequence_number = int(publish_result.NotificationMessage.SequenceNumber)
        changes: list[Change] = []
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    dv = item.Value
                    changes.append(
                        Change(
                            item.ClientHandle,
                            dv.Value.Value if dv.Value is not None else None,
                            int(dv.StatusCode.value) if dv.StatusCode is not None else 0,
                            _time_of(dv),
                        )
                    )
            elif isinstance(notif, ua.StatusChangeNotification):
                self._on_status(notif.Status)
        if changes:
            self._on_batch(changes)


def _time_of(dv: ua.DataValue) -> int | None:
    t = dv.SourceTimestamp or dv.ServerTimestamp
    return to_us(t) if t is not None else None


# --- one device -----------------------------------------------------------------------------------


class OpcUaDeviceReader(DeviceReader):
    """One device's session: connect, subscribe (or poll), mark gaps, reconnect with backoff."""

    protocol = "opcua"

    def __init__(
        self,
        settings: Settings,
        device: OpcUaDevice,
        emit: Emit,
        *,
        producer_id: str,
        stats: RunStats | None = None,
        on_event: EventEmit | None = None,
    ) -> None:
        self.device = device
        super().__init__(
            [device],
            emit,
            subject=f"OPC UA device {self.label}",
            log=log,
            stats=stats,
            on_event=on_event,
            report_each_cause=True,
        )
        self._settings = settings
        self.frames = FrameBuilder(device, producer_id)
        self._node_ids = [ua.NodeId.from_string(t.node_id) for t in device.tags]
        self._cert, self._key = client_cert_paths(settings, device)
        self._bad_tags: dict[int, str] = {}  # tag index -> the status that made it BAD (logged once)
        self.connected = asyncio.Event()
        self.connects = 0

    @property
    def label(self) -> str:
        return f"{self.device.name!r} ({self.device.endpoint})"

    async def run(self, stop: asyncio.Event) -> None:
        d = self.device
        backoff = d.reconnect_min_s
        while not stop.is_set():
            try:
                client = await self._connect()
            except Exception as e:  # every connect failure: report, mark the gap, retry later
                self._failed(describe_error(e, d, self._cert if self._secure else None))
                if await wait_stop(stop, backoff):
                    return
                backoff = min(2 * backoff, d.reconnect_max_s)
                continue
            backoff = d.reconnect_min_s
            self.report_recovery("connected again")
            self.connects += 1
            self.add_stat("opcua_connects")
            self.device_up(0)
            lost = asyncio.Event()
            cause: list[str] = []

            async def on_lost(exc: Exception, lost: asyncio.Event = lost, cause: list[str] = cause) -> None:
                cause.append(f"connection lost ({type(exc).__name__}: {exc})")
                lost.set()

            client.connection_lost_callback = on_lost
            self.connected.set()
            try:
                if d.mode == "subscription":
                    await self._subscribe(client, stop, lost, cause)
                else:
                    await self._poll(client, stop, lost, cause)
            except Exception as e:
                cause.append(describe_error(e, d))
            finally:
                self.connected.clear()
                await _disconnect(client)
            if not stop.is_set():
                self._failed(cause[0] if cause else "connection lost")
                if await wait_stop(stop, backoff):
                    return

    # --- connecting ------------------------------------------------------------------------------

    @property
    def _secure(self) -> bool:
        return self.device.security_policy is not OpcUaSecurityPolicy.NONE

    async def _connect(self) -> Client:
        d = self.device
        client = Client(d.endpoint, timeout=d.timeout_s, watchdog_intervall=2.0)
        client.session_timeout = 600_000  # what asyncua servers grant at most; asking more only logs a warning
        client.application_uri = CLIENT_APP_URI
        password = self._settings.opcua_password(d)
        if d.username is not None and password is not None:
            client.set_user(d.username)
            client.set_password(password.get_secret_value())
        if self._secure:
            await ensure_certificate(
                self._key, self._cert, CLIENT_APP_URI, [ExtendedKeyUsageOID.CLIENT_AUTH], "plantstream"
            )
            if d.server_trust_dir:
                await self._check_server_trusted()
            await asyncio.wait_for(
                client.set_security(
                    _POLICY_CLASSES[d.security_policy], str(self._cert), str(self._key), mode=_MODES[d.security_mode]
                ),
                d.timeout_s * 2,
            )
        await asyncio.wait_for(client.connect(), d.timeout_s * 2)
        log.info("OPC UA device %s: session open, %s", self.label, session_security(client, d.username))
        return client

    async def _check_server_trusted(self) -> None:
        d = self.device
        probe = Client(d.endpoint, timeout=d.timeout_s)
        endpoints = await asyncio.wait_for(probe.connect_and_get_server_endpoints(), d.timeout_s * 2)
        trusted = load_certs(under_state_dir(self._settings, d.server_trust_dir or ""))
        certs = {bytes(e.ServerCertificate) for e in endpoints if e.ServerCertificate}
        if not certs & set(trusted):
            raise ServerNotTrusted(
                f"the server's certificate is not in server_trust_dir {d.server_trust_dir} of device {d.name!r}. "
                "Fix: copy the server's certificate (DER or PEM) into that folder if you trust it"
            )

    # --- subscription mode -------------------------------------------------------------------------

    async def _subscribe(self, client: Client, stop: asyncio.Event, lost: asyncio.Event, cause: list[str]) -> None:
        d = self.device
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = d.publishing_interval_ms
        params.RequestedLifetimeCount = 10000
        params.RequestedMaxKeepAliveCount = client.get_keepalive_count(d.publishing_interval_ms)
        params.MaxNotificationsPerPublish = 0  # no limit: one publish response carries the whole cycle
        params.PublishingEnabled = True
        params.Priority = 0

        def on_status(status: ua.StatusCode) -> None:
            if not status.is_good():
                cause.append(f"subscription ended by the server ({status_name(status)})")
                lost.set()

        sub = _FrameSubscription(client.uaclient.session, params, self._on_batch, on_status)
        await sub.init()
        requests = []
        for i, (tag, node) in enumerate(zip(d.tags, self._node_ids, strict=True)):
            mp = ua.MonitoringParameters()
            mp.ClientHandle = i
            mp.SamplingInterval = (
                tag.sampling_interval_ms if tag.sampling_interval_ms is not None else d.sampling_interval_ms
            )
            mp.QueueSize = d.queue_size
            mp.DiscardOldest = True
            if (flt := data_change_filter(tag)) is not None:
                mp.Filter = flt
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value)
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = mp
            requests.append(req)
        results = await sub.create_monitored_items(requests)
        rejected = {i: r for i, r in enumerate(results) if isinstance(r, ua.StatusCode)}
        self._tags_rejected(rejected)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _on_batch(self, changes: list[Change]) -> None:
        self.add_stat("data_changes", len(changes))
        for c in changes:
            if c.tag in self._bad_tags and quality_of(c.status) != "BAD":
                log.info("OPC UA device %s: tag %r has values again", self.label, self.device.tags[c.tag].name)
                del self._bad_tags[c.tag]
        scan_time = now_us()
        # a huge publish cycle is split so no Kafka message nears the broker's 1 MB default limit
        for start in range(0, len(changes), MAX_SAMPLES_PER_FRAME):
            frame = self.frames.frame(changes[start : start + MAX_SAMPLES_PER_FRAME], scan_time)
            if frame is not None:
                self.send(frame)

    def _tags_rejected(self, rejected: dict[int, ua.StatusCode]) -> None:
        """Tags the server refused: BAD now, logged once each by name with the cause and the fix."""
        fresh = {i: s for i, s in rejected.items() if self._bad_tags.get(i) != status_name(s)}
        for i, s in fresh.items():
            tag = self.device.tags[i]
            name = status_name(s)
            hint = (
                "the server has no node with this id. Fix: correct node_id (list the server's variables with "
                f"`plantstream produce opcua --browse {self.device.endpoint}`)"
                if s.value in (ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid)
                else "the server refused it"
            )
            log.error(
                "OPC UA device %s: tag %r (node %s) is BAD: %s; %s. The other tags go on",
                self.label,
                tag.name,
                tag.node_id,
                name,
                hint,
            )
            self._bad_tags[i] = name
        if rejected:
            self.send(self.frames.bad_frame(sorted(rejected), now_us()))

    # --- polling mode ------------------------------------------------------------------------------

    async def _poll(self, client: Client, stop: asyncio.Event, lost: asyncio.Event, cause: list[str]) -> None:
        d = self.device
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in self._node_ids]
        interval = d.publishing_interval_ms / 1000
        next_at = time.monotonic()
        while not stop.is_set() and not lost.is_set():
            values = await asyncio.wait_for(client.uaclient.read(params), d.timeout_s)
            self.add_stat("polls")
            rejected: dict[int, ua.StatusCode] = {}
            changes = []
            for i, dv in enumerate(values):
                status = dv.StatusCode or ua.StatusCode()
                if status.value in (ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid):
                    rejected[i] = status
                    continue
                changes.append(
                    Change(i, dv.Value.Value if dv.Value is not None else None, int(status.value), _time_of(dv))
                )
            if rejected:
                known = {i for i in rejected if i in self._bad_tags}
                self._tags_rejected({i: s for i, s in rejected.items() if i not in known})
            if changes:
                self._on_batch(changes)
            next_at += interval
            if await wait_stop(stop, max(0.0, next_at - time.monotonic())):
                return
            next_at = max(next_at, time.monotonic() - interval)  # skip missed ticks, do not catch up

    # --- bookkeeping -------------------------------------------------------------------------------

    def _failed(self, cause: str) -> None:
        """Report the cause; the first failure of an outage sends one frame of BAD samples (not one per retry)."""
        self.report_failure(cause, "its tags are BAD until it recovers (retrying with backoff)")
        every_tag = range(len(self.device.tags))
        self.device_down(0, cause, gap=lambda at: self.frames.bad_frame(every_tag, at))


def session_security(client: Client, username: str | None) -> str:
    """The secure channel as negotiated (not as configured): policy/mode and the user, for the log."""
    policy = client.security_policy
    uri = str(getattr(policy, "URI", "") or ua.SecurityPolicyType.NoSecurity.name)
    mode = getattr(getattr(policy, "Mode", None), "name", "None")
    user = f"user {username!r}" if username else "anonymous"
    return f"security {uri.rsplit('#', 1)[-1]}/{mode}, {user}"


async def _disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


async def run_opcua_producer(
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event,
    stats: RunStats | None = None,
    producer_id: str | None = None,
    on_event: EventEmit | None = None,
) -> None:
    """Read every configured OPC UA device until `stop` is set; frames go to `emit` (event loop thread).

    `on_event` gets one device-down Alert record (RAISED) per lost connection and one CLEARED on reconnect.
    """
    pid = producer_id or default_producer_id()
    readers = [
        OpcUaDeviceReader(settings, d, emit, producer_id=pid, stats=stats, on_event=on_event)
        for d in settings.devices
        if isinstance(d, OpcUaDevice)
    ]
    if not readers:
        log.warning("no OPC UA devices configured: nothing to read")
    for r in readers:
        d = r.device
        log.info(
            "reading OPC UA device %s by %s (%d tags, %s/%s)",
            r.label,
            f"subscription every {d.publishing_interval_ms:g} ms"
            if d.mode == "subscription"
            else f"polling every {d.publishing_interval_ms:g} ms",
            len(d.tags),
            d.security_policy.value,
            d.security_mode.value,
        )
    await run_readers(readers, stop, stats)


# --- browse ---------------------------------------------------------------------------------------


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def tag_name(browse_name: str) -> str:
    """A config-valid tag name from a browse name."""
    name = _BAD_NAME_CHARS.sub("_", browse_name).lstrip(".-") or "tag"
    return name


async def browse_tags(
    endpoint: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 4.0
) -> list[dict[str, Any]]:
    """Every variable under Objects (outside namespace 0): name, node_id, type, unit and browse path."""
    client = Client(endpoint, timeout=timeout_s)
    client.session_timeout = 60_000
    if username is not None:
        client.set_user(username)
        client.set_password(password or "")
    await asyncio.wait_for(client.connect(), timeout_s * 2)
    out: list[dict[str, Any]] = []
    try:
        await _walk(client, client.nodes.objects, ("Objects",), out)
    finally:
        await _disconnect(client)
    names = [t["name"] for t in out]
    for t in out:  # the same browse name twice: prefix the parent object
        if names.count(t["name"]) > 1:
            t["name"] = tag_name(f"{t['path'][-2]}.{t['path'][-1]}")
    return out


async def _walk(client: Client, node: Any, path: tuple[str, ...], out: list[dict[str, Any]]) -> None:
    children = await node.get_children(nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable)
    for child in children:
        if child.nodeid.NamespaceIndex == 0:
            continue  # the standard Server object and types
        bname = (await child.read_browse_name()).Name
        cls = await child.read_node_class()
        if cls == ua.NodeClass.Object:
            await _walk(client, child, (*path, bname), out)
            continue
        entry: dict[str, Any] = {"name": tag_name(bname), "node_id": child.nodeid.to_string(), "path": (*path, bname)}
        dtype = await child.read_data_type()
        if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) and dtype.Identifier in DATA_TYPE_TAGS:
            entry["type"] = DATA_TYPE_TAGS[dtype.Identifier].value
        with contextlib.suppress(Exception):  # EngineeringUnits is optional
            eu = await (await child.get_child(f"{child.nodeid.NamespaceIndex}:EngineeringUnits")).read_value()
            if isinstance(eu, ua.EUInformation) and eu.DisplayName and eu.DisplayName.Text:
                entry["unit"] = eu.DisplayName.Text
        if "unit" not in entry:
            with contextlib.suppress(Exception):
                props = await child.get_properties()
                for p in props:
                    if (await p.read_browse_name()).Name == "EngineeringUnits":
                        eu = await p.read_value()
                        if isinstance(eu, ua.EUInformation) and eu.DisplayName and eu.DisplayName.Text:
                            entry["unit"] = eu.DisplayName.Text
        out.append(entry)


def browse_yaml(tags: list[dict[str, Any]]) -> str:
    """A `tags:` list to paste into an OPC UA device of the config; the browse path as a comment."""
    lines = ["tags:"]
    for t in tags:
        fields = {k: t[k] for k in ("name", "node_id", "type", "unit") if k in t}
        flow = yaml.safe_dump([fields], default_flow_style=None, sort_keys=False, width=1000).strip()
        lines.append(f"  # {'/'.join(t['path'])}")
        lines.append(f"  {flow}")
    return "\n".join(lines) + "\n"
