"""The worker's per-frame path with no broker and no registry: real Avro bytes in, the real stages, an
in-memory output collector. Outputs equal the pure math run directly; a restart from the serialised
state continues exactly; bad messages and failing stages become dead letters without stopping anything."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

import schemas
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from plantstream.core.serde import Codec, Decoder
from plantstream.simulators.synthetic import SyntheticPlant
from processors import alert_rules, event_windows, oee
from processors.anomaly import AnomalyStage
from processors.worker.outputs import Collected
from processors.worker.processor import FrameProcessor, Message
from processors.worker.stage import Emit, FrameByFrame, Kind, Silence, StageFailure, Step
from processors.worker.stages import AlertRules, AssetConfig, default_stages
from processors.worker.state import WINDOW_KEYS, AssetState, AssetStates, TableStore

T0 = 1_767_225_600_000_000
WINDOW_S, GRACE_S = 10, 2
TOPIC = "plant.readings.v1"


def settings_for(plant: SyntheticPlant, **pipeline: Any) -> Settings:
    return Settings(
        **plant.config(),
        pipeline={"windows": {"kpi_window_s": WINDOW_S, "grace_s": GRACE_S}, "alerts": plant.alert_rules(), **pipeline},
    )


CODEC = Codec(schemas.READING_FRAME, 7)
DECODER = Decoder(lambda schema_id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)


def messages(frames: list[dict], first_offset: int = 0) -> list[Message]:
    return [Message(TOPIC, 0, first_offset + i, f["asset"].encode(), CODEC.encode(f)) for i, f in enumerate(frames)]


def frames_of(plant: SyntheticPlant, scans: int) -> list[dict]:
    return [plant.frame(a, T0 + s * 1_000_000) for s in range(scans) for a in range(len(plant.assets))]


# frames as dicts, or as columns where their layout allows (the worker's decoder): the same outputs
DECODES = pytest.mark.parametrize("decode", ["decode", "decode_frame"], ids=["dicts", "columns"])


def worker(
    settings: Settings,
    data: dict | None = None,
    models: dict | None = None,
    stages: Sequence[Any] | None = None,
    decode: str = "decode",
):
    states = AssetStates("kpi-windows", {} if data is None else data)
    model_store = TableStore("anomaly-models", {} if models is None else models)
    out = Collected()
    proc = FrameProcessor(
        getattr(DECODER, decode),
        default_stages(settings, model_store) if stages is None else stages,
        states,
        out,
        RunStats("processor"),
        GRACE_S * 1_000_000,
    )
    return proc, states, model_store, out


@DECODES
def test_outputs_equal_the_pure_math(decode: str) -> None:
    plant = SyntheticPlant(assets=2, tags=6, rate_hz=1.0)
    settings = settings_for(plant)
    frames = frames_of(plant, 700)  # an idle phase and OEE windows, the anomaly model past warm-up
    proc, _, _, out = worker(settings, decode=decode)
    for m in messages(frames):
        proc.process(*m)

    size, grace = WINDOW_S * 1_000_000, GRACE_S * 1_000_000
    config = AssetConfig(settings)
    want_kpi, want_oee, want_scores, want_alerts = [], [], [], []
    model = AnomalyStage(settings)
    win: dict[str, dict] = {}
    ost: dict[str, dict] = {}
    ast: dict[str, dict] = {}
    for f in frames:
        a = f["asset"]
        want_kpi += event_windows.apply_frame(win.setdefault(a, event_windows.new_state()), f, size, grace)
        prof = config.profile(a)
        assert prof is not None
        want_oee += oee.apply_frame(ost.setdefault(a, oee.new_state()), f, prof, size, grace)
        score = model.score(a, f)
        if score is not None:
            want_scores.append(score)
        rules = config.rules(a)
        st = ast.setdefault(a, alert_rules.new_state())
        want_alerts += alert_rules.apply_frame(st, rules, f, 0, prof.state_tags, prof.codes)
    assert out.of(Kind.KPI) == want_kpi and len(want_kpi) > 100
    assert out.of(Kind.OEE) == want_oee and want_oee
    assert out.of(Kind.ANOMALY) == want_scores and len(want_scores) == len(frames)
    assert [(r["rule"], r["state"]) for r in out.of(Kind.ALERT)] == [(r["rule"], r["state"]) for r in want_alerts]
    assert not out.dead_letters
    # every record keyed by its asset, an alarm's state by the alarm (compaction keeps one per alarm)
    assert all(key == (r["alarm"] if k is Kind.ALARM_STATE else r["asset"]) for key, k, r in out.records)
    assert {r["asset"] for r in out.of(Kind.STATE)} == {f["asset"] for f in frames}
    assert proc.stats.get("frames_in") == len(frames) and proc.stats.get("kpi_windows") == len(want_kpi)


@DECODES
def test_a_restart_from_the_serialised_state_continues_exactly(decode: str) -> None:
    plant = SyntheticPlant(assets=3, tags=5, rate_hz=1.0)
    settings = settings_for(plant)
    frames = frames_of(plant, 120)
    msgs = messages(frames)
    whole, _, _, out_whole = worker(settings)
    for m in msgs:
        whole.process(*m)

    cut = len(msgs) // 2 + 1
    first, states, models, out1 = worker(settings, decode=decode)
    for m in msgs[:cut]:
        first.process(*m)
    # what the changelog holds after a checkpoint, read back as Faust's recovery does (plain JSON)
    data = {e.key: json.loads(e.value) for e in states.snapshot()}
    model_data = {e.key: json.loads(e.value) for e in models.snapshot()}
    second, _, _, out2 = worker(settings, data, model_data, decode=decode)
    for m in msgs[cut - 7 :]:  # 7 redelivered: applied before the state was saved
        second.process(*m)
    assert second.stats.get("frames_skipped_redelivered") == 7
    for kind in (Kind.KPI, Kind.OEE, Kind.LATE):
        assert out1.of(kind) + out2.of(kind) == out_whole.of(kind), kind


def test_asset_state_keeps_the_layout_of_earlier_versions() -> None:
    old = {"wm": 5, "max_t": 7, "open": {"0": {}}, "offset": 41, "late": 1, "done": 3, "partition": 2}
    old |= {"oee": {"buckets": {}}, "alerts": {"rules": {}}, "from_a_newer_version": [1]}
    state = AssetState.from_json("a.b.c.d.e", old)
    assert (state.offset, state.partition, state.windows["done"]) == (41, 2, 3)
    assert state.to_json() == old
    assert "offset" not in state.windows


def test_undecodable_and_contract_breaking_messages_are_dead_letters() -> None:
    plant = SyntheticPlant(assets=1, tags=4, rate_hz=1.0)
    proc, _, _, out = worker(settings_for(plant))
    good = frames_of(plant, 3)
    proc.process(TOPIC, 0, 0, b"k", b"\x00\x00\x00\x00\x07garbage")
    proc.process(TOPIC, 0, 1, b"wrong.key", CODEC.encode(good[0]))
    proc.process(TOPIC, 0, 2, good[1]["asset"].encode(), CODEC.encode(good[1]))
    headers = [h for _, _, h in out.dead_letters]
    assert [h["ps-error-class"] for h in headers] == [b"DecodeError", b"ContractError"]
    assert {h["ps-stage"] for h in headers} == {b"processor"}
    assert [h["ps-source-offset"] for h in headers] == [b"0", b"1"]
    assert proc.stats.get("frames_in") == 1 and proc.stats.get("dead_letters") == 2


class Exploding(FrameByFrame):
    """A stage that raises on frames whose seq is in `bad`."""

    name = "exploding"

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.seen: list[int] = []

    def apply_frame(self, state: AssetState, frame: dict, step: Step) -> list[Emit]:
        if frame["seq"] in self.bad:
            raise ZeroDivisionError("model blew up")
        self.seen.append(frame["seq"])
        return []


def test_a_failing_stage_dead_letters_the_frame_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    plant = SyntheticPlant(assets=1, tags=4, rate_hz=1.0)
    settings = settings_for(plant)
    bomb = Exploding({3, 5, 9})
    stages = [*default_stages(settings, TableStore("anomaly-models", {}))]
    stages.insert(1, bomb)
    proc, states, _, out = worker(settings, stages=stages)
    frames = frames_of(plant, 40)
    with caplog.at_level(logging.ERROR, logger="plantstream.processors.worker"):
        for m in messages(frames):
            proc.process(*m)
    assert [int(h["ps-source-offset"]) for _, _, h in out.dead_letters] == [3, 5, 9]
    assert {h["ps-stage"] for _, _, h in out.dead_letters} == {b"processor.exploding"}
    assert {h["ps-error-class"] for _, _, h in out.dead_letters} == {b"ZeroDivisionError"}
    assert out.dead_letters[0][1] == CODEC.encode(frames[3])  # the message as it came
    assert len([r for r in caplog.records if "exploding" in r.getMessage()]) == 1  # once per cause
    assert proc.stats.get("stage_errors") == 3 and proc.stats.get("stage_errors.exploding") == 3
    # the other stages saw every frame: one anomaly score each, and the state is at the last offset
    assert len(out.of(Kind.ANOMALY)) == len(frames)
    state = states.get(frames[0]["asset"])
    assert state is not None and state.offset == len(frames) - 1


def test_a_stage_given_a_batch_names_the_frame_that_failed() -> None:
    plant = SyntheticPlant(assets=1, tags=4, rate_hz=1.0)
    bomb = Exploding({2, 4})
    proc, _, _, out = worker(settings_for(plant), stages=[bomb])
    frames = frames_of(plant, 6)
    proc.process_many(messages(frames))
    assert bomb.seen == [0, 1, 3, 5]
    assert [int(h["ps-source-offset"]) for _, _, h in out.dead_letters] == [2, 4]
    with pytest.raises(StageFailure) as failure:
        Exploding({1}).apply(AssetState("a", 0), frames[:3], Step(0, []))
    assert failure.value.index == 1 and isinstance(failure.value.cause, ZeroDivisionError)


def test_silence_closes_windows_and_stale_alerts_raise_on_owned_partitions_only() -> None:
    plant = SyntheticPlant(assets=2, tags=4, rate_hz=1.0)
    raw_rules = [{"name": "pv-stale", "asset": "bench.*.*.*.*", "kind": "stale", "tag": "pv00", "stale_after_s": 30}]
    settings = settings_for(plant, alerts=raw_rules)
    proc, states, _, out = worker(settings)
    frames = frames_of(plant, 25)
    for m in messages(frames):
        proc.process(*m)
    mine, theirs = plant.assets
    theirs_state = states.get(theirs)
    assert theirs_state is not None
    theirs_state.partition = 1  # as if a standby copy of another worker's asset
    before = len(out.of(Kind.KPI))
    now = time.time_ns() // 1000 + 10**9  # far past stale_after_s of wall clock
    assert proc.advance({0}, lambda asset, state: 60_000_000, now)
    closed = out.of(Kind.KPI)[before:]
    assert closed and {r["asset"] for r in closed} == {mine}
    assert {r["window_start"] for r in closed} == {T0 + 20_000_000}  # the window still open at 25 s
    alerts = out.of(Kind.ALERT)
    assert [(r["asset"], r["rule"], r["state"]) for r in alerts] == [(mine, "pv-stale", "RAISED")]
    assert proc.stats.get("kpi_windows_idle_closed") == len(closed)
    assert not proc.advance({0}, lambda asset, state: None, now + 1)  # nothing more to close or raise


def test_alert_rules_read_the_anomaly_scores_of_the_same_frames() -> None:
    plant = SyntheticPlant(assets=1, tags=4, rate_hz=1.0)
    asset = plant.assets[0]
    rule = {"name": "any-anomaly", "asset": asset, "kind": "anomaly", "score_above": -1.0}
    settings = settings_for(plant, alerts=[rule])
    stage = AlertRules(AssetConfig(settings))
    state = AssetState(asset, 0)
    frame = frames_of(plant, 1)[0]
    score = {"asset": asset, "time": frame["scan_time"], "score": 3.0, "is_anomaly": True, "warming_up": False}
    score |= {"model": "m", "threshold": 1.0, "contributions": {"pv00": 1.0}}
    raised = stage.apply(state, [frame], Step(0, [Emit(Kind.ANOMALY, score)]))
    assert [(e.kind, e.record["state"]) for e in raised] == [(Kind.ALERT, "RAISED")]
    assert stage.apply(state, [frame], Step(0, [])) == []


def test_a_table_store_serialises_each_changed_entry_once_at_snapshot_time() -> None:
    store = TableStore("anomaly-models", {})
    calls = []

    def value() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    store.changed("a", 3, value)
    store.changed("a", 3, value)
    store.changed("b", 1, {"x": 1})
    assert calls == []
    entries = store.snapshot()
    assert [(e.key, e.partition, orjson.loads(e.value)) for e in entries] == [("a", 3, {"n": 1}), ("b", 1, {"x": 1})]
    assert store.data == {"a": {"n": 1}, "b": {"x": 1}} and store.snapshot() == []
    assert Silence(0, None).idle_us is None


def test_frames_as_columns_in_batches_give_the_outputs_of_dicts_one_by_one() -> None:
    plant = SyntheticPlant(assets=3, tags=5, rate_hz=1.0)
    settings = settings_for(plant)
    frames = frames_of(plant, 300)
    # late frames (their windows long closed) among the rest: they go out as late samples
    for at in (400, 650, 651):
        old = plant.frame(at % 3, T0 + (at // 40) * 1_000_000)
        frames.insert(at, old)
    msgs = messages(frames)
    one, _, _, want = worker(settings)
    for m in msgs:
        one.process(*m)
    many, states, _, got = worker(settings, decode="decode_frame")
    for i in range(0, len(msgs), 37):
        many.process_many(msgs[i : i + 37])
    assert want.of(Kind.LATE) and len(want.of(Kind.KPI)) > 100
    # process_many groups frames by asset: per asset and kind, the same records in the same order
    for asset in plant.assets:
        # (the asset-state records follow the wall clock: not comparable between two runs)
        for kind in (Kind.KPI, Kind.OEE, Kind.ANOMALY, Kind.ALERT, Kind.LATE):
            mine = [orjson.dumps(r) for a, k, r in got.records if a == asset and k is kind]
            assert mine == [orjson.dumps(r) for a, k, r in want.records if a == asset and k is kind], (asset, kind)
    # the state serialises as the changelog's JSON, panes in the sample-by-sample form (the asset-state
    # and alarm stages note the time of a batch, so only the windows, OEE and alert rules are compared)
    keys = (*WINDOW_KEYS, "oee", "alerts", "offset")
    one_state = {e.key: [json.loads(e.value).get(k) for k in keys] for e in one.states.snapshot()}
    assert {e.key: [json.loads(e.value).get(k) for k in keys] for e in states.snapshot()} == one_state


def test_a_silence_closed_on_frames_as_columns_serialises_and_corrects_as_on_dicts() -> None:
    plant = SyntheticPlant(assets=2, tags=4, rate_hz=1.0)
    frames = frames_of(plant, 40)
    msgs = messages(frames)
    runs = []
    for decode in ("decode", "decode_frame"):
        proc, states, _, out = worker(settings_for(plant), decode=decode)
        for m in msgs[:50]:
            proc.process(*m)
        now = time.time_ns() // 1000
        assert proc.advance({0}, lambda asset, state: 10_000_000, now)  # a silence closes the open windows
        # the copy kept for a rollback goes to the changelog in its JSON form
        snap = {e.key: json.loads(e.value) for e in states.snapshot()}
        assert all(v["snap"] is not None for v in snap.values())
        for m in msgs[50:]:  # the data was only delayed: the closed windows are corrected
            proc.process(*m)
        end = {e.key: [json.loads(e.value).get(k) for k in WINDOW_KEYS] for e in states.snapshot()}
        runs.append((snap, end, [orjson.dumps(r) for r in out.of(Kind.KPI)]))
    (snap_d, end_d, kpi_d), (snap_c, end_c, kpi_c) = runs
    assert [[v.get(k) for k in WINDOW_KEYS] for v in snap_c.values()] == [
        [v.get(k) for k in WINDOW_KEYS] for v in snap_d.values()
    ]
    assert end_c == end_d and kpi_c == kpi_d and len(kpi_d) > 8
