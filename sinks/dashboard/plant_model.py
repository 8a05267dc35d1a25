"""The plant's live model as the dashboard and its read API see it: plant.state.v1 and plant.alarm-state.v1
read from their beginning (compacted: the newest record per key is the asset's or alarm's state), and
plant.alarm-events.v1 from its end (the outcomes of the commands this dashboard sends).

Contract: a thread keeps `assets` (asset path -> AssetState record) and `alarms` (alarm id -> AlarmState
record) current, and calls `on_change(kind, record)` for each new one ("asset_state", "alarm_state",
"alarm_event"). `ready` is set once both compacted topics were read to the ends they had at start: the
whole plant, in one pass. `expect(command_id)` returns a future that gets the AlarmEvent answering the
command (its transition, or REJECTED with the reason). It joins no group (assigns every partition), as
the live feed does, and commits nothing: a restarted dashboard reads the compacted topics again.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

import schemas
from plantstream.core import alarm_figures, kafka_clients, logs, topics
from plantstream.core.config import Settings
from plantstream.core.serde import DecodeError

log = logs.get(__name__)

# topic base -> (kind, reader schema, from the beginning)
FEEDS = {
    topics.STATE: ("asset_state", schemas.ASSET_STATE, True),
    topics.ALARM_STATE: ("alarm_state", schemas.ALARM_STATE, True),
    topics.ALARM_EVENTS: ("alarm_event", schemas.ALARM_EVENT, False),
}

OnChange = Callable[[str, dict[str, Any]], None]


class PlantModel:
    def __init__(self, settings: Settings, on_change: OnChange | None = None) -> None:
        self.settings = settings
        self.on_change = on_change
        self.assets: dict[str, dict[str, Any]] = {}
        self.alarms: dict[str, dict[str, Any]] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None
        self._lock = threading.Lock()
        self._waiting: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}
        self.thread = threading.Thread(target=self._run, name="dashboard-plant-model", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)

    # --- reads (any thread) ---

    def asset(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            return self.assets.get(path)

    def all_assets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.assets[k] for k in sorted(self.assets)]

    def all_alarms(self, asset: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = [self.alarms[k] for k in sorted(self.alarms)]
        return rows if asset is None else [r for r in rows if r["asset"] == asset]

    def alarm(self, asset: str, rule: str) -> dict[str, Any] | None:
        with self._lock:
            return self.alarms.get(f"{asset}/{rule}")

    def acks(self) -> dict[str, dict[str, Any]]:
        """alert_id -> its acknowledgement, for incidents that are the current ones of their alarms."""
        with self._lock:
            rows = list(self.alarms.values())
        return {
            a["alert_id"]: {"acked_at": a["acked_at"], "acked_by": a["acked_by"], "note": a["ack_comment"]}
            for a in rows
            if a["alert_id"] and a["acknowledged"] and a["acked_by"]
        }

    def figures(self, now_us: int) -> dict[str, Any]:
        return alarm_figures.figures(self.all_alarms(), now_us)

    # --- commands ---

    def expect(self, command_id: str) -> concurrent.futures.Future[dict[str, Any]]:
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self._lock:
            self._waiting[command_id] = fut
        return fut

    def forget(self, command_id: str) -> None:
        with self._lock:
            self._waiting.pop(command_id, None)

    # --- the thread ---

    def _take(self, kind: str, key: str | None, record: dict[str, Any] | None) -> None:
        with self._lock:
            if kind == "asset_state" and key is not None:
                if record is None:
                    self.assets.pop(key, None)  # a tombstone: the asset was removed
                else:
                    self.assets[key] = record
            elif kind == "alarm_state" and key is not None:
                if record is None:
                    self.alarms.pop(key, None)
                else:
                    self.alarms[key] = record
            elif kind == "alarm_event" and record is not None:
                fut = self._waiting.pop(record.get("command_id") or "", None)
                if fut is not None:
                    fut.set_result(record)
        if record is not None and self.on_change is not None:
            self.on_change(kind, record)

    def _run(self) -> None:
        s = self.settings
        if not kafka_clients.wait_for_broker(s, "dashboard", stop=self.stop):
            return
        registry = kafka_clients.registry(s)
        decoders = {s.topic(base): registry.decoder(schema) for base, (_k, schema, _b) in FEEDS.items()}
        kinds = {s.topic(base): kind for base, (kind, _s, _b) in FEEDS.items()}
        consumer = Consumer(kafka_clients.consumer_config(s, f"{s.pipeline.group_id}-dashboard-model", "dashboard"))
        try:
            ends = self._assign(consumer)
            while not self.stop.is_set():
                for m in consumer.consume(num_messages=500, timeout=0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("plant model consumer: %s", err)
                        continue
                    topic = m.topic() or ""
                    tp = (topic, m.partition() or 0)
                    if tp in ends and (m.offset() or 0) + 1 >= ends[tp]:
                        del ends[tp]
                    raw_key = m.key()
                    key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else None
                    value = m.value()
                    try:
                        record = None if value is None else decoders[topic].decode(value)
                    except DecodeError as e:
                        log.debug("skipping undecodable record on %s: %s", topic, e)
                        continue
                    self._take(kinds[topic], key, record)
                if not ends and not self.ready.is_set():
                    self.ready.set()
                    log.info("plant model: %d asset(s), %d alarm(s)", len(self.assets), len(self.alarms))
        except KafkaException as e:
            self.error = f"Kafka: {e}"
            log.error("plant model stopped: %s", e)
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> dict[tuple[str, int], int]:
        """Assign every partition of the three topics, waiting for the topics to exist; returns the end
        offsets of the compacted ones, to know when they have been read through."""
        s = self.settings
        while not self.stop.is_set():
            md = consumer.list_topics(timeout=10).topics
            names = {s.topic(base): begin for base, (_k, _s, begin) in FEEDS.items()}
            missing = sorted(n for n in names if n not in md or md[n].error is not None)
            if not missing:
                break
            self.error = f"waiting for topic(s) {', '.join(missing)} (created by `plantstream topics apply`)"
            self.stop.wait(5.0)
        self.error = None
        assigned: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for name, begin in names.items():
            for p in sorted(md[name].partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                assigned.append(TopicPartition(name, p, OFFSET_BEGINNING if begin else high))
                if begin and high > low:
                    ends[(name, p)] = high
        consumer.assign(assigned)
        return ends
