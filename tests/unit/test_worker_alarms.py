"""The worker's alarm commands and live state with no broker: real Avro bytes in, the real stages and the
CommandProcessor, an in-memory output collector (the Kafka path: tests/integration/test_plant_model.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import DEMO_CONFIG, Settings, load_config
from plantstream.core.records import alarm_command, reading_frame, sample
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from processors import asset_twin
from processors.worker.commands import CommandProcessor, NotCopartitioned, check_copartitioned
from processors.worker.outputs import Collected
from processors.worker.processor import FrameProcessor, Message
from processors.worker.stage import Kind
from processors.worker.stages import Alarms, AssetConfig, AssetTwin, default_stages
from processors.worker.state import AssetStates, TableStore

S = 1_000_000
PRESS = "demo.springfield.stamping.line1.press1"
PARTITIONS = 6
FRAMES = Codec(schemas.READING_FRAME, 1)
COMMANDS = Codec(schemas.ALARM_COMMAND, 2)


def decoder(name: str) -> Decoder:
    return Decoder(lambda _id: schemas.schema_text(name), name)


@pytest.fixture
def settings(clean_env: None) -> Settings:
    return load_config(DEMO_CONFIG)


class Worker:
    def __init__(self, settings: Settings, data: dict | None = None) -> None:
        self.states = AssetStates("kpi-windows", {} if data is None else data)
        self.out = Collected()
        self.stats = RunStats("processor")
        stages = default_stages(settings, TableStore("anomaly-models", {}))
        self.alarms = next(s for s in stages if isinstance(s, Alarms))
        self.twin = next(s for s in stages if isinstance(s, AssetTwin))
        self.frames = FrameProcessor(
            decoder(schemas.READING_FRAME).decode, stages, self.states, self.out, self.stats, 5 * S
        )
        self.commands = CommandProcessor(
            decoder(schemas.ALARM_COMMAND).decode,
            self.states,
            self.alarms,
            self.twin,
            AssetConfig(settings),
            self.out,
            self.stats,
            PARTITIONS,
        )
        self.partition = topics.key_partition(PRESS, PARTITIONS)
        self.offset = 0
        self.cmd_offset = 0

    def frame(self, t: int, oil: float | None, state: int | None = 1, quality: str = "GOOD") -> None:
        f = reading_frame(
            asset=PRESS,
            device="press1-plc",
            seq=self.offset,
            producer_id="p",
            scan_time=t,
            samples=[
                sample("oil_temperature", t, oil, quality, unit="degC"),  # type: ignore[arg-type]
                sample("state", t, state, quality),  # type: ignore[arg-type]
            ],
        )
        self.frames.process_many([Message("r", self.partition, self.offset, PRESS.encode(), FRAMES.encode(f))])
        self.offset += 1

    def command(self, action: str, partition: int | None = None, offset: int | None = None, **kw: Any) -> None:
        c = alarm_command(
            command_id=kw.pop("command_id", f"c{self.cmd_offset}"),
            asset=kw.pop("asset", PRESS),
            rule=kw.pop("rule", "press-oil-hot"),
            action=action,  # type: ignore[arg-type]
            user=kw.pop("user", "alice"),
            role=kw.pop("role", "operator"),
            time=kw.pop("time", time.time_ns() // 1000),
            **kw,
        )
        p = self.partition if partition is None else partition
        o = self.cmd_offset if offset is None else offset
        self.commands.process("c", p, o, c["asset"].encode(), COMMANDS.encode(c))
        self.cmd_offset = max(self.cmd_offset, o + 1)

    def events(self) -> list[dict]:
        return [dict(r) for r in self.out.of(Kind.ALARM_EVENT)]

    def alarm_state(self) -> dict:
        return dict([r for r in self.out.of(Kind.ALARM_STATE) if r["rule"] == "press-oil-hot"][-1])


def hot_press(w: Worker, t0: int) -> None:
    for i in range(8):  # above 75 degC for 7 s: the 5 s rule raises
        w.frame(t0 + i * S, 80.0)


def test_an_alarm_raised_by_frames_is_acknowledged_by_a_command(settings: Settings) -> None:
    w = Worker(settings)
    t0 = time.time_ns() // 1000 - 60 * S
    hot_press(w, t0)
    raised = [a for a in w.out.of(Kind.ALERT) if a["rule"] == "press-oil-hot"]
    assert [(a["state"], a["suppression"]) for a in raised] == [("RAISED", "")]
    assert w.alarm_state()["state"] == "UNACK"
    w.command("ACKNOWLEDGE", alert_id=raised[0]["alert_id"], comment="checking the cooler")
    st = w.alarm_state()
    assert (st["state"], st["acked_by"], st["ack_comment"]) == ("ACKED", "alice", "checking the cooler")
    ev = w.events()[-1]
    assert (ev["event"], ev["command_id"], ev["user"]) == ("ACKNOWLEDGED", "c0", "alice")
    # the command's key is the alarm's asset; the alarm's state is keyed by the alarm
    assert [k for k, kind, _ in w.out.records if kind is Kind.ALARM_STATE][-1] == f"{PRESS}/press-oil-hot"
    # the asset's live state shows the open alarm at the next tick
    w.frames.advance({w.partition}, lambda a, s: None, time.time_ns() // 1000 + 2 * S)
    state = [r for r in w.out.of(Kind.STATE) if r["asset"] == PRESS][-1]
    assert {"rule": "press-oil-hot", "severity": "CRITICAL", "state": "ACKED"}.items() <= state["open_alarms"][
        0
    ].items()
    assert state["open_alarms_by_severity"] == {"CRITICAL": 1}


def test_a_redelivered_command_is_skipped_and_a_restart_keeps_the_lifecycle(settings: Settings) -> None:
    w = Worker(settings)
    hot_press(w, time.time_ns() // 1000 - 60 * S)
    w.command("SHELVE", shelve_duration_s=600, offset=0)
    n = len(w.events())
    w.command("SHELVE", shelve_duration_s=600, offset=0)  # the same message again after a crash
    assert len(w.events()) == n and w.stats.get("commands_skipped_redelivered") == 1
    data = {e.key: json.loads(e.value) for e in w.states.snapshot()}  # what the changelog holds
    again = Worker(settings, data)
    again.cmd_offset = 1
    again.command("UNSHELVE")
    assert again.alarm_state()["state"] == "UNACK"


def test_commands_that_cannot_apply_are_refused_never_crash(settings: Settings) -> None:
    w = Worker(settings)
    hot_press(w, time.time_ns() // 1000 - 60 * S)
    w.command("ACKNOWLEDGE", asset="demo.springfield.nowhere.line9.ghost1")
    w.command("ACKNOWLEDGE", partition=(w.partition + 1) % PARTITIONS)
    w.command("SHELVE")  # no duration
    w.command("ACKNOWLEDGE", role="viewer", user="token")
    w.commands.process("c", w.partition, 99, PRESS.encode(), b"\x00\x00\x00\x00\x02not a command")
    reasons = [e["reason"] for e in w.events() if e["event"] == "REJECTED"]
    assert reasons == [
        "unknown asset 'demo.springfield.nowhere.line9.ghost1': the plant config has no such asset",
        f"the command is on partition {(w.partition + 1) % PARTITIONS}, the asset's readings on partition "
        f"{w.partition}: produce it keyed by the asset path with librdkafka's default partitioner (CRC-32), "
        "or to that partition",
        "SHELVE needs shelve_duration_s: how long, in seconds (> 0)",
        "token (viewer) may not ACKNOWLEDGE: it needs operator or admin",
    ]
    assert len(w.out.dead_letters) == 1 and w.out.dead_letters[0][2]["ps-stage"] == b"processor.commands"
    assert w.alarm_state()["state"] == "UNACK"  # nothing applied


def test_a_planned_stop_suppresses_and_the_alert_is_not_annunciated(settings: Settings) -> None:
    w = Worker(settings)
    t0 = time.time_ns() // 1000 - 60 * S
    for i in range(8):
        w.frame(t0 + i * S, 80.0, state=3)  # PLANNED_STOP, hot
    raised = [a for a in w.out.of(Kind.ALERT) if a["rule"] == "press-oil-hot"]
    assert [(a["state"], a["suppression"]) for a in raised] == [("RAISED", "SUPPRESSED")]
    w.frame(t0 + 8 * S, 80.0, state=1)  # back to RUNNING: annunciated now
    raised = [a for a in w.out.of(Kind.ALERT) if a["rule"] == "press-oil-hot"]
    assert [(a["state"], a["suppression"]) for a in raised][-1] == ("RAISED", "")
    assert w.alarm_state()["state"] == "UNACK"


def test_the_live_state_goes_offline_after_the_allowed_silence(settings: Settings) -> None:
    w = Worker(settings)
    now = time.time_ns() // 1000
    w.frame(now - 2 * S, 50.0)
    w.frames.advance({w.partition}, lambda a, s: None, now)
    first = [r for r in w.out.of(Kind.STATE) if r["asset"] == PRESS][-1]
    assert first["online"] and first["machine_state"]["state"] == "RUNNING"
    assert {t["tag"]: t["value"] for t in first["tags"]} == {"oil_temperature": 50.0, "state": 1}
    w.frames.advance({w.partition}, lambda a, s: None, now + 30 * S)  # 10 s allowed: silent now
    last = [r for r in w.out.of(Kind.STATE) if r["asset"] == PRESS][-1]
    assert (last["online"], last["offline_reason"], last["offline_since"]) == (False, "silence", now - 2 * S + 10 * S)
    assert last["machine_state"] is None  # not known while offline
    # configured assets that never reported are announced once, offline, no data
    unseen = w.twin.unseen(set(range(PARTITIONS)), PARTITIONS, w.states.data, now)
    assert {a for a, _ in unseen} == {a.path for a in settings.plant.assets} - {PRESS}
    assert all(r["offline_reason"] == "no_data" for _, r in unseen)
    assert w.twin.unseen(set(range(PARTITIONS)), PARTITIONS, w.states.data, now) == []


def test_frames_of_only_bad_samples_say_device_down_not_silence(settings: Settings) -> None:
    """A reader whose device stops answering (or a Sparkplug death certificate) still sends frames, every
    sample BAD: beyond the allowed silence from the last GOOD report the asset is offline, device_down."""
    w = Worker(settings)
    now = time.time_ns() // 1000
    w.frame(now - 30 * S, 50.0)
    for i in range(29, 0, -1):
        w.frame(now - i * S, None, None, "BAD")
    w.frames.advance({w.partition}, lambda a, s: None, now + 2 * S)  # the interval since the last record passed
    last = [r for r in w.out.of(Kind.STATE) if r["asset"] == PRESS][-1]
    assert (last["online"], last["offline_reason"]) == (False, "device_down")
    assert (last["last_report"], last["offline_since"]) == (now - 30 * S, now - 20 * S)
    assert {t["tag"]: t["quality"] for t in last["tags"]} == {"oil_temperature": "BAD", "state": "BAD"}
    w.frames.advance({w.partition}, lambda a, s: None, now + 30 * S)  # and the frames stop too: silence
    assert [r for r in w.out.of(Kind.STATE) if r["asset"] == PRESS][-1]["offline_reason"] == "silence"


def test_the_state_goes_out_on_change_at_most_once_per_interval(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__STATE_TOPIC__INTERVAL_S", "60")
    w = Worker(load_config(DEMO_CONFIG))
    now = time.time_ns() // 1000

    def states() -> list[dict]:
        return [dict(r) for r in w.out.of(Kind.STATE) if r["asset"] == PRESS]

    for i in range(20):
        w.frame(now - (20 - i) * S // 10, 50.0 + i)
    assert len(states()) == 1  # the first frame announces the asset; the next 19 fall within the interval
    w.frames.advance({w.partition}, lambda a, s: None, now + 30 * S)
    assert len(states()) == 1
    w.frames.advance({w.partition}, lambda a, s: None, now + 61 * S)  # changed, interval passed: out
    assert len(states()) == 2 and {t["tag"]: t["value"] for t in states()[-1]["tags"]}["oil_temperature"] == 69.0
    w.frames.advance({w.partition}, lambda a, s: None, now + 125 * S)  # unchanged (offline already said)
    w.frames.advance({w.partition}, lambda a, s: None, now + 190 * S)
    assert len(states()) == 2


def test_the_state_holds_the_latest_anomaly_score_and_its_top_signals() -> None:
    twin = asset_twin.new_twin()
    t = 1_000 * S
    asset_twin.apply_frame(twin, reading_frame(asset=PRESS, device="d", seq=0, producer_id="p", scan_time=t,
                                               samples=[sample("a", t, 1.0), sample("b", t, 2.0)]))  # fmt: skip
    twin["anomaly"] = {
        "asset": PRESS, "time": t, "model": "multivariate", "score": 9.0, "threshold": 4.0, "is_anomaly": True,
        "warming_up": False, "contributions": {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.05},
    }  # fmt: skip
    rec = asset_twin.record(PRESS, twin, {}, None, {}, None, size=S, hop=S, now_us=t, limit_us=10 * S,
                            expected_interval_s=1.0)  # fmt: skip
    assert rec["anomaly"] is not None and (rec["anomaly"]["score"], rec["anomaly"]["is_anomaly"]) == (9.0, True)
    assert list(rec["anomaly"]["top_signals"]) == ["b", "c", "a"]


def test_a_commands_topic_with_other_partitions_is_refused() -> None:
    check_copartitioned(("r", 6), ("c", 6))
    with pytest.raises(NotCopartitioned, match="Fix: `plantstream topics apply`"):
        check_copartitioned(("r", 6), ("c", 3))
