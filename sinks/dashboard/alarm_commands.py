"""Operator actions from the dashboard as commands on plant.alarm-commands.v1, answered by the worker.

Contract: `send(...)` builds an AlarmCommand for the caller as authenticated (the signed-in user, or
`token` for the shared API token, with that role: never a name the request brings), produces it keyed
by the asset path (the same partitioner as the readings: it reaches the worker that owns the asset),
and waits up to `pipeline.alarms.command_timeout_s` for the worker's AlarmEvent with the command's id.
The answer is an `Answer`: 200 with the transition, 409 with the worker's reason for a refusal, 503
when Kafka did not take the command, 504 when no worker answered in time (the command stays on the
topic and is applied when a worker reads it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

import schemas
from plantstream.core import kafka_clients, logs, topics
from plantstream.core.config import Settings
from plantstream.core.records import AlarmAction, AlarmCommand, alarm_command
from sinks.dashboard.plant_model import PlantModel

log = logs.get(__name__)


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class CommandSender:
    def __init__(self, settings: Settings, model: PlantModel) -> None:
        self.model = model
        self.topic = settings.topic(topics.ALARM_COMMANDS)
        self.timeout_s = settings.pipeline.alarms.command_timeout_s
        self.max_shelve_s = settings.pipeline.alarms.max_shelve_s
        self._settings = settings
        self._producer: Producer | None = None
        self._codec: Any = None

    def _ready(self) -> tuple[Producer, Any]:
        if self._producer is None:  # lazily: a dashboard without Kafka still serves its pages
            self._codec = kafka_clients.registry(self._settings).codec(
                topics.subject(self._settings, topics.ALARM_COMMANDS), schemas.ALARM_COMMAND
            )
            self._producer = Producer(kafka_clients.producer_config(self._settings, "dashboard"))
        return self._producer, self._codec

    async def send(
        self,
        *,
        asset: str,
        rule: str,
        action: AlarmAction,
        user: str,
        role: str,
        comment: str = "",
        shelve_duration_s: float | None = None,
        alert_id: str | None = None,
    ) -> Answer:
        cmd = alarm_command(
            command_id=uuid.uuid4().hex,
            asset=asset,
            rule=rule,
            action=action,
            user=user,
            role=role,
            time=time.time_ns() // 1000,
            comment=comment[:500],
            shelve_duration_s=shelve_duration_s,
            alert_id=alert_id,
            source="dashboard",
        )
        outcome = self.model.expect(cmd["command_id"])
        try:
            failure = await asyncio.to_thread(self._produce, cmd)
            if failure is not None:
                return Answer(503, {"error": f"Kafka did not take the command ({failure}); nothing was changed"})
            try:
                event = await asyncio.wait_for(asyncio.wrap_future(outcome), self.timeout_s)
            except TimeoutError:
                return Answer(
                    504,
                    {
                        "error": f"no worker answered within {self.timeout_s:g} s: is `plantstream process` running? "
                        f"The command is on {self.topic} and is applied when a worker reads it",
                        "command_id": cmd["command_id"],
                    },
                )
        finally:
            self.model.forget(cmd["command_id"])
        log.info("alarm command %s %s/%s by %s (%s): %s", action, asset, rule, user, role, event["event"])
        if event["event"] == "REJECTED":
            return Answer(409, {"error": event["reason"], "event": event})
        return Answer(200, {"event": event, "state": event["to_state"]})

    def _produce(self, cmd: AlarmCommand) -> str | None:
        producer, codec = self._ready()
        failure: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failure.append(str(err))

        producer.produce(self.topic, codec.encode(cmd), cmd["asset"].encode(), on_delivery=delivered)
        left = producer.flush(min(10.0, self.timeout_s))
        if left:
            return "not acknowledged within the timeout: is the broker reachable?"
        return failure[0] if failure else None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
