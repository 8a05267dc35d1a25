"""The OPC UA side of the demo plant: one asyncua server per configured endpoint, serving plausible signals.

Every OPC UA device of the config puts its tags under Objects/<enterprise>/<site>/<area>/<line>/<machine>
(its asset path) with exactly the node ids the config names, so the producer reads what the config says.
Values come from the Modbus simulator's machine model (state, load, counters, process profiles) and are
written with a source timestamp and status Good at every update.

Security: endpoints for the configured policies (None, Basic256Sha256, Aes256_Sha256_RsaPss; each secure
policy with Sign and SignAndEncrypt), a self-signed server certificate generated on first start under
the state dir, optional username/password users and an optional trust list of client certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np
from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from plantstream.core import logs
from plantstream.core.config import (
    OpcUaDevice,
    OpcUaSecurityMode,
    OpcUaSecurityPolicy,
    OpcUaTag,
    Settings,
    TagRole,
    TagType,
)
from plantstream.core.errors import ToolError
from plantstream.simulators.base import ServedSimulator
from plantstream.simulators.modbus import Machine, MachineState, Profile, profile_for
from producers.readers.opcua import VARIANT_TYPES, ensure_certificate, int_range, load_certs, under_state_dir

log = logs.get(__name__)

SERVER_APP_URI = "urn:plantstream:opcua-simulator"
PLANT_NAMESPACE = "urn:plantstream:plant"
EU_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

Value = bool | int | float | str

_MODES = {
    OpcUaSecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    OpcUaSecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}
_POLICIES = {
    OpcUaSecurityPolicy.BASIC256SHA256: (
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ),
    OpcUaSecurityPolicy.AES256_SHA256_RSAPSS: (
        ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ),
    OpcUaSecurityPolicy.NONE: (ua.SecurityPolicyType.NoSecurity,),
}


class OpcUaSimulatorError(ToolError, RuntimeError):
    """The OPC UA simulator cannot serve the configured plant; the message says where and why."""


class _PasswordUsers(UserManager):
    """Username/password check for the asyncua server (anonymous access is off when users exist)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self, iserver: InternalServer, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None  # asyncua answers BadUserAccessDenied


@dataclass
class _SimTag:
    device: OpcUaDevice
    tag: OpcUaTag
    node_id: ua.NodeId
    variant_type: ua.VariantType
    profile: Profile
    phase: float


@dataclass
class _Endpoint:
    host: str
    port: int
    url: str
    devices: list[OpcUaDevice] = field(default_factory=list)
    server: Server | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def opcua_devices(settings: Settings) -> list[OpcUaDevice]:
    return [d for d in settings.devices if isinstance(d, OpcUaDevice)]


class OpcUaSimulator(ServedSimulator):
    """Serves every configured OPC UA device; `start()`/`close()` (or `async with`) in tests, `run(stop)` else.

    `pause()` freezes the values; `set_value()` serves a chosen value (tests of types and deadbands).
    """

    def __init__(self, settings: Settings, devices: list[OpcUaDevice] | None = None) -> None:
        self._settings = settings
        conf = settings.pipeline.opcua_server
        sim = settings.pipeline.simulator
        self._interval = conf.update_interval_s or sim.update_interval_s
        self._speed = sim.speed
        self._dt_sim = self._interval * sim.speed  # accelerated time: simulated seconds per update
        self._epoch = _utcnow()  # simulated time 0 (reset by start)
        self._devices = opcua_devices(settings) if devices is None else devices
        self._endpoints = _group_endpoints(self._devices, sim.bind_host)
        seeds = np.random.SeedSequence(sim.seed + 1).spawn(len(self._devices) + 2)
        *machine_seeds, noise_seed, phase_seed = seeds
        self._noise_rng = np.random.default_rng(noise_seed)
        self._machines = {
            d.name: Machine(np.random.default_rng(s), settings.asset(d.asset).ideal_cycle_time_s)
            for d, s in zip(self._devices, machine_seeds, strict=True)
        }
        phase_rng = np.random.default_rng(phase_seed)
        self._tags = [
            _SimTag(
                d,
                t,
                ua.NodeId.from_string(t.node_id),
                VARIANT_TYPES[t.type or TagType.FLOAT64],
                profile_for(cast(Any, t)),  # it reads only .name and .unit
                float(phase_rng.uniform(0.0, 2 * math.pi)),
            )
            for d in self._devices
            for t in d.tags
        ]
        self._by_key = {(st.device.name, st.tag.name): st for st in self._tags}
        self._t = 0.0
        self._paused = False
        self._task: asyncio.Task[None] | None = None
        self._values: dict[tuple[str, str], Value] = {}

    # --- control ---------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [e.url for e in self._endpoints]

    @property
    def cert_path(self) -> Path:
        return self._cert_dir() / "server-cert.der"

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def current_values(self) -> dict[tuple[str, str], Value]:
        """(device name, tag name) -> the value served now."""
        return dict(self._values)

    async def set_value(
        self,
        device: str,
        tag: str,
        value: Value,
        status: int = ua.StatusCodes.Good,
        source_time: dt.datetime | None = None,
    ) -> None:
        """Serve one value now (with this status and source timestamp, default now)."""
        st = self._by_key[(device, tag)]
        await self._write(st, value, status, source_time or _utcnow())

    async def step(self) -> None:
        """Advance the machines by one update interval (times the speed) and write every tag."""
        self._t += self._dt_sim
        for m in self._machines.values():
            m.step(self._dt_sim)
        # accelerated time stamps simulated time; real time keeps the wall clock (pauses included)
        now = _utcnow() if self._speed == 1 else self._epoch + dt.timedelta(seconds=self._t)
        for st in self._tags:
            await self._write(st, self._value(st), ua.StatusCodes.Good, now)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the OPC UA simulator is already running")
        try:
            for endpoint in self._endpoints:
                await self._serve(endpoint)
        except BaseException:
            await self._stop_servers()
            raise
        if self._t == 0:
            self._epoch = _utcnow()  # simulated time 0 is the first start
        self._task = asyncio.create_task(self._update_loop(), name="opcua-simulator-updates")
        log.info(
            "OPC UA simulator serving %d device(s) on %s", len(self._devices), ", ".join(e.url for e in self._endpoints)
        )

    # --- internals -------------------------------------------------------------------------------

    def _cert_dir(self) -> Path:
        return under_state_dir(self._settings, self._settings.pipeline.opcua_server.cert_dir)

    async def _serve(self, endpoint: _Endpoint) -> None:
        conf = self._settings.pipeline.opcua_server
        users = {u: p.get_secret_value() for u, p in conf.users.items()}
        server = Server(user_manager=_PasswordUsers(users) if users else None)
        await server.init()
        server.set_endpoint(endpoint.url)
        server.set_server_name("plantstream OPC UA simulator")
        await server.set_application_uri(SERVER_APP_URI)
        server.set_security_policy(offered_policies(conf.security_policies, conf.security_modes))
        if users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        secure = any(p is not OpcUaSecurityPolicy.NONE for p in conf.security_policies)
        if secure:
            cert_dir = self._cert_dir()
            key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
            await ensure_certificate(
                key, cert, SERVER_APP_URI, [ExtendedKeyUsageOID.SERVER_AUTH], "plantstream simulator"
            )
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        if conf.trust_dir:
            trust = under_state_dir(self._settings, conf.trust_dir)
            server.set_certificate_validator(TrustListValidator(trust))
        await self._build_address_space(server, endpoint)
        try:
            await server.start()
        except OSError as e:
            names = ", ".join(d.name for d in endpoint.devices)
            raise OpcUaSimulatorError(
                f"cannot listen on {endpoint.label} for OPC UA device(s) {names}: {e.strerror or e}. Fix: stop the "
                "program using that port, or change the devices' endpoint (or pipeline.simulator.bind_host)"
            ) from e
        endpoint.server = server

    async def _build_address_space(self, server: Server, endpoint: _Endpoint) -> None:
        idx = await server.register_namespace(PLANT_NAMESPACE)
        names = {d.name for d in endpoint.devices}
        tags = [st for st in self._tags if st.device.name in names]
        # node ids in the config may name namespaces beyond ours: make them exist
        highest = max((st.node_id.NamespaceIndex for st in tags), default=idx)
        while len(await server.get_namespace_array()) <= highest:
            n = len(await server.get_namespace_array())
            await server.register_namespace(f"{PLANT_NAMESPACE}:ns{n}")
        folders: dict[tuple[str, ...], Any] = {(): server.nodes.objects}
        seen: dict[ua.NodeId, str] = {}
        for st in tags:
            parts = tuple(st.device.asset.split("."))
            for i in range(1, len(parts) + 1):
                if parts[:i] not in folders:
                    folders[parts[:i]] = await folders[parts[: i - 1]].add_object(idx, parts[i - 1])
            if st.node_id in seen:
                raise OpcUaSimulatorError(
                    f"device {st.device.name!r} tag {st.tag.name!r}: node id {st.tag.node_id} is already used by "
                    f"{seen[st.node_id]} on {endpoint.label}. Fix: give every tag its own node_id"
                )
            seen[st.node_id] = f"{st.device.name}/{st.tag.name}"
            value = self._value(st)
            self._values[(st.device.name, st.tag.name)] = value
            var = await folders[parts].add_variable(
                st.node_id, ua.QualifiedName(st.tag.name, idx), ua.Variant(value, st.variant_type)
            )
            if st.tag.unit:
                eu = ua.EUInformation(
                    NamespaceUri=EU_NAMESPACE,
                    UnitId=-1,
                    DisplayName=ua.LocalizedText(st.tag.unit),
                    Description=ua.LocalizedText(st.tag.unit),
                )
                await var.add_property(idx, "EngineeringUnits", ua.Variant(eu, ua.VariantType.ExtensionObject))
            await self._write(st, value, ua.StatusCodes.Good, _utcnow(), server)

    async def _write(
        self, st: _SimTag, value: Value, status: int, when: dt.datetime, server: Server | None = None
    ) -> None:
        self._values[(st.device.name, st.tag.name)] = value
        dv = ua.DataValue(
            ua.Variant(value, st.variant_type),
            ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=cast(ua.DateTime, when),
            ServerTimestamp=cast(ua.DateTime, when),
        )
        servers = [server] if server is not None else [e.server for e in self._endpoints if st.device in e.devices]
        for s in servers:
            if s is not None:
                await s.write_attribute_value(st.node_id, dv)

    async def _update_loop(self) -> None:
        next_at = asyncio.get_running_loop().time()
        while True:
            next_at += self._interval
            await asyncio.sleep(max(0.0, next_at - asyncio.get_running_loop().time()))
            if not self._paused:
                await self.step()

    async def _stop_servers(self) -> None:
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                with contextlib.suppress(Exception):
                    await endpoint.server.stop()
                endpoint.server = None

    # --- the signal model ------------------------------------------------------------------------

    def _value(self, st: _SimTag) -> Value:
        m = self._machines[st.device.name]
        tag, kind = st.tag, st.tag.type or TagType.FLOAT64
        if tag.role in (TagRole.COUNTER_TOTAL, TagRole.COUNTER_GOOD, TagRole.COUNTER_SCRAP):
            count = {TagRole.COUNTER_TOTAL: m.total, TagRole.COUNTER_GOOD: m.good, TagRole.COUNTER_SCRAP: m.scrap}
            return _shaped(kind, count[tag.role])
        if tag.role is TagRole.MACHINE_STATE:
            return m.state.name if kind is TagType.STRING else _shaped(kind, int(m.state))
        if tag.role is TagRole.STATUS or kind is TagType.BOOL:
            return (
                _shaped(kind, int(m.running)) if kind is not TagType.STRING else ("RUNNING" if m.running else "STOPPED")
            )
        if kind is TagType.STRING:
            return MachineState(m.state).name
        p = st.profile
        if tag.role is TagRole.SETPOINT:
            return _shaped(kind, p.running)
        level = p.stopped + (p.running - p.stopped) * m.load
        wave = p.wave * (0.2 + 0.8 * m.load) * math.sin(2 * math.pi * self._t / p.period_s + st.phase)
        noise = p.noise * float(self._noise_rng.standard_normal())
        return _shaped(kind, max(p.floor, level + wave + noise))


def offered_policies(
    policies: list[OpcUaSecurityPolicy], modes: list[OpcUaSecurityMode]
) -> list[ua.SecurityPolicyType]:
    """The endpoints to offer: each secure policy in each configured mode; policy None as it is."""
    wanted = {_MODES[m] for m in modes if m in _MODES}
    out = []
    for pol in policies:
        for p in _POLICIES[pol]:
            if pol is OpcUaSecurityPolicy.NONE or any(p.name.endswith(f"_{m.name}") for m in wanted):
                out.append(p)
    if not out:
        raise OpcUaSimulatorError(
            f"pipeline.opcua_server offers no endpoint: policies {[p.value for p in policies]} with modes "
            f"{[m.value for m in modes]}. Fix: add Sign or SignAndEncrypt to security_modes, or policy None"
        )
    return out


class _ExactTrust:
    """What CertificateValidator asks a trust store: is the certificate, or a CA that issued it, on the list.

    asyncua's own TrustStore would parse every file of the folder, keys included, and fail on a key
    (the demo's trust folder is the producer's certificate folder, which holds its key too).
    """

    def __init__(self, trusted: set[bytes]) -> None:
        self._trusted = trusted
        self._store = x509.verification.Store([x509.load_der_x509_certificate(c) for c in trusted])
        self._policy = TrustStore([], []).policy_builder  # asyncua's: CAs need basicConstraints ca=true

    def is_trusted(self, cert: x509.Certificate) -> bool:
        if cert.public_bytes(Encoding.DER) in self._trusted:
            return True  # a self-signed application certificate is trusted by being on the list
        try:
            self._policy.store(self._store).build_client_verifier().verify(cert, [])
            return True
        except (x509.verification.VerificationError, ValueError):
            return False

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return False  # no revocation lists in the demo PKI; remove a certificate from the folder instead


class TrustListValidator:
    """Accepts only client certificates found in `folder`; re-reads it when its files change.

    Re-reading means a client certificate added while the server runs (e.g. generated by the producer
    on its first start, after the simulator started) is trusted without a restart. An empty or missing
    folder refuses every client.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._validator: CertificateValidator | None = None

    def _listing(self) -> tuple[tuple[str, int, int], ...]:
        if not self.folder.is_dir():
            return ()
        files = [f for f in sorted(self.folder.iterdir()) if f.is_file()]
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        listing = self._listing()
        if listing != self._seen:
            trusted = set(load_certs(self.folder))  # certificates only: a key file beside them is skipped
            self._seen = listing
            self._validator = None
            if trusted:
                options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
                self._validator = CertificateValidator(options, cast(TrustStore, _ExactTrust(trusted)))
        if self._validator is None:
            log.warning("OPC UA simulator: trust_dir %s holds no certificates: client certificate refused", self.folder)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        await self._validator(cert, app)


def _shaped(kind: TagType, number: float) -> Value:
    """A number in the form (and range) the tag's OPC UA data type carries."""
    if kind is TagType.BOOL:
        return bool(number)
    if kind is TagType.STRING:
        return f"{number:g}"
    if kind in (TagType.FLOAT32, TagType.FLOAT64):
        return float(number)
    lo, hi = int_range(kind)
    n = round(number)
    return n % (hi + 1) if lo == 0 and n > hi else min(max(n, lo), hi)  # unsigned counters wrap like a PLC's


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _group_endpoints(devices: list[OpcUaDevice], bind_host: str | None) -> list[_Endpoint]:
    out: dict[tuple[str, int], _Endpoint] = {}
    for d in devices:
        u = urlparse(d.endpoint)
        host, port = bind_host or u.hostname or "127.0.0.1", int(u.port or 4840)
        url = f"opc.tcp://{host}:{port}{u.path or '/'}"
        ep = out.setdefault((host, port), _Endpoint(host, port, url))
        ep.devices.append(d)
    return list(out.values())
