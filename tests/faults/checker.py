"""The fault suite's one checker: what was sent, what Kafka acknowledged, what the store holds.

After a fault scenario it reads the readings topic from the beginning (every record there was
acknowledged by Kafka), the store the sinks wrote (a SQLite file, or PostgreSQL given its conninfo), and
the alerts topic, and reports:

- sent: frames the producer handed to Kafka (its own counter, or what the test produced);
- acked: distinct frames in the readings topic (natural key producer_id, device, seq);
- stored: distinct frames in the store; lost: acked but not stored;
- duplicated: the same thing stored twice (one device scan under two keys, one alert state change
  twice); `kafka_duplicates` counts repeated records in the topic, which at-least-once allows;
- KPI windows recomputed from the readings topic with processors/event_windows.py and compared with
  what the worker emitted or the sink stored (`kpi_check=skipped:<reason>` where no worker runs); with
  `oee`, the OEE windows likewise with processors/oee.py;
- with `sent_keys`/`refused`: every frame handed to the producer is acked or counted as refused (a
  full store-and-forward buffer), never both, never neither (`silently_lost`, `refused_but_acked`);
- with `bad`: every malformed record in the readings topic is in the dead-letter topic once, unchanged,
  with its reason; bad messages a producer refused locally are counted as `bad_refused`.

`Report.emit()` prints one line per scenario and, with PLANTSTREAM_FAULT_RESULTS=<file.json> set when
pytest starts, merges the figures into that file (tests' `clean_env` hides the variable later, so it is
read at import).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, TopicPartition
from psycopg.rows import dict_row

import schemas
from plantstream.core import kafka_clients, reporting, topics
from plantstream.core.config import Settings
from processors import event_windows
from processors import oee as oee_math
from sinks.stores import postgres as postgres_store
from sinks.stores.sqlite import KPI_COLUMNS, RECORD_COLUMNS

RESULTS_FILE = os.environ.get("PLANTSTREAM_FAULT_RESULTS")
SOAK = os.environ.get("PLANTSTREAM_SOAK", "") not in ("", "0", "false", "no")

FrameKey = tuple[str, str, int]  # producer_id, device, seq
KpiKey = tuple[str, str, int, int]  # asset, tag, window_start, window_end
OeeKey = tuple[str, int, int]  # asset, window_start, window_end
# the statistics of a KPI window: the stored columns after its natural key (asset, tag, start, end)
# revision: how often a window was emitted, not what it holds; the newest revision is compared
KPI_FIELDS = tuple(c for c in KPI_COLUMNS[4:] if c != "revision")
# an OEE window's figures: the stored columns after its natural key (asset, start, end)
OEE_FIELDS = tuple(c for c in RECORD_COLUMNS["oee_window"][1][3:] if c != "revision")


@dataclass
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any] | None  # None: not decodable with the topic's schema
    raw: bytes | None = None  # the bytes of an undecodable record (what its dead letter must carry)


def read_raw(settings: Settings, logical: str, timeout: float = 60.0) -> list[Message]:
    """Every message of a topic up to its current end, undecoded, in (partition, offset) order."""
    topic = settings.topic(logical)
    c = Consumer(kafka_clients.consumer_config(settings, f"fault-check-{os.getpid()}-{time.time_ns()}", "fault-check"))
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        out: list[Message] = []
        pos = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in parts}
        deadline = time.monotonic() + timeout
        while any(pos[p] < ends[p] for p in parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: still short of the end after {timeout}s ({pos} < {ends})")
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            part, off = m.partition() or 0, m.offset() or 0
            pos[part] = off + 1
            out.append(m)
    finally:
        c.close()
    out.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
    return out


def read_topic(settings: Settings, logical: str, schema: str, timeout: float = 60.0) -> list[TopicRecord]:
    """Every record of a topic up to its current end, in (partition, offset) order."""
    dec = kafka_clients.registry(settings).decoder(schema)
    out: list[TopicRecord] = []
    for m in read_raw(settings, logical, timeout):
        raw = m.value()
        try:
            value: dict[str, Any] | None = dec.decode(raw)
        except Exception:  # any undecodable record: the checker counts it, the worker dead-letters it
            value = None
        out.append(TopicRecord(m.partition() or 0, m.offset() or 0, m.key(), value, raw if value is None else None))
    return out


def frame_key(f: dict[str, Any]) -> FrameKey:
    return (f["producer_id"], f["device"], int(f["seq"]))


def recompute_kpis(settings: Settings, records: Iterable[TopicRecord]) -> dict[KpiKey, dict[str, Any]]:
    """The KPI windows a worker must close, replaying the readings topic in each partition's order.

    Mirrors the worker's contract: a record is applied once per offset (a redelivered offset is not
    counted again), undecodable records and frames whose key is not their asset are skipped.
    """
    size = settings.pipeline.windows.kpi_window_s * 1_000_000
    grace = int(settings.pipeline.windows.grace_s * 1_000_000)
    states: dict[str, event_windows.AssetState] = {}
    out: dict[KpiKey, dict[str, Any]] = {}
    for r in records:
        f = r.value
        if f is None or not f.get("asset") or (r.key is not None and r.key.decode("utf-8", "replace") != f["asset"]):
            continue
        st = states.setdefault(f["asset"], event_windows.new_state())
        for w in event_windows.apply_frame(st, f, size, grace, silence=reporting.silence_us(settings, f["asset"])):
            out[(w["asset"], w["tag"], w["window_start"], w["window_end"])] = w
    return out


def recompute_oee(settings: Settings, records: Iterable[TopicRecord]) -> dict[OeeKey, dict[str, Any]]:
    """The OEE windows a worker must close, replaying the readings topic in each partition's order (as
    `recompute_kpis`; assets without a machine_state tag have none)."""
    size = settings.pipeline.windows.kpi_window_s * 1_000_000
    grace = int(settings.pipeline.windows.grace_s * 1_000_000)
    states: dict[str, dict[str, Any]] = {}
    out: dict[OeeKey, dict[str, Any]] = {}
    for r in records:
        f = r.value
        if f is None or not f.get("asset") or (r.key is not None and r.key.decode("utf-8", "replace") != f["asset"]):
            continue
        prof = oee_math.profile_for(settings, f["asset"])
        if prof is None:
            continue
        for w in oee_math.apply_frame(states.setdefault(f["asset"], oee_math.new_state()), f, prof, size, grace):
            out[(w["asset"], w["window_start"], w["window_end"])] = w
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, dict):  # a map stored as JSON text
        a = json.loads(a)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


@dataclass
class KpiCheck:
    expected: int = 0
    got: int = 0
    missing: list[KpiKey] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)  # stored vs recomputed, first few mismatches
    unexpected: list[KpiKey] = field(default_factory=list)
    mismatched: list[KpiKey] = field(default_factory=list)
    duplicated: int = 0  # the same window emitted more than once (absorbed by the store's natural key)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def compare_kpis(expected: dict[KpiKey, dict[str, Any]], got: list[dict[str, Any]], *, complete: bool) -> KpiCheck:
    """`got` (emitted or stored windows) against the recomputation; `complete`: every expected one must be there."""
    return compare_windows(
        expected, got, lambda g: (g["asset"], g["tag"], g["window_start"], g["window_end"]), KPI_FIELDS, complete
    )


def compare_oee(expected: dict[OeeKey, dict[str, Any]], got: list[dict[str, Any]], *, complete: bool) -> KpiCheck:
    return compare_windows(
        expected, got, lambda g: (g["asset"], g["window_start"], g["window_end"]), OEE_FIELDS, complete
    )


def compare_windows(
    expected: dict[Any, dict[str, Any]],
    got: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], Any],
    fields: Iterable[str],
    complete: bool,
) -> KpiCheck:
    fields = tuple(fields)
    keys = Counter((key(g), g.get("revision") or 0) for g in got)
    newest: dict[Any, dict[str, Any]] = {}
    for g in got:  # a correction after late data supersedes the window's earlier revisions
        k = key(g)
        if k not in newest or (g.get("revision") or 0) > (newest[k].get("revision") or 0):
            newest[k] = g
    got = list(newest.values())
    check = KpiCheck(expected=len(expected), got=len(newest), duplicated=sum(n - 1 for n in keys.values()))
    for g in got:
        k = key(g)
        want = expected.get(k)
        if want is None:
            check.unexpected.append(k)
        elif not all(_same(g.get(f), want.get(f)) for f in fields):
            check.mismatched.append(k)
            if len(check.diffs) < 3:
                check.diffs.append({f: (g.get(f), want.get(f)) for f in fields if not _same(g.get(f), want.get(f))})
    if complete:
        check.missing = sorted(set(expected) - set(newest))
    check.unexpected = sorted(set(check.unexpected))
    check.mismatched = sorted(set(check.mismatched))
    return check


def stored_kpis(db: Path | str) -> list[dict[str, Any]]:
    return store_rows(db, "kpi_windows")


def is_postgres(db: Path | str) -> bool:
    """A str is a PostgreSQL conninfo; a Path is a SQLite file."""
    return isinstance(db, str)


def store_rows(db: Path | str, table: str) -> list[dict[str, Any]]:
    """Every row of a store table as dicts, timestamps as integer UTC microseconds in either store."""
    if not is_postgres(db):
        with sqlite3.connect(db) as c:
            c.row_factory = sqlite3.Row
            return [dict(r) for r in c.execute(f"SELECT * FROM {table}")]
    t = postgres_store.TABLES[table]
    cols = ", ".join(
        f"(extract(epoch FROM {c}) * 1000000)::bigint AS {c}" if typ == "timestamptz" else c for c, typ in t.columns
    )
    with psycopg.connect(str(db), row_factory=dict_row) as pg:
        return list(pg.execute(f"SELECT {cols} FROM {table}"))


def store_scalar(db: Path | str, sql: str) -> Any:
    """One value of a query that reads the same in SQLite and PostgreSQL."""
    if not is_postgres(db):
        with sqlite3.connect(db) as c:
            return c.execute(sql).fetchone()[0]
    with psycopg.connect(str(db)) as pg:
        row = pg.execute(sql).fetchone()
        return row[0] if row else None


@dataclass
class Report:
    scenario: str
    sent: int
    acked: int
    stored: int
    lost: int
    duplicated: int
    extra: dict[str, Any] = field(default_factory=dict)
    kpi: KpiCheck | None = None
    lost_keys: list[FrameKey] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "sent": self.sent,
            "acked": self.acked,
            "stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            **self.extra,
        }
        if self.kpi is not None:
            out.update(
                kpi_expected=self.kpi.expected,
                kpi_got=self.kpi.got,
                kpi_missing=len(self.kpi.missing),
                kpi_mismatched=len(self.kpi.mismatched),
                kpi_unexpected=len(self.kpi.unexpected),
            )
        return out

    def emit(self) -> Report:
        figs = self.figures()
        print("fault " + " ".join(f"{k}={v}" for k, v in figs.items()), flush=True)
        if RESULTS_FILE:
            record_result(Path(RESULTS_FILE), figs)
        return self

    def assert_ok(self) -> None:
        assert self.acked > 0, f"{self.scenario}: nothing was acknowledged, the scenario proved nothing"
        assert self.lost == 0, f"{self.scenario}: {self.lost} acked frame(s) not stored, e.g. {self.lost_keys[:3]}"
        assert self.duplicated == 0, f"{self.scenario}: {self.duplicated} duplicate(s) in storage: {self.extra}"
        assert self.extra.get("alerts_lost", 0) == 0, f"{self.scenario}: alert state changes not stored: {self.extra}"
        if "samples_stored" in self.extra:
            assert self.extra["samples_stored"] == self.extra["samples_acked"], (
                f"{self.scenario}: stored samples differ from the distinct samples acked: {self.extra}"
            )
        x = self.extra
        if "sent_not_acked" in x:
            assert x["acked_not_sent"] == 0, f"{self.scenario}: acked frames the scenario never sent: {x}"
            if "refused" in x:
                assert x["silently_lost"] == 0 and x["refused_but_acked"] == 0, (
                    f"{self.scenario}: frames sent but neither acked nor counted as refused, or counted as refused "
                    f"yet acked: {x}"
                )
            else:
                assert x["sent_not_acked"] == 0, f"{self.scenario}: frames sent but never acked: {x}"
        if "bad_sent" in x:
            assert x["bad_in_topic"] + x["bad_refused"] == x["bad_sent"], (
                f"{self.scenario}: bad messages sent = in the readings topic + refused by the producer does not "
                f"hold: {x}"
            )
            assert x["bad_not_deadlettered"] == 0, f"{self.scenario}: bad messages not dead-lettered: {x}"
            assert x["deadletter_altered"] == 0, f"{self.scenario}: dead letters differ from their source: {x}"
            assert x["deadletter_no_reason"] == 0, f"{self.scenario}: dead letters without ps-error/ps-stage: {x}"
            assert x["good_deadlettered"] == 0, f"{self.scenario}: decodable frames dead-lettered: {x}"
            assert x["deadletter_untraceable"] == 0, f"{self.scenario}: dead letters with no readings source: {x}"
        if "oee_expected" in x:
            assert x["oee_missing"] == x["oee_mismatched"] == x["oee_unexpected"] == 0, (
                f"{self.scenario}: OEE windows differ from a recomputation of the readings topic: {x}"
            )
        if self.kpi is not None:
            k = self.kpi
            assert k.ok, (
                f"{self.scenario}: KPI windows differ from a recomputation of the readings topic: missing "
                f"{k.missing[:3]} ({len(k.missing)}), mismatched {k.mismatched[:3]} ({len(k.mismatched)}), "
                f"unexpected {k.unexpected[:3]} ({len(k.unexpected)}); first differences (stored, recomputed): "
                f"{k.diffs}"
            )


def record_result(path: Path, figures: dict[str, Any]) -> None:
    """Merge one scenario's figures into a JSON list (replacing an earlier entry of that scenario)."""
    rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if r.get("scenario") != figures["scenario"]]
    rows.append({**figures, "soak": SOAK, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")


def _alert_figures(settings: Settings, db: Path | str) -> dict[str, int]:
    """Alert state changes: each (alert_id, state) in the topic must be stored, and stored once."""
    changes = {
        (r.value["alert_id"], r.value["state"])
        for r in read_topic(settings, topics.ALERTS, schemas.ALERT)
        if r.value is not None
    }
    stored = Counter((r["alert_id"], r["state"]) for r in store_rows(db, "alerts"))
    return {
        "alert_changes": len(changes),
        "alerts_lost": len(changes - set(stored)),
        "alerts_duplicated": sum(n - 1 for n in stored.values()),
    }


@dataclass(frozen=True)
class BadInput:
    """Malformed or oversized messages a scenario tried to put in the readings topic.

    `sent`: how many it tried; `refused`: how many of them a producer refused locally with an error
    (never reached Kafka). Every other one is in the readings topic and must be dead-lettered."""

    sent: int
    refused: int = 0


def _header(m: Message, name: str) -> bytes | None:
    hs = m.headers() or []
    for k, v in hs.items() if isinstance(hs, dict) else hs:  # a consumed message has a list of pairs
        if k == name:
            return v if isinstance(v, bytes) else (v.encode() if v is not None else None)
    return None


def _deadletter_figures(settings: Settings, records: list[TopicRecord], bad: BadInput) -> dict[str, int]:
    """Each undecodable readings record must be in the dead-letter topic, unchanged, with its reason.

    A dead letter names its source by headers (ps-source-topic/-partition/-offset); it is matched to
    the readings record at that place."""
    readings = settings.topic(topics.READINGS)
    bad_in_topic = {(r.partition, r.offset): r.raw or b"" for r in records if r.value is None}
    good_at = {(r.partition, r.offset) for r in records if r.value is not None}
    refs: Counter[tuple[int, int]] = Counter()
    altered = no_reason = foreign = 0
    for m in read_raw(settings, topics.DEADLETTER):
        topic, part, off = (_header(m, h) for h in ("ps-source-topic", "ps-source-partition", "ps-source-offset"))
        if topic is None or part is None or off is None or topic.decode() != readings:
            foreign += 1  # not traceable to a readings record
            continue
        ref = (int(part), int(off))
        refs[ref] += 1
        if ref in bad_in_topic and (m.value() or b"") != bad_in_topic[ref]:
            altered += 1
        if not _header(m, "ps-error") or not _header(m, "ps-stage"):
            no_reason += 1
    return {
        "bad_sent": bad.sent,
        "bad_refused": bad.refused,  # refused by the producer with an error: never in Kafka
        "bad_in_topic": len(bad_in_topic),
        "deadlettered": len(set(refs) & set(bad_in_topic)),
        "bad_not_deadlettered": len(set(bad_in_topic) - set(refs)),
        "deadletter_duplicates": sum(n - 1 for n in refs.values()),
        "deadletter_altered": altered,
        "deadletter_no_reason": no_reason,
        "good_deadlettered": len(set(refs) & good_at),
        "deadletter_untraceable": foreign + len(set(refs) - set(bad_in_topic) - good_at),
    }


def check_run(
    scenario: str,
    settings: Settings,
    sent: int,
    db: Path | str,
    *,
    kpis: bool = False,
    kpis_complete: bool = False,
    oee: bool = False,
    alerts: bool = False,
    sent_keys: Iterable[FrameKey] | None = None,
    refused: int | None = None,
    bad: BadInput | None = None,
    no_kpis: str | None = None,
    **extra: Any,
) -> Report:
    """Figures of one finished run: readings topic vs the store (and KPI windows, alerts when asked).

    `db`: the SQLite file, or a PostgreSQL conninfo (str).
    `kpis_complete`: the worker consumed the whole topic and the sink stored all it emitted, so every window
    the recomputation closes must be stored; otherwise only what is stored is compared. `oee`: the OEE
    windows too, with the same completeness.
    `sent_keys`: the frames the scenario handed to its producer; each must be acked or, up to
    `refused` of them (a producer's own count of frames it refused or dropped, e.g. a full
    store-and-forward buffer), counted as refused: none may vanish uncounted.
    `bad`: malformed input in the readings topic, checked against the dead-letter topic.
    `no_kpis`: why this scenario has no KPI windows to compare (e.g. no worker runs); printed as
    `kpi_check=skipped:<reason>` so the line says KPIs were not checked.
    """
    records = read_topic(settings, topics.READINGS, schemas.READING_FRAME)
    frames = [r.value for r in records if r.value is not None]
    in_topic = Counter(frame_key(f) for f in frames)
    stored_keys = {(r["producer_id"], r["device"], int(r["seq"])) for r in store_rows(db, "frames")}
    # one device scan stored under two keys (e.g. re-sent with a new sequence number)
    scan_dups = store_scalar(
        db, "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM frames GROUP BY asset, device, scan_time) x"
    )
    samples_stored = store_scalar(db, "SELECT COUNT(*) FROM samples")
    bad_stored = store_scalar(db, "SELECT COUNT(*) FROM samples WHERE quality = 2")
    sample_keys = {(f["asset"], s["tag"], s["source_time"]) for f in frames for s in f["samples"]}
    lost = sorted(set(in_topic) - stored_keys)
    figures: dict[str, Any] = {
        "kafka_duplicates": sum(n - 1 for n in in_topic.values()),
        "undecodable": len(records) - len(frames),
        "samples_acked": len(sample_keys),
        "samples_stored": samples_stored,
        "samples_bad_stored": bad_stored,
        "stored_not_acked": len(stored_keys - set(in_topic)),
        **extra,
    }
    if sent_keys is not None:
        handed = set(sent_keys)
        missing = len(handed - set(in_topic))
        figures["sent_not_acked"] = missing
        figures["acked_not_sent"] = len(set(in_topic) - handed)
        if refused is not None:
            figures["refused"] = refused
            figures["silently_lost"] = max(0, missing - refused)
            figures["refused_but_acked"] = max(0, refused - missing)
    elif refused is not None:
        figures["refused"] = refused
    if bad is not None:
        figures.update(_deadletter_figures(settings, records, bad))
    if no_kpis is not None:
        assert not kpis, "no_kpis: the scenario has no KPI windows, so do not ask for them to be compared"
        figures["kpi_check"] = f"skipped:{no_kpis}"
    duplicated = int(scan_dups)
    if alerts:
        a = _alert_figures(settings, db)
        figures.update(a)
        duplicated += a["alerts_duplicated"]
    kpi = compare_kpis(recompute_kpis(settings, records), stored_kpis(db), complete=kpis_complete) if kpis else None
    if oee:
        o = compare_oee(recompute_oee(settings, records), store_rows(db, "oee_windows"), complete=kpis_complete)
        figures.update(
            oee_expected=o.expected,
            oee_got=o.got,
            oee_missing=len(o.missing),
            oee_mismatched=len(o.mismatched),
            oee_unexpected=len(o.unexpected),
        )
        if o.diffs:
            figures["oee_diffs"] = o.diffs
    report = Report(scenario, sent, len(in_topic), len(stored_keys), len(lost), duplicated, figures, kpi, lost)
    return report
