"""The Modbus producer (TCP, and RTU over a serial line): polls each device at its rate, emits ReadingFrames.

Each TCP device gets its own poller and its own connection, so a dead or slow device only delays
itself. RTU devices on one serial port share the bus: one client, one request on the wire at a time.
A scan reads the device's tags in as few requests as `plan_reads` allows; a request that
fails turns its tags BAD for that scan (value null) instead of dropping the frame, so consumers see
the outage in the data. Failures are logged once per device per 30 s while they persist; a device
that stops answering also gets one device-down event (RAISED, then CLEARED on recovery; see
producers/device_events.py) when the caller passes `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from plantstream.core import logs
from plantstream.core.config import ModbusRtuDevice, ModbusTag, ModbusTcpDevice, RegisterTable, Settings
from plantstream.core.errors import ProducerError
from plantstream.core.records import ReadingFrame, Sample, reading_frame, sample
from plantstream.core.runstats import RunStats
from producers import modbus_codec
from producers.device_events import EventEmit
from producers.modbus_codec import ReadBlock, Value
from producers.readers.base import DeviceReader, Emit, default_producer_id, now_us, run_readers, wait_stop
from producers.report_by_exception import ExceptionFilter

log = logs.get(__name__)

T = TypeVar("T")
ModbusDevice = ModbusTcpDevice | ModbusRtuDevice
ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0

# Avro `long` is signed 64-bit; a uint64 above it can only travel as a double.
_AVRO_LONG_MIN, _AVRO_LONG_MAX = -(2**63), 2**63 - 1

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ReadFailed(ProducerError):
    """One read request did not return data; `cause` is the operator-facing reason."""

    def __init__(self, cause: str, *, device_silent: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        # the device did not answer at all: the scan's remaining requests would only wait as long
        self.device_silent = device_silent


class ModbusPoller(DeviceReader):
    """Polls one device over its own connection (or its serial bus) and sends one frame per scan."""

    protocol = "modbus"

    def __init__(
        self,
        device: ModbusDevice,
        emit: Emit,
        *,
        producer_id: str,
        stats: RunStats | None = None,
        client: ModbusClient | None = None,
        bus_lock: asyncio.Lock | None = None,
        on_event: EventEmit | None = None,
    ) -> None:
        """`client`/`bus_lock`: shared by the RTU devices of one serial port (default: a client of its own)."""
        self.device = device
        super().__init__([device], emit, subject=f"Modbus device {self.label}", log=log, stats=stats, on_event=on_event)
        self._producer_id = producer_id
        self._blocks = modbus_codec.plan_reads(device.tags)
        self._exceptions = ExceptionFilter.for_tags(device.tags)
        self._client = client or make_client(device)
        self._bus_lock = bus_lock
        self.seq = 0
        self._backoff_s = RECONNECT_MIN_S
        self._next_connect_at = 0.0
        self._connect_cause = ""

    @property
    def blocks(self) -> list[ReadBlock]:
        return list(self._blocks)

    @property
    def endpoint(self) -> str:
        d = self.device
        return d.serial_port if isinstance(d, ModbusRtuDevice) else f"{d.host}:{d.port}"

    @property
    def label(self) -> str:
        return f"{self.device.name!r} ({self.endpoint} unit {self.device.unit_id})"

    async def run(self, stop: asyncio.Event) -> None:
        """Scan at the device's poll rate until `stop` is set; missed ticks are skipped, not caught up."""
        interval = self.device.poll_interval_s
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                frame = await _unless_stopped(self.poll_once(), stop)
                if frame is None:
                    return
                if self._exceptions is not None:
                    frame["samples"] = self._exceptions.filter(frame["samples"], frame["scan_time"])
                if frame["samples"]:
                    frame["seq"] = self.seq
                    self.seq += 1
                    self.send(frame)
                else:
                    self.add_stat("frames_suppressed")
                next_at = self._next_tick(next_at, interval)
                if await wait_stop(stop, next_at - time.monotonic()):
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._client.close()

    async def poll_once(self) -> ReadingFrame:
        """Read every tag once and build the frame (BAD samples for whatever could not be read)."""
        scan_time = now_us()
        samples: dict[str, Sample] = {}
        failures: list[tuple[str, str]] = []  # (where, cause)
        silent_cause: str | None = None
        for block in self._blocks:
            try:
                if silent_cause is not None:
                    raise ReadFailed(silent_cause)
                data = await self._read_on_bus(block)
            except ReadFailed as e:
                if e.device_silent:
                    silent_cause = e.cause
                self.add_stat("read_errors")
                failures.append((f"{block.describe()} [{', '.join(t.name for t in block.tags)}]", e.cause))
                samples.update((t.name, _sample(t, scan_time, None)) for t in block.tags)
                continue
            self._backoff_s = RECONNECT_MIN_S
            for tag in block.tags:
                samples[tag.name] = self._decoded_sample(tag, block, data, scan_time, failures)
        self._report(failures)
        self._track_outage(silent_cause, scan_time)
        return reading_frame(
            asset=self.device.asset,
            device=self.device.name,
            seq=-1,  # numbered when emitted: frames suppressed by report-by-exception leave no gap
            producer_id=self._producer_id,
            scan_time=scan_time,
            # config order, not read order: consumers and people see tags as they were declared
            samples=[samples[t.name] for t in self.device.tags],
        )

    # --- reading ---------------------------------------------------------------------------------

    async def _read_on_bus(self, block: ReadBlock) -> Sequence[int]:
        if self._bus_lock is None:
            return await self._read(block)
        async with self._bus_lock:  # RTU: one request on the serial line at a time
            return await self._read(block)

    async def _read(self, block: ReadBlock) -> Sequence[int]:
        await self._ensure_connected()
        try:
            response = await self._request(block)
        except ConnectionException as e:
            raise ReadFailed(f"connection lost ({e})", device_silent=True) from e
        except ModbusIOException as e:
            if "no response" in str(e).lower():
                d = self.device
                cause = f"no response within {d.timeout_s:g} s ({d.retries + 1} attempt(s))"
                raise ReadFailed(cause, device_silent=True) from e
            raise ReadFailed(f"invalid response ({e})") from e
        except ModbusException as e:
            raise ReadFailed(str(e)) from e
        except (OSError, RuntimeError, ValueError) as e:
            # transport trouble pymodbus does not wrap: one device's failure must not end the producer
            raise ReadFailed(f"{type(e).__name__}: {e}", device_silent=True) from e
        if response.isError():
            code = response.exception_code
            name = EXCEPTION_NAMES.get(code, "unknown exception code")
            raise ReadFailed(f"Modbus exception {code} ({name})")
        data: Sequence[int] = (
            response.bits[: block.count] if modbus_codec.is_bit_table(block.table) else response.registers
        )
        if len(data) < block.count:
            raise ReadFailed(f"short response: {len(data)} of {block.count} values")
        return data

    def _request(self, block: ReadBlock) -> Awaitable[ModbusPDU]:
        c = self._client
        read = {
            RegisterTable.COIL: c.read_coils,
            RegisterTable.DISCRETE_INPUT: c.read_discrete_inputs,
            RegisterTable.HOLDING: c.read_holding_registers,
            RegisterTable.INPUT: c.read_input_registers,
        }[block.table]
        return read(block.start, count=block.count, device_id=self.device.unit_id)

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        if time.monotonic() < self._next_connect_at:
            raise ReadFailed(self._connect_cause, device_silent=True)
        started = time.monotonic()
        if await self._client.connect():
            if self.health().last_error:
                log.info("Modbus device %s: connected again", self.label)
            return
        # pymodbus reports only success; a fast failure is a refusal, a slow one a silent host
        slow = time.monotonic() - started >= 0.9 * self.device.timeout_s
        reason = f"no answer within {self.device.timeout_s:g} s" if slow else "refused or unreachable"
        self._connect_cause = f"cannot connect to {self.endpoint} ({reason})"
        self._next_connect_at = time.monotonic() + self._backoff_s
        self._backoff_s = min(2 * self._backoff_s, RECONNECT_MAX_S)
        raise ReadFailed(self._connect_cause, device_silent=True)

    def _decoded_sample(
        self,
        tag: ModbusTag,
        block: ReadBlock,
        data: Sequence[int],
        scan_time: int,
        failures: list[tuple[str, str]],
    ) -> Sample:
        words = block.words_of(tag, data)
        try:
            value = modbus_codec.decode(words, tag)
        except ValueError as e:
            where = f"{tag.table.value} {tag.address} [{tag.name}]"
            failures.append((where, f"cannot decode registers {list(words)}: {e}"))
            return _sample(tag, scan_time, None)
        return _sample(tag, scan_time, value)

    # --- bookkeeping -----------------------------------------------------------------------------

    def _next_tick(self, previous: float, interval: float) -> float:
        due = previous + interval
        late = time.monotonic() - due
        if late <= 0:
            return due
        missed = math.ceil(late / interval)
        self.add_stat("polls_skipped", missed)
        return due + missed * interval

    def _report(self, failures: list[tuple[str, str]]) -> None:
        if failures:
            self.report_failure(f"read failed: {_describe_failures(failures)}", "these tags are BAD until it recovers")
        else:
            self.report_recovery("all reads OK again")

    def _track_outage(self, silent_cause: str | None, scan_time: int) -> None:
        if silent_cause is None:
            self.device_up(0, scan_time)
        else:
            self.device_down(0, silent_cause, scan_time)


def _describe_failures(failures: list[tuple[str, str]]) -> str:
    """`coil 0-0 [running], input 0-9 [flow]: cannot connect ...`: one cause, all the places it hit."""
    by_cause: dict[str, list[str]] = {}
    for where, cause in failures:
        by_cause.setdefault(cause, []).append(where)
    return "; ".join(f"{', '.join(wheres)}: {cause}" for cause, wheres in by_cause.items())


def _sample(tag: ModbusTag, scan_time: int, value: Value | None) -> Sample:
    if isinstance(value, int) and not _AVRO_LONG_MIN <= value <= _AVRO_LONG_MAX:
        value = float(value)
    # Modbus carries no source timestamps: the scan time is the best one
    return sample(tag.name, scan_time, value, "BAD" if value is None else "GOOD", tag.unit)


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Result of `work`, or None if `stop` is set first (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():  # stopped, or this coroutine itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


def make_client(device: ModbusDevice) -> ModbusClient:
    # pymodbus' own reconnect loop is off (reconnect_delay=0): the poller paces reconnects, so a
    # dead device costs one connect attempt per backoff step and never a burst.
    if isinstance(device, ModbusRtuDevice):
        return AsyncModbusSerialClient(
            device.serial_port,
            baudrate=device.baudrate,
            parity=device.parity,
            stopbits=device.stopbits,
            bytesize=device.bytesize,
            timeout=device.timeout_s,
            retries=device.retries,
            reconnect_delay=0,
        )
    return AsyncModbusTcpClient(
        device.host, port=device.port, timeout=device.timeout_s, retries=device.retries, reconnect_delay=0
    )


def modbus_devices(settings: Settings) -> list[ModbusDevice]:
    return [d for d in settings.devices if isinstance(d, ModbusTcpDevice | ModbusRtuDevice)]


def make_pollers(
    devices: Sequence[ModbusDevice],
    emit: Emit,
    *,
    producer_id: str,
    stats: RunStats | None = None,
    on_event: EventEmit | None = None,
) -> list[ModbusPoller]:
    """One poller per device; RTU devices on one serial port share its client and a bus lock."""
    buses: dict[str, tuple[ModbusRtuDevice, ModbusClient, asyncio.Lock]] = {}
    pollers = []
    for d in devices:
        client: ModbusClient | None = None
        lock: asyncio.Lock | None = None
        if isinstance(d, ModbusRtuDevice):
            if d.serial_port not in buses:
                buses[d.serial_port] = (d, make_client(d), asyncio.Lock())
            first, client, lock = buses[d.serial_port]
            line = ("baudrate", "parity", "stopbits", "bytesize")
            if any(getattr(first, k) != getattr(d, k) for k in line):
                raise ValueError(
                    f"Modbus RTU devices {first.name!r} and {d.name!r} share serial port {d.serial_port} but not "
                    f"its line settings ({', '.join(line)}). Fix: give every device on one port the same settings"
                )
        pollers.append(
            ModbusPoller(d, emit, producer_id=producer_id, stats=stats, client=client, bus_lock=lock, on_event=on_event)
        )
    return pollers


async def run_modbus_producer(
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event,
    stats: RunStats | None = None,
    producer_id: str | None = None,
    on_event: EventEmit | None = None,
) -> None:
    """Poll every configured Modbus device (TCP and RTU) until `stop` is set.

    `emit` is called with each frame from the event loop thread; it must not block for long (a
    Publisher blocks only while librdkafka's local queue is full). Counters go to `stats`:
    frames_produced, samples_read (all samples, GOOD or BAD), samples_bad, read_errors (failed
    requests) and polls_skipped (ticks missed because a scan overran its interval). `on_event` gets
    one device-down Alert record (RAISED) per outage and one CLEARED on recovery.
    """
    pid = producer_id or default_producer_id()
    pollers = make_pollers(modbus_devices(settings), emit, producer_id=pid, stats=stats, on_event=on_event)
    if not pollers:
        log.warning("no Modbus devices configured: nothing to poll")
    for p in pollers:
        log.info(
            "polling Modbus device %s every %g s in %d request(s): %s",
            p.label,
            p.device.poll_interval_s,
            len(p.blocks),
            ", ".join(b.describe() for b in p.blocks),
        )
    await run_readers(pollers, stop, stats)
