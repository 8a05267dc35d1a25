"""Operator commands on alarms (plant.alarm-commands.v1), applied by the worker that owns the asset.

Contract:
- The commands topic has the readings topic's partition count and is keyed by asset path with the
  same partitioner, so Faust's assignor gives partition p of both to the same worker (co-partitioned:
  one consumer group, topics with equal partition counts subscribed by the same members): a command
  meets the asset's state where the frames keep it, and both are applied on one event loop, one at a
  time, so they never race. `check_copartitioned` refuses to start on topics that differ.
- `process(topic, partition, offset, key, value)` handles one command message, synchronously: a
  command at or below the asset's `cmd_offset` is a redelivery and is skipped (its outputs went out
  before the state that says so, by the Checkpoint's order). Otherwise the Alarms stage applies it or
  refuses it; either way the outcome is an AlarmEvent with the command's id (REJECTED with the reason
  for a refusal), which is how the sender learns it. A command on the wrong partition, for an asset
  the plant does not have, or with a missing field is refused the same way; bytes that are no command
  at all go to the dead-letter topic (stage `processor.commands`). Nothing a sender writes stops the
  worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from plantstream.core import logs, topics
from plantstream.core.errors import ProcessorError
from plantstream.core.records import AlarmCommand
from plantstream.core.runstats import RunStats
from plantstream.core.serde import DecodeError
from processors import alarm_lifecycle
from processors.worker.outputs import Outputs, dead_letter_headers
from processors.worker.stage import Emit, Kind
from processors.worker.stages.alarms import Alarms
from processors.worker.stages.asset_config import AssetConfig
from processors.worker.stages.asset_state import AssetTwin
from processors.worker.state import AssetStates

log = logs.get(__name__)


class CommandProcessor:
    def __init__(
        self,
        decode: Callable[[bytes | None], dict[str, Any]],
        states: AssetStates,
        alarms: Alarms,
        twin: AssetTwin | None,
        config: AssetConfig,
        outputs: Outputs,
        stats: RunStats,
        partitions: int,
    ) -> None:
        self.decode = decode
        self.states = states
        self.alarms = alarms
        self.twin = twin
        self.config = config
        self.outputs = outputs
        self.stats = stats
        self.partitions = partitions

    def process(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        try:
            cmd: AlarmCommand = self.decode(value)  # type: ignore[assignment]
        except DecodeError as e:
            self._dead_letter(topic, partition, offset, key, value, str(e), type(e).__name__)
            return
        asset = cmd["asset"]
        now = time.time_ns() // 1000
        reason = self._misrouted(cmd, key, partition)
        if reason is not None:
            self._reject(cmd, reason)
            return
        state = self.states.get(asset)
        if state is None:  # alarms of an asset that has sent no frame yet (shelving ahead, say)
            state = self.states.create(asset, partition)
        if offset <= state.cmd_offset:
            self.stats.add("commands_skipped_redelivered")
            return
        emitted = self.alarms.command(state, cmd, now)
        state.cmd_offset = offset
        self.states.changed(asset, partition, state)
        if self.twin is not None:
            self.twin.changed(state)
        self._send(asset, emitted)

    def _misrouted(self, cmd: AlarmCommand, key: bytes | None, partition: int) -> str | None:
        asset = cmd["asset"]
        if not self.config.known(asset):
            return f"unknown asset {asset!r}: the plant config has no such asset"
        if key is not None and key.decode("utf-8", "replace") != asset:
            return f"the message key {key!r} is not the command's asset {asset!r}; key commands by the asset path"
        want = topics.key_partition(asset, self.partitions)
        if partition != want:
            # the worker owning this partition may not own the asset's readings: it must not apply it
            return (
                f"the command is on partition {partition}, the asset's readings on partition {want}: produce it "
                "keyed by the asset path with librdkafka's default partitioner (CRC-32), or to that partition"
            )
        return None

    def _reject(self, cmd: AlarmCommand, reason: str) -> None:
        event = alarm_lifecycle.rejected_event(cmd["asset"], cmd["rule"], cmd, reason)
        self._send(cmd["asset"], [Emit(Kind.ALARM_EVENT, event)])

    def _send(self, asset: str, emitted: list[Emit]) -> None:
        key = asset.encode()
        for kind, record in emitted:
            self.outputs.emit(record["alarm"].encode() if kind is Kind.ALARM_STATE else key, kind, record)
            if kind is Kind.ALARM_EVENT:
                self.stats.add("commands_rejected" if record["event"] == "REJECTED" else "commands_applied")
                if record["event"] == "REJECTED":
                    log.info("alarm command %s refused: %s", record["command_id"], record["reason"])

    def _dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str, cls: str
    ) -> None:
        self.stats.add("dead_letters")
        self.stats.add("commands_undecodable")
        log.warning("dead letter from %s[%d]@%d: %s", topic, partition, offset, error)
        headers = dead_letter_headers(error, cls, topic, partition, offset, "processor.commands")
        self.outputs.dead_letter(key, value, headers)


class NotCopartitioned(ProcessorError, ValueError):
    """The alarm-commands topic does not have the readings topic's partition count."""


def check_copartitioned(readings: tuple[str, int], commands: tuple[str, int]) -> None:
    """Refuse to start when the commands topic cannot follow the readings' partitions (module doc)."""
    (rname, rn), (cname, cn) = readings, commands
    if rn != cn:
        raise NotCopartitioned(
            f"{cname} has {cn} partitions and {rname} {rn}: alarm commands would reach workers that do not own "
            f"their assets. Fix: `plantstream topics apply` (it grows both to pipeline.kafka.partitions)"
        )
