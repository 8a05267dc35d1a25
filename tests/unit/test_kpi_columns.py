"""KPI windows from frames as columns equal, bit for bit, the windows of the same frames added one by one."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from plantstream.core.frame_codec import FrameColumns
from processors import event_windows, tag_stats
from processors.kpi_columns import PaneAccs

S = 1_000_000
TAGS = ("a", "b", "c")


def columns(
    asset: str, scan: int, tags: tuple[str, ...], times: list[int], values: list[float], q: list[int]
) -> FrameColumns:
    t = np.array(times, dtype=np.int64)
    return FrameColumns(
        asset=asset,
        device="d",
        seq=0,
        producer_id="p",
        scan_time=scan,
        historical=False,
        buffered=False,
        tags=tags,
        units=tuple("u" for _ in tags),
        times=t,
        values=np.array(values, dtype=np.float64),
        quality=np.array(q, dtype=np.uint8),
        time_min=int(t.min()) if len(t) else scan,
        time_max=int(t.max()) if len(t) else scan,
    )


values_st = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), st.sampled_from([math.nan, math.inf, 0.0, -0.0, 1e15])
)


@st.composite
def frame_lists(draw: st.DrawFn) -> list[FrameColumns]:
    tags_of = [TAGS, ("a", "b"), ("c", "a", "a")]  # another layout, and a frame naming one tag twice
    frames = []
    t = draw(st.integers(min_value=0, max_value=30 * S))
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        t += draw(st.sampled_from([0, S // 10, S // 2, S, 3 * S, -2 * S, -8 * S]))  # late and out-of-order too
        t = max(t, 0)
        tags = draw(st.sampled_from(tags_of))
        spread = draw(st.sampled_from([0, 0, 0, S // 3, 2 * S]))  # mostly one time per frame; some across panes
        times = [t + k * spread // max(1, len(tags) - 1) for k in range(len(tags))]
        vals = [draw(values_st) for _ in tags]
        q = [draw(st.sampled_from([0, 0, 0, 1, 2])) for _ in tags]
        frames.append(columns("x.a.b.c.d", t, tags, times, vals, q))
    return frames


def as_json(x: Any) -> str:
    def enc(o: Any) -> Any:
        if isinstance(o, PaneAccs):
            return o.to_json()
        raise TypeError(type(o))

    return json.dumps(x, sort_keys=True, default=enc)


@settings(max_examples=300, deadline=None)
@given(frame_lists(), st.sampled_from([(10 * S, 10 * S), (10 * S, 5 * S), (4 * S, S)]), st.integers(0, 3 * S))
def test_columns_give_the_windows_late_samples_and_state_of_frames_one_by_one(
    frames: list[FrameColumns], size_hop: tuple[int, int], grace: int
) -> None:
    size, hop = size_hop
    one, late_one, closed_one = event_windows.new_state(), [], []
    for f in frames:
        closed_one += event_windows.apply_frame(one, f.to_frame(), size, grace, hop, late_one)
    cols, late_cols, closed_cols = event_windows.new_state(), [], []
    late_of: dict[int, list] = {}
    # in batches of varying size, as agent steps would give them
    i = 0
    for k in [1, 3, 7, 2, 40] * 10:
        if i >= len(frames):
            break
        late_of.clear()
        closed_cols += event_windows.apply_columns(cols, frames[i : i + k], size, grace, hop, late_of)
        for index in sorted(late_of):  # each frame's late samples, in frame order
            late_cols += late_of[index]
        i += k
    assert as_json(closed_cols) == as_json(closed_one)
    assert as_json(late_cols) == as_json(late_one)
    assert as_json(cols) == as_json(one)


def test_pane_accs_equal_tag_stats_add_and_round_trip_through_json() -> None:
    rng = np.random.default_rng(5)
    vals = rng.normal(1e6, 3.0, size=(50, 3))
    times = np.repeat(np.arange(50, dtype=np.int64)[:, None] * 100_000, 3, axis=1)
    accs = {t: tag_stats.new_acc("u") for t in TAGS}
    for i in range(50):
        for j, t in enumerate(TAGS):
            tag_stats.add(accs[t], int(times[i, j]), float(vals[i, j]), True)
    pane = PaneAccs()
    col = pane.columns(TAGS, ("u",) * 3)
    pane.add_block(col, vals[:20], times[:20], np.ones((20, 3), dtype=bool))
    restored = PaneAccs.from_accs(copy.deepcopy(pane.to_json()))
    restored.add_block(restored.columns(TAGS, ("u",) * 3), vals[20:], times[20:], np.ones((30, 3), dtype=bool))
    assert restored.to_json() == accs


def test_longs_and_booleans_as_columns_give_the_windows_of_the_records() -> None:
    import io

    import fastavro

    import schemas
    from plantstream.core.frame_codec import ColumnarDecoder
    from plantstream.core.records import reading_frame, sample
    from plantstream.core.serde import parse_internal

    parsed = parse_internal(schemas.schema_json(schemas.READING_FRAME))
    dec = ColumnarDecoder()
    records, cols = [], []
    for i in range(60):
        t = 1_000_000 * i
        f = dict(
            reading_frame(
                asset="x.a.b.c.d",
                device="d",
                seq=i,
                producer_id="p",
                scan_time=t,
                samples=[sample("count", t, 1000 + i), sample("run", t, i % 3 == 0), sample("pv", t, 0.5 * i)],
            )
        )
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, f)
        body = buf.getvalue()
        got = dec.decode(body)
        if got is None:
            assert dec.learn(body, fastavro.schemaless_reader(io.BytesIO(body), parsed, None))
            got = dec.decode(body)
        assert got is not None and got.kinds == ("l", "b", "d")
        records.append(f)
        cols.append(got)
    one, by_cols = event_windows.new_state(), event_windows.new_state()
    want = [w for f in records for w in event_windows.apply_frame(one, f, 10 * S, S)]
    got_windows = event_windows.apply_columns(by_cols, cols, 10 * S, S)
    assert as_json(got_windows) == as_json(want) and len(want) == 15


@settings(max_examples=200, deadline=None)
@given(
    frame_lists(),
    st.sampled_from([None, 2 * S]),
    st.sampled_from([None, 30 * S]),
    st.lists(st.sampled_from([0, 0, 5 * S, 25 * S, 60 * S]), min_size=10, max_size=10),
)
def test_columns_keep_coverage_and_corrections_after_a_silence(
    frames: list[FrameColumns], silence: int | None, allowed: int | None, idles: list[int]
) -> None:
    """With the asset's allowed silence and idle closes between batches (the worker's silence timer),
    frames as columns give the same windows (coverage, revisions) and state as frames one by one."""
    size, hop, grace = 10 * S, 5 * S, S
    one, cols = event_windows.new_state(), event_windows.new_state()
    closed_one: list = []
    closed_cols: list = []
    i = 0
    for k, idle in zip([1, 3, 7, 2, 40] * 2, idles, strict=True):
        batch = frames[i : i + k]
        i += k
        for f in batch:
            closed_one += event_windows.apply_frame(one, f.to_frame(), size, grace, hop, [], silence, allowed)
        closed_cols += event_windows.apply_columns(cols, batch, size, grace, hop, {}, silence, allowed)
        if idle:
            closed_one += event_windows.advance_idle(one, "x.a.b.c.d", size, grace, idle, hop, silence, allowed)
            closed_cols += event_windows.advance_idle(cols, "x.a.b.c.d", size, grace, idle, hop, silence, allowed)
    assert as_json(closed_cols) == as_json(closed_one)
    assert as_json(cols) == as_json(one)
