"""Levels (RunStats.put) are Prometheus gauges with their labels; counts stay counters; consumer lag math."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from plantstream.core.consumer_lag import lag_by_topic, partition_lag
from plantstream.core.metrics import RunStatsCollector
from plantstream.core.runstats import RunStats


def scrape(stats: RunStats) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    registry = CollectorRegistry()
    registry.register(RunStatsCollector(stats))
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        out[fam.name] = (fam.type, {tuple(sorted(s.labels.items())): s.value for s in fam.samples})
    return out


def test_levels_are_gauges_with_labels_and_counts_stay_counters() -> None:
    stats = RunStats("sink-storage")
    stats.add("frames_stored", 5)
    stats.put("buffer_frames", 7)
    stats.put("consumer_lag_records", 40, topic="a")
    stats.put("consumer_lag_records", 2, topic="b")
    stats.put("consumer_lag_records", 0, topic="a")  # drained: a level goes down, which a counter never may
    stats.observe("store_batch_ms", 3.0)
    m = scrape(stats)
    assert m["plantstream_frames_stored"][0] == "counter"
    assert m["plantstream_frames_stored"][1] == {(("component", "sink-storage"),): 5.0}
    assert m["plantstream_buffer_frames"] == ("gauge", {(("component", "sink-storage"),): 7.0})
    kind, series = m["plantstream_consumer_lag_records"]
    assert kind == "gauge"
    assert series == {
        (("component", "sink-storage"), ("topic", "a")): 0.0,
        (("component", "sink-storage"), ("topic", "b")): 2.0,
    }
    assert m["plantstream_store_batch_ms"][0] == "gauge"
    # readers of the JSON file (plantstream up, the dashboard) see the sum under the plain name
    snap = stats.snapshot()
    assert snap["counts"]["consumer_lag_records"] == 2 and snap["counts"]["buffer_frames"] == 7


def test_a_level_keeps_its_label_names() -> None:
    stats = RunStats("x")
    stats.put("consumer_lag_records", 1, topic="a")
    with pytest.raises(ValueError, match="same label names"):
        stats.put("consumer_lag_records", 1)


@pytest.mark.parametrize(
    ("high", "position", "committed", "lag"),
    [
        (100, 40, -1001, 60),  # reading: high watermark - position
        (100, 100, 90, 0),  # caught up
        (100, -1001, 30, 70),  # not fetched yet: from the committed offset
        (100, -1001, -1001, 100),  # nothing committed: from the start of the log
        (-1001, 5, 5, None),  # watermark not known yet
        (10, 12, -1, 0),  # never negative (a watermark older than the position)
    ],
)
def test_partition_lag(high: int, position: int, committed: int, lag: int | None) -> None:
    assert partition_lag(high, position, committed) == lag


def test_lag_by_topic_sums_partitions_and_lists_every_topic() -> None:
    rows = [("a", 5), ("a", 7), ("b", None), ("c", 1)]
    assert lag_by_topic(rows, ["a", "b", "d"]) == {"a": 12, "b": 0, "c": 1, "d": 0}
