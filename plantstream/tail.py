"""`plantstream tail TOPIC`: any plantstream topic as JSON lines, decoded through the registry."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from datetime import datetime
from typing import IO, Any

from confluent_kafka import Consumer, TopicPartition

from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.serde import DecodeError


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, bytes):
        return base64.b64encode(o).decode()
    return str(o)


def _text(b: str | bytes | None) -> str | None:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def resolve_topic(settings: Settings, name: str) -> str:
    """Accept the full topic name or the base name without the configured prefix."""
    for spec in topics.TOPICS:
        if name in (spec.base, settings.topic(spec.base)):
            return settings.topic(spec.base)
    return name


def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    idle_timeout: float | None,
    out: IO[str] = sys.stdout,
    latest: bool = False,
) -> int:
    """Print the topic's messages as JSON lines; `latest`: the newest message per key as the topic holds it
    now (a compacted topic such as plant.state.v1: the whole plant), one line per key in key order."""
    topic = resolve_topic(settings, topic)
    spec = topics.spec_for(settings, topic)
    decoder = kafka_clients.registry(settings).decoder(keep_logical=True) if spec is None or spec.schema else None
    consumer = Consumer(
        kafka_clients.consumer_config(
            settings,
            f"plantstream-tail-{uuid.uuid4().hex[:8]}",
            "tail",
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
    )
    md = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        consumer.close()
        raise SystemExit(f"topic {topic!r} does not exist. Fix: `plantstream topics apply`, or check the name")
    consumer.assign([TopicPartition(topic, p, -2 if from_beginning or latest else -1) for p in md.partitions])
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    left = {p for p, end in ends.items() if end > 0}
    newest: dict[str | None, dict[str, Any]] = {}
    printed = 0
    last = time.monotonic()
    try:
        while (limit is None or printed < limit) and not (latest and not left):
            m = consumer.poll(0.5)
            if m is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            if m.error():
                continue
            last = time.monotonic()
            line: dict[str, Any] = {
                "topic": m.topic(),
                "partition": m.partition(),
                "offset": m.offset(),
                "timestamp_ms": m.timestamp()[1],
                "key": _text(m.key()),
            }
            if decoder is None:
                raw_headers = m.headers() or []
                pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                line["headers"] = {k: _text(v) for k, v in pairs}
                line["value_base64"] = base64.b64encode(m.value() or b"").decode()
            else:
                try:
                    line["value"] = decoder.decode(m.value())
                except DecodeError as e:
                    line["error"] = str(e)
            if latest:
                newest[line["key"]] = line
                if (m.offset() or 0) + 1 >= ends.get(m.partition() or 0, 0):
                    left.discard(m.partition())
                continue
            out.write(json.dumps(line, default=_json_default) + "\n")
            out.flush()
            printed += 1
    finally:
        consumer.close()
    for key in sorted(newest, key=lambda k: k or ""):
        if limit is not None and printed >= limit:
            break
        out.write(json.dumps(newest[key], default=_json_default) + "\n")
        printed += 1
    out.flush()
    return printed
