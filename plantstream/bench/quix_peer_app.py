"""The reference peer of `plantstream bench worker --peer quix`: a Quix Streams app computing the KPI windows.

Run by the bench with the interpreter of the peer's own virtualenv (quixstreams pins a confluent-kafka
older than plantstream's, so it cannot share our venv): `python quix_peer_app.py CONFIG.json`. It imports
nothing of plantstream. The app is the fastest correct one known for this job: key = asset, tumbling
event-time windows with a grace period, and a custom aggregator that takes a whole frame per update and
keeps, per tag, exactly the statistics of a plantstream KpiWindow with the same arithmetic in the same
order as processors/tag_stats.py (Welford mean and variance, step-interpolated time-weighted average),
so its windows can be compared with ours field by field. Frames are decoded with fastavro from the
Confluent wire format with the writer schema fetched by id and its logical types dropped, as ours are.

Progress goes to the `progress` file of the config once a second: {"updated": unix time, "samples_in": n}.
"""

from __future__ import annotations

import io
import json
import math
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Aggregator
from quixstreams.models.serializers import Deserializer
from quixstreams.models.topics import TopicConfig

HEADER = struct.Struct(">bI")
INF = math.inf


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


class FrameDeserializer(Deserializer):
    """Confluent-framed Avro -> dict, timestamps as int microseconds (no datetime objects)."""

    def __init__(self, registry_url: str) -> None:
        super().__init__()
        self.registry = SchemaRegistryClient({"url": registry_url})
        self.schemas: dict[int, Any] = {}

    def __call__(self, value: bytes, ctx: Any) -> Any:
        _magic, schema_id = HEADER.unpack_from(value)
        schema = self.schemas.get(schema_id)
        if schema is None:
            text = self.registry.get_schema(schema_id).schema_str or ""
            schema = self.schemas[schema_id] = fastavro.parse_schema(_strip_logical(json.loads(text)))
        return fastavro.schemaless_reader(io.BytesIO(memoryview(value)[HEADER.size :]), schema, None)


# per tag: [n, bad, unit, min, max, mean, m2, first, first_t, last, last_t, integ]
N, BAD, UNIT, MIN, MAX, MEAN, M2, FIRST, FIRST_T, LAST, LAST_T, INTEG = range(12)


class FrameStats(Aggregator):
    """Per-tag KpiWindow statistics of every sample of every frame in the window."""

    def initialize(self) -> dict[str, list[Any]]:
        return {}

    def agg(self, old: dict[str, list[Any]], new: Any, timestamp: int) -> dict[str, list[Any]]:
        for s in new["samples"]:
            acc = old.get(s["tag"])
            if acc is None:
                acc = old[s["tag"]] = [0, 0, s.get("unit", ""), None, None, 0.0, 0.0, None, None, None, None, 0.0]
            value = s["value"]
            x: float | None
            if s["quality"] != "GOOD":
                x = None
            elif type(value) is float:
                x = value if -INF < value < INF else None
            elif isinstance(value, bool):
                x = 1.0 if value else 0.0
            elif isinstance(value, int):
                x = float(value)
            else:
                x = None
            if x is None:
                acc[BAD] += 1
                continue
            t = s["source_time"]
            n = acc[N] + 1
            mean = acc[MEAN]
            delta = x - mean
            mean += delta / n
            acc[N] = n
            acc[MEAN] = mean
            acc[M2] += delta * (x - mean)
            if acc[MIN] is None or x < acc[MIN]:
                acc[MIN] = x
            if acc[MAX] is None or x > acc[MAX]:
                acc[MAX] = x
            if acc[FIRST_T] is None or t < acc[FIRST_T]:
                acc[FIRST], acc[FIRST_T] = x, t
            last_t = acc[LAST_T]
            if last_t is None or t >= last_t:
                if last_t is not None:
                    acc[INTEG] += acc[LAST] * (t - last_t)
                acc[LAST], acc[LAST_T] = x, t
        return old

    def result(self, value: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
        out = {}
        for tag, acc in value.items():
            n = acc[N]
            r: dict[str, Any] = {
                "unit": acc[UNIT],
                "count": n,
                "bad_count": acc[BAD],
                "min": acc[MIN],
                "max": acc[MAX],
                "mean": None,
                "stddev": None,
                "first": acc[FIRST],
                "last": acc[LAST],
                "first_time": acc[FIRST_T],
                "last_time": acc[LAST_T],
                "time_weighted_avg": None,
                "rate_of_change": None,
            }
            if n:
                r["mean"] = acc[MEAN]
                r["stddev"] = math.sqrt(max(acc[M2], 0.0) / n)
                span = acc[LAST_T] - acc[FIRST_T]
                if span > 0:
                    r["time_weighted_avg"] = acc[INTEG] / span
                    r["rate_of_change"] = (acc[LAST] - acc[FIRST]) / (span / 1e6)
                else:
                    r["time_weighted_avg"] = acc[LAST]
            out[tag] = r
        return out


def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    progress = Path(cfg["progress"])
    app = Application(
        broker_address=cfg["bootstrap"],
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        state_dir=cfg["state_dir"],
        loglevel="WARNING",
        # the same delivery guarantees as plantstream's producers
        producer_extra_config={"acks": "all", "enable.idempotence": True, "compression.type": "lz4"},
    )
    readings = app.topic(
        cfg["input_topic"],
        value_deserializer=FrameDeserializer(cfg["registry_url"]),
        timestamp_extractor=lambda value, headers, ts, ts_type: value["scan_time"] // 1000,
    )
    # windows carry their start as the Kafka timestamp: time retention would delete old ones at once
    output = app.topic(
        cfg["output_topic"],
        value_serializer="json",
        config=TopicConfig(num_partitions=cfg["partitions"], replication_factor=1, extra_config={"retention.ms": "-1"}),
    )
    seen = [0]

    def count(frame: dict[str, Any]) -> None:
        seen[0] += len(frame["samples"])

    def report() -> None:  # once a second, like plantstream's run statistics
        while True:
            time.sleep(1.0)
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(json.dumps({"updated": time.time(), "samples_in": seen[0]}))
            tmp.replace(progress)

    threading.Thread(target=report, daemon=True).start()

    sdf = app.dataframe(readings)
    sdf = sdf.update(count)
    sdf = sdf.tumbling_window(duration_ms=cfg["window_ms"], grace_ms=cfg["grace_ms"]).agg(kpi=FrameStats()).final()
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main(sys.argv[1])
