"""Entry points of `plantstream produce modbus|opcua|replay`: a reader wired to the publisher, run until a signal."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import schemas
from plantstream.core import kafka_clients, logs, metrics, topics
from plantstream.core.config import Settings
from plantstream.core.records import Alert
from plantstream.core.runstats import RunStats
from plantstream.core.shutdown import StopOnSignal

if TYPE_CHECKING:
    from producers.publisher import Publisher

log = logs.get(__name__)

# run_modbus_producer / run_opcua_producer: (settings, emit, stop, stats) -> None
DeviceProducer = Callable[..., Awaitable[None]]


def run_until_signal(
    body: Callable[[asyncio.Event], Awaitable[None]], duration: float | None, stopper: StopOnSignal | None = None
) -> None:
    """Run `body` until SIGINT/SIGTERM (or `duration`); with a `stopper` (installed first thing) the signal
    is taken by it, which also bounds the time the stop may take."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if stopper is not None:
            stopper.on_stop(lambda: loop.call_soon_threadsafe(stop.set))
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await body(stop)

    asyncio.run(main())


def store_forward_kwargs(settings: Settings, component: str) -> dict[str, Any]:
    """Publisher arguments for the configured store-and-forward buffer (one file per publisher of a producer)."""
    from producers.store_forward import DiskBuffer

    sf = settings.pipeline.store_forward
    if not sf.enabled:
        return {}
    path = settings.state_path("buffer", f"{component}.db")
    return {"buffer": DiskBuffer(path, int(sf.max_mb * 2**20)), "component": component, "alarm_fill": sf.alarm_fill}


def frame_publisher(settings: Settings, component: str, stats: RunStats) -> Publisher:
    """The producer's frames to Kafka: codec registered (waiting for the registry with backoff), disk buffer."""
    from producers.publisher import Publisher

    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    return Publisher(settings, codec, stats, **store_forward_kwargs(settings, component))


def event_publisher(settings: Settings, component: str) -> Publisher:
    """The producer's device-down alerts to plant.alerts.v1, through a disk buffer of their own: a CLEARED
    raised while Kafka is away (or before a kill) still arrives, so no device-down alert stays open."""
    from producers.publisher import Publisher, describe_alert

    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.ALERTS), schemas.ALERT)
    return Publisher(
        settings,
        codec,
        topic=topics.ALERTS,
        describe=describe_alert,
        **store_forward_kwargs(settings, f"{component}-events"),
    )


def _run_device_producer(
    settings: Settings,
    component: str,
    run: DeviceProducer,
    duration: float | None,
    *,
    device_events: bool = False,
    dead_letters: bool = False,
) -> int:
    """Read devices until a signal or the duration; exit 1 if a frame was neither acked nor kept on disk.

    `device_events`: `run` takes `on_event=` and gets device-down/up Alert records for plant.alerts.v1.
    `dead_letters`: `run` takes `dead_letters=`, where bad input goes (plant.deadletter.v1).
    """
    from producers.dead_letters import DeadLetterPublisher
    from producers.device_events import log_event

    stats = RunStats(component, settings.pipeline.state_dir)
    # before any thread starts: a signal stops the readers, then the publishers deliver what they can within
    # the stop deadline (what Kafka has not acknowledged stays in the store-and-forward buffer for next time)
    stop_within = settings.pipeline.shutdown_timeout_s
    stopper = StopOnSignal(component, stop_within, stats.flush).install()
    metrics.serve(settings, stats)
    # no wait for the broker here: librdkafka queues frames (and the disk buffer keeps them) until it answers
    sink = frame_publisher(settings, component, stats)
    events = event_publisher(settings, component) if device_events else None
    dead = DeadLetterPublisher(settings, component) if dead_letters else None
    extra: dict[str, Any] = {}
    if events is not None:

        def on_event(alert: Alert) -> None:
            log_event(alert)
            events.emit(alert)

        extra["on_event"] = on_event
    if dead is not None:
        extra["dead_letters"] = dead
    try:
        run_until_signal(lambda stop: run(settings, sink.emit, stop, stats, **extra), duration, stopper)
    finally:
        # every close within the stop deadline (a broker that is gone answers none of them)
        end = time.monotonic() + max(3.0, stop_within - 3)
        undelivered = sink.close(timeout=max(1.0, end - time.monotonic() - 2))
        if events is not None:
            events.close(timeout=max(0.5, min(10.0, end - time.monotonic())))
        if dead is not None:
            dead.close(timeout=max(0.5, min(10.0, end - time.monotonic())))
        stats.flush()
    if undelivered:
        log.error("%d frame(s) were not acknowledged by Kafka before shutdown", undelivered)
        return 1
    return 0


def run_modbus(settings: Settings, duration: float | None) -> int:
    from producers.readers.modbus import run_modbus_producer

    return _run_device_producer(settings, "producer-modbus", run_modbus_producer, duration, device_events=True)


def run_opcua(settings: Settings, duration: float | None) -> int:
    from producers.readers.opcua import run_opcua_producer

    return _run_device_producer(settings, "producer-opcua", run_opcua_producer, duration, device_events=True)


def run_mqtt(settings: Settings, duration: float | None) -> int:
    from producers.readers.mqtt import run_mqtt_producer

    return _run_device_producer(
        settings, "producer-mqtt", run_mqtt_producer, duration, device_events=True, dead_letters=True
    )


def run_sparkplug(settings: Settings, duration: float | None) -> int:
    from producers.readers.sparkplug import run_sparkplug_producer

    return _run_device_producer(
        settings, "producer-sparkplug", run_sparkplug_producer, duration, device_events=True, dead_letters=True
    )


def run_replay(settings: Settings, source: str | None, speed: float | None) -> int:
    """Replay one configured source (or all) into plant.readings.v1; JSON summary on stdout."""
    import json

    from producers.replay import ReplayError, replay

    sources = [s for s in settings.replay if source in (None, s.name)]
    if not sources:
        names = [s.name for s in settings.replay]
        log.error(
            "no replay source %s in the config (configured: %s). Fix: add it under replay:",
            repr(source) if source else "",
            names or "none",
        )
        return 2
    stats = RunStats("producer-replay", settings.pipeline.state_dir)
    stopper = StopOnSignal("producer-replay", settings.pipeline.shutdown_timeout_s, stats.flush).install()
    sink = frame_publisher(settings, "producer-replay", stats)
    stopping = False

    def on_signal() -> None:
        nonlocal stopping
        stopping = True

    stopper.on_stop(on_signal)
    results = []
    code = 0
    try:
        for src in sources:
            try:
                results.append(replay(src, sink.emit, speed=speed, should_stop=lambda: stopping))
            except ReplayError as e:
                log.error("%s", e)
                code = 2
    finally:
        undelivered = sink.close(timeout=120)
        stats.flush()
    print(
        json.dumps(
            {
                "sources": results,
                "frames_acked": stats.get("frames_acked"),
                "frames_failed": stats.get("frames_failed"),
                "undelivered": undelivered,
            }
        ),
        flush=True,
    )
    return code or (1 if undelivered else 0)
