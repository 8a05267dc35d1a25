"""Report by exception: deadbands (absolute, percent), quality changes, heartbeats."""

from __future__ import annotations

from producers.report_by_exception import ExceptionFilter, Rule

S = 1_000_000


def sample(tag: str, value: object, quality: str = "GOOD") -> dict:
    return {"tag": tag, "source_time": 0, "value": value, "quality": quality, "unit": ""}


def sent(f: ExceptionFilter, t_s: float, **values: object) -> list[str]:
    return [s["tag"] for s in f.filter([sample(k, v) for k, v in values.items()], int(t_s * S))]


def test_absolute_deadband_compares_with_the_last_sent_value() -> None:
    f = ExceptionFilter({"temp": Rule(deadband_abs=0.5)})
    assert sent(f, 0, temp=20.0) == ["temp"]  # first value always
    assert sent(f, 1, temp=20.4) == []
    assert sent(f, 2, temp=20.8) == ["temp"]  # 0.8 from the last *sent* (20.0), not from 20.4
    assert sent(f, 3, temp=20.4) == []
    assert sent(f, 4, temp=20.2) == ["temp"]


def test_percent_deadband_and_untouched_tags() -> None:
    f = ExceptionFilter({"flow": Rule(deadband_pct=10)})
    assert sent(f, 0, flow=100.0, other=1) == ["flow", "other"]
    assert sent(f, 1, flow=109.0, other=1) == ["other"]  # tags without a rule are sent every scan
    assert sent(f, 2, flow=111.0, other=1) == ["flow", "other"]


def test_heartbeat_resends_an_unchanged_value() -> None:
    f = ExceptionFilter({"state": Rule(heartbeat_s=10)})
    assert sent(f, 0, state=1) == ["state"]
    assert sent(f, 5, state=1) == []
    assert sent(f, 10, state=1) == ["state"]
    assert sent(f, 12, state=2) == ["state"]  # a change is sent at once
    assert sent(f, 21, state=2) == []
    assert sent(f, 22, state=2) == ["state"]


def test_quality_change_is_always_sent() -> None:
    f = ExceptionFilter({"p": Rule(deadband_abs=100)})
    assert f.filter([sample("p", 1.0)], 0)
    assert f.filter([sample("p", None, "BAD")], S) == [sample("p", None, "BAD")]  # the device died
    assert f.filter([sample("p", 1.0)], 2 * S)  # and came back


def test_from_tag_config() -> None:
    from plantstream.core.config import ModbusTag

    tags = [ModbusTag(name="a", address=0, deadband_abs=1.0), ModbusTag(name="b", address=1)]
    f = ExceptionFilter.for_tags(tags)
    assert f is not None and sent(f, 0, a=1.0, b=1) == ["a", "b"] and sent(f, 1, a=1.5, b=1) == ["b"]
    assert ExceptionFilter.for_tags([ModbusTag(name="b", address=1)]) is None
