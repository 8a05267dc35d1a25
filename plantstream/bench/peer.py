"""The reference peer of `plantstream bench worker --peer quix`: Quix Streams on the same backlog.

quixstreams 3.28 requires confluent-kafka < 2.13 and plantstream pins 2.16, so the peer runs in a
virtualenv of its own, made on first use under the cache folder (`$PLANTSTREAM_CACHE`, default
~/.cache/plantstream/peer-venv) from PyPI with the versions pinned here, and is started as a
subprocess (plantstream/bench/quix_peer_app.py) on the benchmark's readings topic. Its KPI windows are
read back from its output topic and compared with ours field by field (`compare_windows`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from plantstream.core import kafka_clients
from plantstream.core.config import Settings
from plantstream.core.errors import ToolError
from plantstream.stack.maven import cache_dir

# what the peer's virtualenv holds; a change of these makes a new venv
PEER_REQUIREMENTS = ("quixstreams[avro]==3.28.1", "confluent-kafka==2.12.2", "fastavro==1.13.1")
APP = Path(__file__).with_name("quix_peer_app.py")

# the statistics of a KpiWindow, in schema order; the rest of the record is its key
STAT_FIELDS = (
    "unit",
    "count",
    "bad_count",
    "min",
    "max",
    "mean",
    "stddev",
    "first",
    "last",
    "first_time",
    "last_time",
    "time_weighted_avg",
    "rate_of_change",
)
# computed by arithmetic that may be reordered (a vectorised sum): equal within this relative difference
ROUNDED_FIELDS = frozenset(("mean", "stddev", "time_weighted_avg", "rate_of_change"))
REL_TOLERANCE = 1e-9

WindowKey = tuple[str, str, int, int]  # asset, tag, window_start, window_end (µs)


class PeerError(ToolError):
    pass


def peer_python(say: Callable[[str], None]) -> Path:
    """The peer venv's interpreter, creating the venv (from PyPI) when it is missing or out of date."""
    venv = cache_dir() / "peer-venv"
    stamp = venv / "plantstream-requirements.txt"
    python = venv / "bin" / "python"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    say(f"bench: creating the Quix Streams peer's virtualenv in {venv} ({', '.join(PEER_REQUIREMENTS)})")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS], check=True)
    except subprocess.CalledProcessError as e:
        raise PeerError(
            f"could not create the peer's virtualenv in {venv} ({e}). Fix: check that PyPI is reachable "
            f"(pip install {' '.join(PEER_REQUIREMENTS)}), or run the bench without --peer"
        ) from e
    stamp.write_text(wanted)
    return python


def start_peer(
    python: Path,
    settings: Settings,
    run_dir: Path,
    *,
    input_topic: str,
    output_topic: str,
    group: str,
    window_ms: int,
    grace_ms: int,
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start the Quix app; returns (process, its progress file, its log)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = run_dir / "progress.json"
    cfg = {
        "bootstrap": kafka_clients.bootstrap(settings),
        "registry_url": kafka_clients.registry_url(settings),
        "group": group,
        "input_topic": input_topic,
        "output_topic": output_topic,
        "partitions": settings.pipeline.kafka.partitions,
        "window_ms": window_ms,
        "grace_ms": grace_ms,
        "state_dir": str(run_dir / "state"),
        "progress": str(progress),
    }
    conf = run_dir / "peer.json"
    conf.write_text(json.dumps(cfg, indent=1))
    log = run_dir / "peer.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(python), str(APP), str(conf)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return proc, progress, log


def read_progress(progress: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(progress.read_text())
        return data
    except (OSError, ValueError):
        return {}


# --- reading windows back -------------------------------------------------------------------------


def windows_of_peer_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> dict[WindowKey, dict[str, Any]]:
    """The peer's windows: one JSON message per asset (the message key) and window, its tags inside."""
    consumer = Consumer(kafka_clients.consumer_config(settings, f"bench-read-{time.time_ns()}", "bench-read"))
    out: dict[WindowKey, dict[str, Any]] = {}
    try:
        for m in _messages(consumer, topic, timeout_s):
            doc = json.loads(m[1])
            asset = m[0].decode()
            start, end = doc["start"] * 1000, doc["end"] * 1000
            for tag, stats in doc["kpi"].items():
                out[(asset, tag, start, end)] = stats
    finally:
        consumer.close()
    return out


def _messages(consumer: Consumer, topic: str, timeout_s: float) -> Iterator[tuple[bytes, bytes]]:
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    ends: dict[int, int] = {}
    for p in md.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 1.0):
            if m.error() is not None:
                continue
            p, off = m.partition(), m.offset()
            if p not in ends or off is None:
                continue
            key, value = m.key(), m.value()
            if value is not None:
                yield key or b"", value
            if off + 1 >= ends[p]:
                del ends[p]
    if ends:
        raise PeerError(f"{topic}: partitions {sorted(ends)} not read to their end within {timeout_s:.0f}s")


def windows_of_kpi_topic(
    settings: Settings, topic: str, decode: Callable[[bytes], dict[str, Any]], timeout_s: float = 120.0
) -> tuple[dict[WindowKey, dict[str, Any]], int]:
    """Our KPI windows (Avro KpiWindow records), and how many copies disagreed with the first of their key
    (several runs of the worker write the same windows to one topic)."""
    consumer = Consumer(kafka_clients.consumer_config(settings, f"bench-read-{time.time_ns()}", "bench-read"))
    out: dict[WindowKey, dict[str, Any]] = {}
    disagree = 0
    try:
        for _key, value in _messages(consumer, topic, timeout_s):
            r = decode(value)
            k = (r["asset"], r["tag"], r["window_start"], r["window_end"])
            stats = {f: r[f] for f in STAT_FIELDS}
            seen = out.get(k)
            if seen is None:
                out[k] = stats
            elif seen != stats:
                disagree += 1
    finally:
        consumer.close()
    return out, disagree


def compare_windows(
    ours: dict[WindowKey, dict[str, Any]], peer: dict[WindowKey, dict[str, Any]], closable: Callable[[WindowKey], bool]
) -> dict[str, Any]:
    """Field by field. Every peer window must be one of ours; every one of ours that the peer could close
    (`closable`: its end is at or before the asset's last event time minus grace; ours also closes the last
    windows of a silent asset by the wall clock, Quix does not) must be the peer's."""
    missing_in_ours = [k for k in peer if k not in ours]
    missing_in_peer = [k for k in ours if k not in peer and closable(k)]
    identical = 0
    within = 0
    mismatched: list[dict[str, Any]] = []
    max_rel = 0.0
    for k, p in peer.items():
        o = ours.get(k)
        if o is None:
            continue
        if all(_same(o[f], p.get(f)) for f in STAT_FIELDS):
            identical += 1
            continue
        bad = []
        for f in STAT_FIELDS:
            a, b = o[f], p.get(f)
            if _same(a, b):
                continue
            if f in ROUNDED_FIELDS and isinstance(a, float) and isinstance(b, float):
                rel = abs(a - b) / max(abs(a), abs(b), 1e-300)
                max_rel = max(max_rel, rel)
                if rel <= REL_TOLERANCE:
                    continue
            bad.append(f)
        if bad:
            if len(mismatched) < 5:
                mismatched.append({"window": list(k), "fields": {f: [o[f], p.get(f)] for f in bad}})
        else:
            within += 1
    n_bad = len(peer) - len(missing_in_ours) - identical - within
    return {
        "peer_windows": len(peer),
        "our_windows": len(ours),
        "compared": len(peer) - len(missing_in_ours),
        "bit_identical": identical,
        "equal_within_tolerance": within,
        "tolerance": f"relative {REL_TOLERANCE:g} on {', '.join(sorted(ROUNDED_FIELDS))}; every other field exact",
        "max_relative_difference": max_rel,
        "mismatched": n_bad,
        "mismatch_examples": mismatched,
        "peer_windows_not_in_ours": len(missing_in_ours),
        "closable_windows_not_in_peer": len(missing_in_peer),
        "equal": not missing_in_ours and not missing_in_peer and n_bad == 0 and len(peer) > 0,
    }


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (1 and 1.0 are not the same statistic); NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)
