"""`plantstream train`: fit an asset's anomaly model on normal history and hand it to the worker.

History comes from a configured replay source (a historian export) or from the SQLite store (samples of a time
range, one frame per distinct timestamp). The model warms up on the first 60 % of the history and settles its
thresholds on the rest (`AnomalyStage.train`); the checkpoint goes where the worker restores models from: the
changelog topic of its `anomaly-models` table, keyed by the asset and in the asset's readings partition, as Faust
writes it. Stop the worker first: a running worker keeps the model it holds and writes it back at its next
checkpoint; the next start (or rebalance) restores the trained one. `--out` writes the checkpoint as JSON instead.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from plantstream.core import logs
from plantstream.core.config import ReplaySource, Settings
from plantstream.core.errors import ToolError
from processors.anomaly import AnomalyStage
from producers.replay import frames_from_batches, read_batches

log = logs.get(__name__)

Frame = Mapping[str, Any]


class TrainError(ToolError, RuntimeError):
    """Training cannot run as asked; the text names the fix."""


def models_changelog_topic(settings: Settings) -> str:
    """The changelog topic of the worker's anomaly-models table (Faust: <app id>-<table>-changelog)."""
    return f"{settings.pipeline.group_id}-processor-anomaly-models-changelog"


def readings_partition(asset: str, partitions: int) -> int:
    """The readings partition of an asset's frames: librdkafka's consistent_random (CRC-32 of the key)."""
    return zlib.crc32(asset.encode()) % partitions


def replay_frames(src: ReplaySource, asset: str) -> Iterator[Frame]:
    for f in frames_from_batches(src, read_batches(src), "train"):
        if f["asset"] == asset:
            yield f


def store_frames(path: str, asset: str, since_us: int | None, until_us: int | None) -> Iterator[Frame]:
    """Frames rebuilt from the SQLite store's samples of `asset`: one per distinct timestamp, in time order."""
    if not Path(path).is_file():
        raise TrainError(f"no SQLite store at {path}. Fix: pipeline.storage.sqlite_path, or train from --source")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT ts, tag, value_num, quality FROM samples WHERE asset = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (asset, since_us if since_us is not None else -(2**62), until_us if until_us is not None else 2**62),
        )
        frame: dict[str, Any] | None = None
        for ts, tag, value, quality in rows:
            if frame is None or frame["scan_time"] != ts:
                if frame is not None:
                    yield frame
                frame = {"asset": asset, "scan_time": ts, "samples": []}
            q = "GOOD" if quality == 0 else "UNCERTAIN" if quality == 1 else "BAD"
            frame["samples"].append({"tag": tag, "source_time": ts, "value": value, "quality": q})
        if frame is not None:
            yield frame
    finally:
        db.close()


def history(
    settings: Settings, asset: str, source: str | None, since_us: int | None, until_us: int | None
) -> tuple[Iterator[Frame], Iterator[Frame]]:
    """Two passes over the asset's history (the first counts it): from replay source `source`, or the store."""
    if source is not None:
        src = next((s for s in settings.replay if s.name == source), None)
        if src is None:
            raise TrainError(
                f"no replay source {source!r} in the config (configured: {[s.name for s in settings.replay]}). "
                "Fix: add it under replay:"
            )
        return replay_frames(src, asset), replay_frames(src, asset)
    storage = settings.pipeline.storage
    if storage.kind != "sqlite":
        raise TrainError(
            "training from the store reads the SQLite store only. Fix: export the asset's samples (COPY ... TO CSV) "
            "and train from a replay: source"
        )
    return (
        store_frames(storage.sqlite_path, asset, since_us, until_us),
        store_frames(storage.sqlite_path, asset, since_us, until_us),
    )


def train(
    settings: Settings, asset: str, source: str | None = None, since_us: int | None = None, until_us: int | None = None
) -> dict[str, Any]:
    """The trained model's checkpoint (AnomalyStage's format)."""
    counting, feeding = history(settings, asset, source, since_us, until_us)
    count = sum(1 for _ in counting)
    if count == 0:
        raise TrainError(f"asset {asset}: the history has no frames of this asset. Fix: check the asset path")
    try:
        return AnomalyStage(settings).train(asset, feeding, count)
    except ValueError as e:
        raise TrainError(str(e)) from e


def publish(settings: Settings, asset: str, state: dict[str, Any]) -> str:
    """Write the checkpoint to the worker's model changelog; -> the topic."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from plantstream.core import kafka_clients, topics

    topic = models_changelog_topic(settings)
    readings = settings.topic(topics.READINGS)
    admin = AdminClient(kafka_clients.admin_config(settings))
    meta = admin.list_topics(timeout=15)
    if readings not in meta.topics or meta.topics[readings].error is not None:
        raise TrainError(f"topic {readings} does not exist. Fix: `plantstream topics apply` (or start the pipeline)")
    partitions = len(meta.topics[readings].partitions)
    if topic not in meta.topics:
        # as the worker would create it: compacted, one partition per readings partition, replicated like it
        rep = topics.replication(settings, len(meta.brokers))
        spec = NewTopic(topic, partitions, rep.factor, config={"cleanup.policy": "compact", **rep.configs()})
        try:
            admin.create_topics([spec])[topic].result(30)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise TrainError(f"cannot create {topic}: {e}") from e
    elif len(meta.topics[topic].partitions) != partitions:
        raise TrainError(f"{topic} and {readings} differ in partitions: the worker would not find the model")
    producer = Producer(kafka_clients.producer_config(settings, "train"))
    # Faust's table changelog: JSON key and value, in the partition the asset's frames are read from (Faust writes
    # it there explicitly; the readings are keyed by the asset path with librdkafka's default consistent_random
    # partitioner, CRC-32 of the key)
    producer.produce(
        topic,
        key=json.dumps(asset).encode(),
        value=json.dumps(state, allow_nan=False).encode(),
        partition=readings_partition(asset, partitions),
    )
    if producer.flush(30) != 0:
        raise TrainError(f"the checkpoint was not confirmed by the broker within 30 s (topic {topic})")
    return topic
