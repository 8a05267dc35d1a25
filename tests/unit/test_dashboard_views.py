"""The dashboard's pure parts behind what an operator reads: trend ranges, machine state and its timeline,
counter rates, OEE factors and why one is undefined, pipeline stages, users, sessions and sign-in limits."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plantstream.core import machine_state as ms
from plantstream.core.config import DashboardSettings, Settings, Shift, load_config
from plantstream.core.pipeline_status import Sample, rate_counter, stages
from sinks.dashboard import auth, machine, oee_view, ranges, users
from sinks.dashboard.history import sqlite_history
from sinks.dashboard.sessions import LoginLimiter, SessionStore
from sinks.stores.sqlite import SqliteStore
from tests.helpers import as_batch

US = 1_000_000
MIN = 60 * US
CODES = ms.DEFAULT_STATE_MAP
NOW = int(datetime(2026, 12, 7, 15, 0, tzinfo=UTC).timestamp()) * US


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# --- trend ranges ------------------------------------------------------------------------------


def test_bucket_width_follows_the_range_and_is_readable() -> None:
    assert ranges.nice_bucket_us(15 * MIN, 600) == 2 * US  # 1.5 s -> 2 s
    assert ranges.nice_bucket_us(ranges.DAY, 600) == 150 * US * 2  # 144 s -> 5 min
    assert ranges.nice_bucket_us(7 * ranges.DAY, 600) == 1800 * US  # 1008 s -> 30 min
    assert ranges.nice_bucket_us(60 * US, 600) == US  # never below a second
    for name in ranges.PRESETS:
        r = ranges.preset_range(name, NOW, 600)
        assert (r.end - r.start) / r.bucket_us <= 601 and r.start % r.bucket_us == 0


def test_default_range_fits_the_data() -> None:
    assert ranges.fitted_preset(NOW - 2 * MIN, NOW) == "15m"  # two minutes of data fill the chart
    assert ranges.fitted_preset(NOW - 40 * MIN, NOW) == "1h"
    assert ranges.fitted_preset(NOW - 5 * 60 * MIN, NOW) == "8h"
    assert ranges.fitted_preset(NOW - 3 * ranges.DAY, NOW) == "7d"
    assert ranges.fitted_preset(NOW - 3 * ranges.DAY, NOW, ranges.DAY) == "24h"  # history_hours caps it
    assert ranges.fitted_preset(None, NOW, ranges.DAY) == "24h"


def test_custom_range_is_checked() -> None:
    assert ranges.parse_custom(str(NOW - MIN), str(NOW + MIN), NOW) == (NOW - MIN, NOW)  # not past now
    with pytest.raises(ValueError, match="after start"):
        ranges.parse_custom(str(NOW), str(NOW - 1), NOW)
    with pytest.raises(ValueError, match="microseconds"):
        ranges.parse_custom("yesterday", "now", NOW)
    with pytest.raises(ValueError, match="31 days"):
        ranges.parse_custom(str(NOW - 40 * ranges.DAY), str(NOW), NOW)


# --- machine state --------------------------------------------------------------------------------


def test_state_names_and_since() -> None:
    assert machine.state_of(1, CODES) == {"state": "RUNNING", "reason": "", "code": 1}
    assert machine.state_of(4, CODES)["state"] == "UNPLANNED_STOP"  # type: ignore[index]
    assert machine.state_of(float("nan"), CODES) is None
    t = machine.StateTracker()
    assert t.take("a", 100, 1, CODES) and not t.take("a", 200, 1, CODES)
    assert t.current["a"]["since"] == 100 and not t.current["a"]["since_known"]
    t.seed("a", 40)  # the store knows it began earlier
    assert t.current["a"]["since"] == 40 and t.current["a"]["since_known"]
    assert t.take("a", 300, 3, CODES) and t.current["a"] == {
        "state": "PLANNED_STOP",
        "reason": "3",
        "code": 3,
        "since": 300,
        "since_known": True,
    }
    assert not t.take("a", 250, 2, CODES)  # older than the state shown: ignored


def test_timeline_segments_gaps_and_close() -> None:
    gap = 10 * US
    rows = [(5 * US, 1, None), (30 * US, 4, 29 * US), (80 * US, 4, 40 * US), (90 * US, 1, 89 * US)]
    segs = machine.timeline(rows, None, 0, 120 * US, gap, CODES)
    machine.close_timeline(segs, 100 * US, 120 * US, gap)
    got = [(s["start"] // US, s["end"] // US, s["state"]) for s in segs]
    assert got == [
        (0, 5, "NO_DATA"),  # nothing before the first sample
        (5, 30, "RUNNING"),
        (30, 50, "UNPLANNED_STOP"),  # last sample at 40 holds one gap, then silence
        (50, 80, "NO_DATA"),
        (80, 90, "UNPLANNED_STOP"),
        (90, 110, "RUNNING"),  # newest sample at 100: held for one gap
        (110, 120, "NO_DATA"),
    ]


def test_timeline_starts_with_the_state_before_the_range() -> None:
    segs = machine.timeline([(50 * US, 2, 45 * US)], (45 * US, 1), 48 * US, 60 * US, 10 * US, CODES)
    machine.close_timeline(segs, 58 * US, 60 * US, 10 * US)
    assert [(s["start"] // US, s["end"] // US, s["state"]) for s in segs] == [(48, 50, "RUNNING"), (50, 60, "IDLE")]


def test_state_changes_from_sqlite_equal_the_reference(tmp_path: Path) -> None:
    """LAG() in the database finds the same change points as walking every sample."""
    store = SqliteStore(tmp_path / "s.db")
    values = [1] * 30 + [4] * 10 + [1] * 20 + [3] * 5
    frames = [
        {
            "asset": "e.s.a.l.m",
            "device": "d",
            "seq": i,
            "producer_id": "p",
            "scan_time": NOW + i * US,
            "samples": [{"tag": "state", "source_time": NOW + i * US, "value": v, "quality": "GOOD"}],
        }
        for i, v in enumerate(values)
        if not 45 <= i < 55  # a 10 s silence inside the third run
    ]
    store.write(as_batch(frames, []))
    store.close()
    hist = sqlite_history(tmp_path / "s.db")
    rows, before, last = hist.state_changes("e.s.a.l.m", "state", NOW + 10 * US, NOW + 100 * US, 5 * US)
    assert before == (NOW + 9 * US, 1.0) and last == NOW + 64 * US
    assert [(t - NOW) // US for t, _v, _p in rows] == [10, 30, 40, 55, 60]  # first, changes, after the silence
    segs = machine.timeline(rows, before, NOW + 10 * US, NOW + 70 * US, 5 * US, CODES)
    machine.close_timeline(segs, last, NOW + 70 * US, 5 * US)
    assert [(s["start"] - NOW) // US for s in segs] == [10, 30, 40, 49, 55, 60, 69]
    assert [s["state"] for s in segs] == [
        "RUNNING",
        "UNPLANNED_STOP",
        "RUNNING",
        "NO_DATA",
        "RUNNING",
        "PLANNED_STOP",
        "NO_DATA",
    ]
    assert hist.value_since("e.s.a.l.m", "state", NOW + 62 * US, 3, 3600 * US) == NOW + 60 * US
    hist.close()
    assert sqlite3.sqlite_version_info >= (3, 25)  # window functions


def test_shift_calendar_views() -> None:
    cal = ms.calendar([Shift(name="early", start="06:00", end="14:00", breaks=[{"start": "10:00", "end": "10:30"}])])
    t = int(datetime(2026, 12, 7, 10, 15, tzinfo=UTC).timestamp()) * US
    cur = machine.current_shift(cal, t)
    assert cur["name"] == "early" and cur["start"] == t - (4 * 60 + 15) * MIN
    marks = machine.calendar_marks(cal, cur["start"], cur["end"])
    assert [(m["kind"], (m["end"] - m["start"]) // MIN) for m in marks] == [("BREAK", 30)]
    assert machine.current_shift((), t)["note"].startswith("no shift calendar")
    assert [s["name"] for s in machine.last_shifts(cal, t, 3)] == ["early", "early", "early"]


def test_counter_rate_skips_resets() -> None:
    pts = [(i * US, float(v)) for i, v in enumerate([100, 101, 102, 0, 1, 2])]  # reset to 0 at 3 s
    assert machine.counter_rate_per_min(pts) == pytest.approx(4 / 5 * 60)
    assert machine.counter_rate_per_min(pts[:1]) is None
    c = machine.CounterRates(keep_us=3 * US)
    for t, v in pts:
        c.take("a", "n", t, v)
    c.take("a", "n", 5 * US, 99.0)  # not newer: ignored
    assert c.rates("a", ["n", "other"]) == {"n": pytest.approx(2 / 3 * 60), "other": None}  # kept: 2..5 s


def test_asset_machines_of_demo(clean_env: None) -> None:
    demo: Settings = load_config(None)
    m = machine.asset_machines(demo)
    press = m["demo.springfield.stamping.line1.press1"]
    assert press.state_tag == "state" and press.counters == ("strokes_total",)
    assert m["demo.springfield.utilities.water.pump1"].state_tag is None


# --- OEE --------------------------------------------------------------------------------------


def _win(pbt: float, apt: float, pq: float, gq: float, pri: float | None = 2.0) -> dict[str, object]:
    f = oee_view.factors(pbt, apt, pq, gq, pri)
    return {
        "asset": "a",
        "window_start": 0,
        "window_end": MIN,
        "planned_busy_time_s": pbt,
        "actual_production_time_s": apt,
        "produced_quantity": pq,
        "good_quantity": gq,
        "availability": f["availability"],
        "effectiveness": f["effectiveness"],
        "quality_ratio": f["quality"],
        "oee": f["oee"] if f["availability"] is not None and f["effectiveness"] is not None else None,
    }


def test_undefined_factors_say_why() -> None:
    brk = oee_view.undefined_reasons(_win(0, 0, 0, 0), 2.0, "BREAK")
    assert brk["availability"] == "planned break: no planned busy time"
    assert brk["effectiveness"].startswith("no production time") and brk["quality"] == "no parts produced"
    assert brk["oee"] == brk["availability"]
    assert "ideal cycle time" in oee_view.undefined_reasons(_win(60, 60, 10, 10, None), None)["effectiveness"]
    assert oee_view.undefined_reasons(_win(60, 50, 20, 19), 2.0) == {}
    assert "shift calendar" in oee_view.undefined_reasons(_win(0, 0, 0, 0), 2.0, "OFF")["availability"]


def test_shift_oee_from_sums_not_averages() -> None:
    windows = [_win(60, 60, 30, 30), _win(60, 0, 0, 0), _win(0, 0, 0, 0)]  # ran, stopped, on break
    got = oee_view.combine(windows, 2.0)
    assert got["availability"] == pytest.approx(0.5) and got["effectiveness"] == pytest.approx(1.0)
    assert got["quality"] == 1.0 and got["oee"] == pytest.approx(0.5)  # an average of ratios would say 1.0
    down = oee_view.combine([_win(60, 0, 0, 0)], 2.0)
    assert down["oee"] == 0.0 and down["availability"] == 0.0  # PBT > 0, never ran: OEE is 0, not undefined
    assert down["reasons"]["effectiveness"].startswith("no production time")
    assert oee_view.combine([], 2.0)["reasons"] == {"oee": "no OEE window yet"}


# --- pipeline health --------------------------------------------------------------------------


def _sample(runs: dict[str, dict[str, object]], wall: float, lag: dict[str, dict[str, int]]) -> Sample:
    return Sample(0.0, "b", {}, {}, {}, lag, runs, wall)


def test_stages_state_rate_and_lag() -> None:
    earlier = {"processor": {"pid": 1, "updated": 100.0, "counts": {"frames_in": 100}}}
    cur = _sample(
        {
            "processor": {"pid": 1, "updated": 102.0, "counts": {"frames_in": 300, "dead_letters": 3}},
            "producer-modbus": {"pid": 9, "updated": 80.0, "counts": {"frames_acked": 5, "buffer_frames": 7}},
            "sink-storage": {"pid": 8, "updated": 102.0, "counts": {"samples_stored": 10}},
            "dashboard": {"pid": 3, "updated": 102.0, "counts": {}},
        },
        103.0,
        {"ps-processor": {"t": 4, "u": 1}},
    )
    alive = {"processor": True, "producer-modbus": True, "sink-storage": False}
    got = {s["component"]: s for s in stages(earlier, cur, "ps", alive)}
    assert set(got) == {"processor", "producer-modbus", "sink-storage"}
    assert got["processor"]["state"] == "running" and got["processor"]["rate_per_s"] == 100.0
    assert got["processor"]["lag"] == 5 and got["processor"]["dead_letters"] == 3
    assert got["producer-modbus"]["state"] == "stale" and got["producer-modbus"]["buffered"] == 7
    assert got["producer-modbus"]["lag"] is None and got["producer-modbus"]["rate_per_s"] is None
    assert got["sink-storage"]["state"] == "stopped"
    assert rate_counter("processor-2") == "frames_in" and rate_counter("producer-opcua") == "frames_acked"


# --- who is at the page -------------------------------------------------------------------------


def test_exposure_needs_authentication() -> None:
    auth.check_exposure(DashboardSettings(host="127.0.0.1"))
    auth.check_exposure(DashboardSettings(host="::1"))
    auth.check_exposure(DashboardSettings(host="0.0.0.0", users_file="users.yaml"))
    auth.check_exposure(DashboardSettings(host="0.0.0.0", token="t"))
    with pytest.raises(auth.ExposureError, match="users_file"):
        auth.check_exposure(DashboardSettings(host="0.0.0.0"))
    with pytest.raises(auth.ExposureError):
        auth.check_exposure(DashboardSettings(host="plant-server.local"))
    for host in ("0.0.0.0", "127.0.0.1"):  # an empty token is no authentication, and no "no token" either
        with pytest.raises(auth.ExposureError, match="token is set but empty"):
            auth.check_exposure(DashboardSettings(host=host, token=" "))


def test_users_file_hashes_verifies_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    users.upsert(path, "ann", "operator", "correct horse")
    text = path.read_text()
    assert "correct horse" not in text and "$argon2id$" in text
    assert path.stat().st_mode & 0o777 == 0o600
    f = users.UsersFile(path)
    ann = f.verify("ann", "correct horse")
    assert ann == users.User("ann", "operator", "session") and ann.can("ack") and not ann.can("admin")
    assert f.verify("ann", "wrong") is None and f.verify("nobody", "correct horse") is None
    users.upsert(path, "bob", "viewer", "battery staple")
    assert f.role_of("bob") == "viewer"  # re-read on change
    assert not users.User("bob", "viewer", "session").can("ack")
    assert users.remove(path, "ann") and f.role_of("ann") is None
    with pytest.raises(ValueError, match="8 characters"):
        users.upsert(path, "cy", "viewer", "short")


def test_users_file_errors_name_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "u.yaml"
    bad.write_text("users:\n  - {name: ann, role: boss, password_hash: $argon2id$x}\n")
    with pytest.raises(users.UsersFileError, match=r"users\[0\] \(ann\): role must be one of viewer"):
        users.UsersFile(bad)
    bad.write_text("users:\n  - {name: ann, role: viewer, password_hash: plain}\n")
    with pytest.raises(users.UsersFileError, match="argon2 hash"):
        users.UsersFile(bad)
    with pytest.raises(users.UsersFileError, match="does not exist"):
        users.UsersFile(tmp_path / "absent.yaml")


def test_sessions_expire_idle_and_at_max_age() -> None:
    clock = Clock()
    s = SessionStore(idle_s=60, max_s=300, clock=clock)
    sid = s.create("ann")
    clock.t += 50
    assert s.get(sid) is not None  # use restarts the idle timer
    clock.t += 50
    assert s.get(sid) is not None
    clock.t += 61
    assert s.get(sid) is None  # idle too long
    sid = s.create("ann")
    for _ in range(6):
        clock.t += 55
        got = s.get(sid)
    assert got is None  # 330 s after sign-in, in use all the time
    sid = s.create("bob")
    s.end(sid)
    assert s.get(sid) is None and s.get(None) is None and s.get("forged") is None


def test_login_limiter_per_address_and_name() -> None:
    clock = Clock()
    lim = LoginLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert lim.retry_after("addr:1", "user:ann") == 0
        lim.failed("addr:1", "user:ann")
    assert lim.retry_after("addr:1", "user:bob") == pytest.approx(60)  # this address is throttled
    assert lim.retry_after("addr:2", "user:ann") == pytest.approx(60)  # and this name, from anywhere
    assert lim.retry_after("addr:2", "user:bob") == 0
    clock.t += 30
    assert lim.retry_after("addr:1") == pytest.approx(30)
    clock.t += 31
    assert lim.retry_after("addr:1", "user:ann") == 0
    lim.failed("user:cy")
    lim.succeeded("user:cy")
    assert lim.retry_after("user:cy") == 0


def test_users_command_writes_hashes(tmp_path: Path, clean_env: None) -> None:
    from typer.testing import CliRunner

    from plantstream.cli import app

    path = tmp_path / "users.yaml"
    run = CliRunner().invoke
    got = run(
        app, ["users", "add", "ann", "--role", "operator", "--file", str(path), "--password-stdin"], "s3cret-pw\n"
    )
    assert got.exit_code == 0, got.output
    assert users.UsersFile(path).verify("ann", "s3cret-pw") is not None and "s3cret-pw" not in path.read_text()
    assert run(app, ["users", "list", "--file", str(path)]).output == "ann\toperator\n"
    bad = run(app, ["users", "add", "bob", "--role", "boss", "--file", str(path), "--password-stdin"], "long-enough\n")
    assert bad.exit_code == 2 and "role must be one of" in bad.output
    assert run(app, ["users", "remove", "ann", "--file", str(path)]).exit_code == 0
    assert run(app, ["users", "remove", "ann", "--file", str(path)]).exit_code == 1
