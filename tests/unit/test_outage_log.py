"""OutageLog: a repeated condition is logged once per interval with a count, its end once; `forget` is silent."""

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


def test_repeats_are_held_back_and_counted_then_the_end_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    ol = OutageLog(logging.getLogger("t.outage"), interval_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.outage"):
        assert ol.report("down", "device %s: %s", "d", "timeout")
        for _ in range(3):
            clock.t += 5
            assert not ol.report("down", "device %s: %s", "d", "timeout")
        clock.t += 30
        assert ol.report("down", "device %s: %s", "d", "timeout")
        assert ol.active("down")
        assert ol.resolved("down", "device %s: OK again", "d") and not ol.resolved("down", "device %s: OK", "d")
    assert lines(caplog) == [
        "WARNING device d: timeout",
        "WARNING device d: timeout (4 times in the last 45 s)",
        "INFO device d: OK again (after 5 occurrences)",
    ]
    assert not ol.active("down")


def test_forget_drops_a_condition_without_a_line(caplog: pytest.LogCaptureFixture) -> None:
    ol = OutageLog(logging.getLogger("t.outage2"), clock=Clock())
    with caplog.at_level(logging.INFO, logger="t.outage2"):
        ol.report("a", "a")
        ol.forget("a")
        assert not ol.resolved("a", "a over")
        assert ol.report("a", "a again")  # a fresh condition: logged at once
    assert lines(caplog) == ["WARNING a", "WARNING a again"]
