"""The bench's field-by-field comparison of the reference peer's KPI windows with ours."""

from __future__ import annotations

from typing import Any

from plantstream.bench.peer import STAT_FIELDS, compare_windows


def _stats(mean: float = 2.5, count: int = 4) -> dict[str, Any]:
    s: dict[str, Any] = dict.fromkeys(STAT_FIELDS)
    s.update(unit="bar", count=count, bad_count=0, min=1.0, max=4.0, mean=mean, stddev=1.118033988749895)
    s.update(first=1.0, last=4.0, first_time=0, last_time=3, time_weighted_avg=2.0, rate_of_change=1e6)
    return s


def test_identical_windows_are_equal_and_an_unclosable_one_of_ours_is_not_missing() -> None:
    ours = {("a", "t", 0, 10): _stats(), ("a", "t", 10, 20): _stats()}
    peer = {("a", "t", 0, 10): _stats()}
    r = compare_windows(ours, peer, closable=lambda k: k[3] <= 10)
    assert r["equal"] and r["bit_identical"] == 1 and r["closable_windows_not_in_peer"] == 0


def test_a_differing_count_a_missing_window_and_a_rounded_mean() -> None:
    ours = {("a", "t", 0, 10): _stats(), ("a", "u", 0, 10): _stats(), ("a", "v", 0, 10): _stats()}
    peer = {("a", "t", 0, 10): _stats(count=5), ("a", "v", 0, 10): _stats(mean=2.5 * (1 + 1e-12))}
    r = compare_windows(ours, peer, closable=lambda k: True)
    assert not r["equal"]
    assert r["mismatched"] == 1 and r["mismatch_examples"][0]["fields"] == {"count": [4, 5]}
    assert r["closable_windows_not_in_peer"] == 1  # ("a", "u", ...)
    assert r["equal_within_tolerance"] == 1 and 0 < r["max_relative_difference"] < 1e-9


def test_an_int_is_not_the_same_statistic_as_a_float() -> None:
    ours = {("a", "t", 0, 10): _stats()}
    theirs = _stats()
    theirs["min"] = 1
    r = compare_windows(ours, {("a", "t", 0, 10): theirs}, closable=lambda k: True)
    assert r["mismatched"] == 1 and not r["equal"]
