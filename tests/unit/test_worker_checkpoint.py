"""The Checkpoint and the per-record confirmation it rests on (processors/worker/checkpoint.py,
kafka_outputs.py), with a scripted stand-in for librdkafka's Producer: the test decides when each
delivery report comes, which a real broker does not let a test do.

The out-of-order test is the defect the sequence numbers fix: the earlier `Outputs.flush` waited until
the *count* of delivery reports reached the number of records sent before its mark. Reports of
records sent after the mark counted too, and librdkafka orders reports only within a partition, so a
report of a later record on another partition could stand in for an earlier unconfirmed one: that
flush returned here with record 0 unconfirmed (checked against the code before this change).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from processors.worker.checkpoint import Checkpoint
from processors.worker.kafka_outputs import DeliveryFailed, KafkaOutputs
from processors.worker.stage import Kind
from processors.worker.state import AssetState, AssetStates, TableStore


class Report:
    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


class ScriptedProducer:
    """produce() queues; the test delivers reports in the order it chooses; poll() serves them."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.sent: list[dict[str, Any]] = []  # every record librdkafka took, in order
        self.in_flight: list[dict[str, Any]] = []
        self.ready: list[tuple[dict[str, Any], Any]] = []  # reports waiting for a poll

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1, **kw: Any) -> None:
        if len(self.in_flight) >= self.capacity:
            raise BufferError("Local: Queue full")
        p = partition if partition >= 0 else (0 if key is None else len(key) % 2)
        rec = {"topic": topic, "key": key, "value": value, "partition": p, "cb": kw["on_delivery"], "n": len(self.sent)}
        self.sent.append(rec)
        self.in_flight.append(rec)

    def deliver(self, n: int, err: Any = None) -> None:
        rec = next(r for r in self.in_flight if r["n"] == n)
        self.in_flight.remove(rec)
        self.ready.append((rec, err))

    def deliver_all(self) -> None:
        for rec in list(self.in_flight):
            self.deliver(rec["n"])

    def poll(self, timeout: float = 0) -> int:
        ready, self.ready = self.ready, []
        for rec, err in ready:
            rec["cb"](err, Report(rec["topic"], rec["partition"]))
        return len(ready)

    def __len__(self) -> int:
        return len(self.in_flight)


class Enc:
    @staticmethod
    def encode(record: dict[str, Any]) -> bytes:
        return repr(sorted(record.items())).encode()


def outputs(producer: ScriptedProducer) -> KafkaOutputs:
    return KafkaOutputs(producer, {k: f"out.{k}" for k in Kind}, {k: Enc for k in Kind}, "deadletter")  # type: ignore[arg-type]


async def settled(task: asyncio.Task[Any], rounds: int = 5) -> bool:
    for _ in range(rounds):
        await asyncio.sleep(0.01)
    return task.done()


async def test_delivery_reports_out_of_order_across_partitions_do_not_confirm_an_earlier_record() -> None:
    producer = ScriptedProducer()
    out = outputs(producer)
    out.emit(b"a", Kind.KPI, {"n": 0})  # key length 1: partition 1
    out.emit(b"bb", Kind.KPI, {"n": 1})  # partition 0
    mark = out.mark()
    out.emit(b"bb", Kind.KPI, {"n": 2})  # after the mark, partition 0 again
    assert [r["partition"] for r in producer.sent] == [1, 0, 0]
    waiting = asyncio.create_task(out.confirmed(mark, timeout_s=5))
    producer.deliver(1)
    producer.deliver(2)  # two reports, as many as records before the mark: record 0 is still unconfirmed
    assert not await settled(waiting)
    producer.deliver(0)
    await asyncio.wait_for(waiting, 1)
    assert out.settled_below() == 3


async def test_a_refused_record_fails_the_confirmation() -> None:
    producer = ScriptedProducer()
    out = outputs(producer)
    out.emit(b"a", Kind.ALERT, {"n": 0})
    producer.deliver(0, err="Broker: Message size too large")
    with pytest.raises(DeliveryFailed, match="refused"):
        await out.confirmed(out.mark(), timeout_s=1)


async def test_an_unconfirmed_record_times_the_confirmation_out() -> None:
    out = outputs(ScriptedProducer())
    out.emit(b"a", Kind.OEE, {"n": 0})
    with pytest.raises(DeliveryFailed, match="1 records were not acknowledged"):
        await out.confirmed(out.mark(), timeout_s=0.05)


def checkpoint_of(producer: ScriptedProducer) -> tuple[KafkaOutputs, AssetStates, TableStore, Checkpoint]:
    out = outputs(producer)
    states = AssetStates("kpi-windows", {})
    models = TableStore("anomaly-models", {})
    topics = {"kpi-windows": "app-kpi-windows-changelog", "anomaly-models": "app-anomaly-models-changelog"}
    return out, states, models, Checkpoint(out, [states, models], topics, lambda key: f'"{key}"'.encode())


async def test_the_checkpoint_writes_state_only_after_its_outputs_and_returns_only_after_the_state() -> None:
    producer = ScriptedProducer()
    out, states, models, checkpoint = checkpoint_of(producer)
    state = states.create("a.b.c.d.e", 2)
    state.offset = 41
    states.changed("a.b.c.d.e", 2, state)
    models.changed("a.b.c.d.e", 2, lambda: {"model": 1})
    out.emit(b"a.b.c.d.e", Kind.KPI, {"n": 0})
    out.emit(b"a.b.c.d.e", Kind.ANOMALY, {"n": 1})
    persisting = asyncio.create_task(checkpoint.persist(timeout_s=5))
    assert not await settled(persisting)
    state.offset = 42  # the agent goes on: a change after the snapshot belongs to the next checkpoint
    out.emit(b"a.b.c.d.e", Kind.KPI, {"n": 2})
    producer.deliver(2)
    producer.deliver(0)
    assert not await settled(persisting)
    assert [r["topic"] for r in producer.sent] == ["out.kpi", "out.anomaly", "out.kpi"]  # no state yet
    producer.deliver(1)
    assert not await settled(persisting)  # state sent, not yet confirmed
    changelog = producer.sent[3:]
    assert [(r["topic"], r["partition"], r["key"]) for r in changelog] == [
        ("app-kpi-windows-changelog", 2, b'"a.b.c.d.e"'),
        ("app-anomaly-models-changelog", 2, b'"a.b.c.d.e"'),
    ]
    assert b'"offset":41' in changelog[0]["value"]
    producer.deliver_all()
    await asyncio.wait_for(persisting, 1)
    assert checkpoint.count == 1 and not states.has_changes()


async def test_checkpoints_do_not_overlap() -> None:
    producer = ScriptedProducer()
    out, states, _, checkpoint = checkpoint_of(producer)
    state = states.create("x", 0)
    states.changed("x", 0, state)
    out.emit(b"x", Kind.KPI, {"n": 0})
    first = asyncio.create_task(checkpoint.persist(timeout_s=5))
    await asyncio.sleep(0.01)
    state.offset = 7
    states.changed("x", 0, state)
    second = asyncio.create_task(checkpoint.persist(timeout_s=5))
    await asyncio.sleep(0.02)
    assert len(producer.sent) == 1  # the second checkpoint has not snapshotted behind the first's back
    for _ in range(20):
        producer.deliver_all()
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    offsets = [AssetState.from_json("x", json.loads(r["value"])).offset for r in producer.sent[1:]]
    assert offsets == [-1, 7]  # older snapshot first


async def test_a_full_queue_backs_off_without_blocking_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    producer = ScriptedProducer(capacity=3)
    out = outputs(producer)
    with caplog.at_level(logging.WARNING, logger="plantstream.processors.worker.kafka_outputs"):
        for n in range(10):
            out.emit(b"k", Kind.KPI, {"n": n})  # returns at once even with the queue full
    assert out.backlogged and len(producer.sent) == 3
    assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
    draining = asyncio.create_task(out.drain())
    ticks = 0
    while not draining.done():  # the loop keeps turning meanwhile
        ticks += 1
        producer.deliver_all()
        await asyncio.sleep(0.005)
    assert ticks > 1 and not out.backlogged
    assert [r["value"] for r in producer.sent] == [Enc.encode({"n": n}) for n in range(10)]  # order kept
    producer.deliver_all()
    await out.confirmed(out.mark(), timeout_s=1)
