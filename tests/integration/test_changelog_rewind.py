"""faust_compat.rewind_dropped_changelogs against the real broker and aiokafka's real consumer: changelog
records that Faust's fetch loop drops because a rebalance suspended the flow are fetched again (without the
patch aiokafka's position stays past them, and a table recovery waiting for them waited for good).

Faust's consumer is not started: the test hands its `getmany` the batch aiokafka fetched, as its consumer
thread would, and runs the thread's event loop in this one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from processors.worker import faust_compat
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def fetched_changelog(stack: Stack) -> tuple[Any, AIOKafkaConsumer, TopicPartition, dict[Any, list[Any]]]:
    app = faust.App(f"rewind-{uuid.uuid4().hex[:8]}", broker=f"kafka://{stack.bootstrap}", web_enabled=False)
    table = app.Table("t", default=None, partitions=1)
    topic = table.changelog_topic.get_topic_name()
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": stack.bootstrap})
    for i in range(10):
        p.produce(topic, key=f'"k{i % 3}"'.encode(), value=str(i).encode())
    assert p.flush(30) == 0
    tp = TopicPartition(topic, 0)
    aio = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await aio.start()
    aio.assign([tp])
    aio.seek(tp, 0)  # the recovery's seek to where the table starts
    batch: dict[Any, list[Any]] = {}
    while sum(len(v) for v in batch.values()) < 10:
        for k, v in (await aio.getmany(tp, timeout_ms=5000)).items():
            batch.setdefault(k, []).extend(v)
    assert await aio.position(tp) == 10  # aiokafka handed them out
    consumer: Any = app.consumer
    consumer._thread._consumer = aio
    consumer._thread.thread_loop = asyncio.get_running_loop()

    async def next_records(timeout: float) -> Any:
        return batch, {tp}

    async def seek_to_committed() -> dict[Any, int]:
        return {}  # changelog partitions have no committed offset

    consumer._wait_next_records = next_records
    consumer.seek_to_committed = seek_to_committed
    return consumer, aio, tp, batch


async def drain(consumer: Any) -> list[int]:
    return [m.offset async for _, m in consumer.getmany(timeout=1.0)]


async def test_unpatched_a_dropped_changelog_batch_is_never_fetched_again(stack: Stack) -> None:
    consumer, aio, tp, _ = await fetched_changelog(stack)
    try:
        consumer.stop_flow()  # a rebalance suspends the flow while the batch is on its way
        assert await drain(consumer) == []
        await asyncio.sleep(0.1)
        assert await aio.position(tp) == 10  # the table recovery waits for offsets 0-9 for good
    finally:
        await aio.stop()


async def test_a_dropped_changelog_batch_is_fetched_again(stack: Stack) -> None:
    consumer, aio, tp, _ = await fetched_changelog(stack)
    try:
        faust_compat.rewind_dropped_changelogs(consumer)
        faust_compat.rewind_dropped_changelogs(consumer)  # idempotent
        consumer.stop_flow()
        assert await drain(consumer) == []
        await asyncio.sleep(0.1)
        assert await aio.position(tp) == 0
        again = await aio.getmany(tp, timeout_ms=5000)
        assert [r.offset for r in again[tp]][:1] == [0]
    finally:
        await aio.stop()


async def test_a_batch_cut_short_by_the_suspension_rewinds_to_the_last_record_handed_out(stack: Stack) -> None:
    consumer, aio, tp, _ = await fetched_changelog(stack)
    try:
        faust_compat.rewind_dropped_changelogs(consumer)
        consumer.resume_flow()
        got = []
        async for _, m in consumer.getmany(timeout=1.0):
            got.append(m.offset)
            if m.offset == 3:
                consumer.stop_flow()  # Faust's getmany stops at the next record
        assert got == [0, 1, 2, 3]
        await asyncio.sleep(0.1)
        assert await aio.position(tp) == 3  # 3 may have been abandoned with its callback: it comes again
    finally:
        await aio.stop()


async def test_a_partition_sought_meanwhile_is_left_where_the_seek_put_it(stack: Stack) -> None:
    consumer, aio, tp, _ = await fetched_changelog(stack)
    try:
        faust_compat.rewind_dropped_changelogs(consumer)
        consumer.stop_flow()
        async for _ in consumer.getmany(timeout=1.0):
            pass
        aio.seek(tp, 7)  # the recovery's own seek got there first (the rewind runs on the next loop turn)
        await asyncio.sleep(0.1)
        assert await aio.position(tp) == 7
    finally:
        await aio.stop()
