"""plantstream/core/outage_log.py: one line per condition per interval, with a count; its end once; `forget` is
silent; other libraries' records limited by logger and message shape."""

from __future__ import annotations

import logging
import uuid

import pytest

from plantstream.core.outage_log import OutageLog, RateLimitFilter, limit_logging


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_condition_is_logged_at_once_then_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog(logging.getLogger("t.outage"), interval_s=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.outage"):
        for i in range(1000):  # ten a second for 100 s
            clock.t = i / 10
            outage.report("down", "Kafka at %s is unreachable", "127.0.0.1:9092")
        outage.report("other", "a second condition")
        assert outage.resolved("down", "Kafka answers again")
        assert not outage.resolved("down", "Kafka answers again")  # reported once only
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Kafka at 127.0.0.1:9092 is unreachable",
        "Kafka at 127.0.0.1:9092 is unreachable (600 times in the last 60 s)",
        "a second condition",
        "Kafka answers again (after 1000 occurrences)",
    ]


def test_the_filter_limits_only_the_named_loggers_and_only_warnings() -> None:
    clock = Clock()
    limiter = RateLimitFilter(interval_s=60, clock=clock, prefixes=("aiokafka",))
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    handler = Keep()
    handler.addFilter(limiter)
    # loggers of their own: a CLI test may have put the process-wide limiter on the real ones
    conn = logging.getLogger(f"aiokafka.conn.{uuid.uuid4().hex}")
    ours = logging.getLogger(f"plantstream.{uuid.uuid4().hex}")
    for logger in (conn, ours):
        logger.propagate = False
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    conn.addFilter(limiter)  # on the logger and on the handler: judged once
    for i in range(700):
        clock.t = i / 10
        conn.error("Unable connect to node with id %s: %s", 1, "Connection refused")
        conn.info("reconnecting")  # below WARNING: not limited
        ours.warning("ours %d", i % 2)
    errors = [g for g in got if "Unable" in g]
    assert errors == [
        "Unable connect to node with id 1: Connection refused",
        "Unable connect to node with id 1: Connection refused [600 like this in the last 60 s]",
    ]
    assert sum("reconnecting" in g for g in got) == 700
    assert sum("ours" in g for g in got) == 700


def test_limit_logging_is_idempotent() -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        a = limit_logging(("aiokafka",))
        b = limit_logging(("aiokafka",))
        assert a is b and handler.filters.count(a) == 1
        assert logging.getLogger("aiokafka.conn").filters.count(a) == 1
    finally:
        root.removeHandler(handler)
        logging.getLogger("aiokafka.conn").removeFilter(a)


def test_preformatted_messages_that_differ_only_in_numbers_count_as_one_condition() -> None:
    clock = Clock()
    limiter = RateLimitFilter(interval_s=60, clock=clock, prefixes=("librdkafka",))

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, msg, args, None)

    # librdkafka's lines come as "%s [%s] %s" with the text preformatted
    lines = [
        (
            "FAIL",
            "rdkafka#producer-1",
            f"127.0.0.1:{p}/bootstrap: Connect to ipv4#127.0.0.1:{p} failed: "
            f"Connection refused (after {ms}ms in state CONNECT)",
        )
        for p, ms in ((40123, 0), (40123, 1), (40123, 0), (40123, 2))
    ]
    passed = [limiter.filter(record("%s [%s] %s", *line)) for line in lines]
    assert passed == [True, False, False, False]
    assert limiter.filter(record("%s [%s] %s", "SSL", "rdkafka#producer-1", "SSL handshake failed"))


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
