"""The Checkpoint: the one place that decides in which order the worker's work becomes durable.

A checkpoint covers every frame processed before it starts. In this order:

1. snapshot: serialise every table entry changed since the last checkpoint (the agent goes on
   processing meanwhile; later changes belong to the next checkpoint), and take the output mark:
   the sequence number of the next record to be sent (processors/worker/kafka_outputs.py);
2. outputs confirmed: wait until Kafka has acknowledged every output record numbered below the
   mark - precisely the records of the frames (and timer ticks) the snapshot covers;
3. state written: send the snapshot to the changelog topics and wait until Kafka acknowledges it;
4. input offsets committed: by Faust, right after `persist()` returns, for offsets it chose before
   calling it (faust_compat.before_offset_commit), so they never run ahead of the snapshot.

Hence after a `kill -9` the restored state is never behind the committed offsets (frames would be
skipped) nor ahead of the delivered outputs (windows it says were sent would be lost); when it is
ahead of the committed offsets, the frames in between are skipped by their offset.

A record Kafka refused (or a confirmation that timed out, when a timeout is given) raises
`DeliveryFailed` and nothing after it happens: the frames are processed again after the restart it
leads to (at-least-once; sinks upsert on natural keys). Without a timeout a checkpoint waits out a
broker outage (librdkafka retries until `message.timeout.ms`), logging once a minute.
Checkpoints never overlap (a lock): two interleaved ones could write an older snapshot of an entry
after a newer one. `persist()` without a commit after it is what timers and the revocation use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from plantstream.core import logs
from processors.worker.kafka_outputs import KafkaOutputs
from processors.worker.state import TableStore

log = logs.get(__name__)


class Checkpoint:
    def __init__(
        self,
        outputs: KafkaOutputs,
        stores: Sequence[TableStore],
        changelog_topics: Mapping[str, str],
        changelog_key: Callable[[str], bytes],
        timeout_s: float | None = None,
    ) -> None:
        self.outputs = outputs
        self.stores = list(stores)
        self.changelog_topics = dict(changelog_topics)  # table name -> changelog topic
        self.changelog_key = changelog_key
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self.count = 0  # checkpoints completed

    async def persist(self, timeout_s: float | None = None) -> None:
        """Steps 1-3 of the module doc; the caller commits input offsets after it, if it has any."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            entries = [entry for store in self.stores for entry in store.snapshot()]  # 1. snapshot
            mark = self.outputs.mark()
            await self.outputs.confirmed(mark, timeout)  # 2. outputs confirmed
            if entries:
                for e in entries:  # 3. state written and confirmed
                    self.outputs.changelog(
                        self.changelog_topics[e.table], e.partition, self.changelog_key(e.key), e.value
                    )
                await self.outputs.confirmed(self.outputs.mark(), timeout)
            self.count += 1
