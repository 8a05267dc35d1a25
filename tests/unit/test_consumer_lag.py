"""Lag of one partition, as `plantstream status`, /metrics and `up`'s drain check count it."""

from __future__ import annotations

from plantstream.core.consumer_lag import lag_by_topic, partition_lag


def test_the_position_counts_first_then_the_committed_offset() -> None:
    assert partition_lag(high=100, position=90, committed=50) == 10
    assert partition_lag(high=100, position=-1001, committed=50) == 50


def test_a_partition_never_committed_counts_from_the_start_of_the_log() -> None:
    assert partition_lag(high=100, position=-1, committed=-1001) == 100
    # retention deleted the first 80 records: only 20 are left to read (a drain check waiting for
    # 100 would wait for ever)
    assert partition_lag(high=100, position=-1, committed=-1001, low=80) == 20


def test_a_committed_offset_retention_overtook_resumes_at_the_low_watermark() -> None:
    assert partition_lag(high=100, position=-1, committed=10, low=80) == 20
    assert partition_lag(high=100, position=-1, committed=100, low=80) == 0


def test_an_unknown_high_watermark_is_no_figure() -> None:
    assert partition_lag(high=-1, position=5, committed=5) is None
    assert lag_by_topic([("a", None), ("a", 3), ("b", 2)], ["a", "b", "c"]) == {"a": 3, "b": 2, "c": 0}
