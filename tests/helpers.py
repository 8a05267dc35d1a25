"""Helpers for integration tests: topics per test, producing frames, consuming topics, child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.serde import Codec, Decoder
from sinks.batch import Batch


def prepare_topics(settings: Settings) -> dict[str, int]:
    topics.apply(settings, AdminClient(kafka_clients.admin_config(settings)))
    return topics.register_schemas(settings, kafka_clients.registry(settings))


def produce(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    p = Producer(kafka_clients.producer_config(settings, "test"))
    for key, value in items:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0


def consume_all(settings: Settings, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning until `expect` messages or the timeout, and 1 s more (which
    shows whether more than expected arrive: duplicates)."""
    return consume_until(settings, topic, lambda out: len(out) >= expect, timeout)


def consume_until(
    settings: Settings, topic: str, done: Callable[[list[Any]], bool], timeout: float = 60.0, linger: float = 1.0
) -> list[Any]:
    """Read a topic from the beginning until `done(messages so far)` or the timeout, then `linger` more
    seconds (to show what arrives after: duplicates, strays). For outputs that may repeat, where a
    count of messages says nothing about which ones arrived."""
    c = Consumer(kafka_clients.consumer_config(settings, f"test-read-{os.getpid()}-{time.time_ns()}", "test"))
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        out += [m for m in c.consume(500, 0.5) if not m.error()]
    end = time.monotonic() + linger
    while time.monotonic() < end:
        out += [m for m in c.consume(500, 0.2) if not m.error()]
    c.close()
    return out


def frame_codec(settings: Settings) -> Codec:
    import schemas

    return kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)


def decoder(settings: Settings, reader: str | None = None) -> Decoder:
    return kafka_clients.registry(settings).decoder(reader)


def spawn_cli(config: Path, *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def wait_for(cond: Any, timeout: float, interval: float = 0.3, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def as_batch(
    frames: Iterable[Any] = (), kpis: Iterable[Any] = (), results: dict[str, list[Any]] | None = None
) -> Batch:
    """A store batch from frames, KPI windows and other results by the stores' kind name (oee_window, ...)."""
    kinds = {
        "oee_window": schemas.OEE_WINDOW,
        "anomaly_score": schemas.ANOMALY_SCORE,
        "alert": schemas.ALERT,
        "alarm_event": schemas.ALARM_EVENT,
    }
    b = Batch(frames=list(frames), kpi_windows=list(kpis))
    for kind, records in (results or {}).items():
        for r in records:
            b.add(kinds[kind], r)
    return b
