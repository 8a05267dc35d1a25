"""OutageLog: a repeated failure is logged once per interval, a new cause at once (per_cause), the end once."""

from __future__ import annotations

import logging

import pytest

from plantstream.core.outage_log import OutageLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records]


def test_repeats_are_held_back_and_counted_then_the_recovery_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    ol = OutageLog(logging.getLogger("t.outage"), "device 'd'", interval_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.outage"):
        assert ol.failed("timeout", "tags BAD")
        for _ in range(3):
            clock.t += 5
            assert not ol.failed("refused")  # not per cause: only the interval counts
        clock.t += 30
        assert ol.failed("timeout", "tags BAD")
        assert ol.failing and ol.cause == "timeout"
        assert ol.recovered("OK again") and not ol.recovered("OK again")
    assert lines(caplog) == [
        "WARNING device 'd': timeout; tags BAD (reported at most every 30 s)",
        "WARNING device 'd': timeout; tags BAD (3 more failure(s) since the last report) (reported at most every 30 s)",
        "INFO device 'd': OK again",
    ]
    assert not ol.failing


def test_per_cause_reports_a_new_cause_at_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    ol = OutageLog(logging.getLogger("t.outage2"), "s", per_cause=True, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.outage2"):
        assert ol.failed("a") and not ol.failed("a") and ol.failed("b")
    assert len(lines(caplog)) == 2
