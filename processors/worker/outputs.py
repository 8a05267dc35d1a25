"""Where the per-frame path puts its records: the `Outputs` interface, and an in-memory collector.

Contract: `emit(key, kind, record)` takes one output record of a stage (`Kind` names its topic and
schema; the key is the asset path); `dead_letter(key, value, headers)` takes a rejected input message
unchanged. Neither blocks nor raises for a transport problem: the Kafka implementation
(processors/worker/kafka_outputs.py) tracks every record until Kafka confirms it, and the Checkpoint
waits for that. `Collected` keeps everything in lists, so the per-frame path runs in a unit test with
no broker and no registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from processors.worker.stage import Kind

Headers = dict[str, str | bytes | None]


class Outputs(Protocol):
    def emit(self, key: bytes, kind: Kind, record: Mapping[str, Any]) -> None: ...

    def dead_letter(self, key: bytes | None, value: bytes | None, headers: Headers) -> None: ...


def dead_letter_headers(error: str, exc_class: str, topic: str, partition: int, offset: int, stage: str) -> Headers:
    """The headers a dead letter carries (docs/topics.md): why, what class of error, where from, which stage."""
    return {
        "ps-error": error.encode()[:4000],
        "ps-error-class": exc_class.encode(),
        "ps-source-topic": topic.encode(),
        "ps-source-partition": str(partition).encode(),
        "ps-source-offset": str(offset).encode(),
        "ps-stage": stage.encode(),
    }


@dataclass
class Collected:
    """An `Outputs` that keeps every record, in order: for tests and tools without Kafka."""

    records: list[tuple[str, Kind, Mapping[str, Any]]] = field(default_factory=list)  # (asset, kind, record)
    dead_letters: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)

    def emit(self, key: bytes, kind: Kind, record: Mapping[str, Any]) -> None:
        self.records.append((key.decode(), kind, record))

    def dead_letter(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.dead_letters.append((key, value, headers))

    def of(self, kind: Kind) -> list[Mapping[str, Any]]:
        return [r for _, k, r in self.records if k is kind]
