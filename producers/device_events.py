"""Device-down / device-up events: one Alert record RAISED per outage, one CLEARED on recovery.

A producer already marks an unreachable device's samples BAD; these records tell operators and
the alert sinks once, without a rule in the processor. They go to `plant.alerts.v1` with the Alert
contract: rule `device-down:<device>`, kind `device_down`, and an `alert_id` shared by the RAISED
and CLEARED record of one outage (hash of rule, asset and outage start, as processors/alert_rules.py does).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from plantstream.core import logs, records
from plantstream.core.records import Alert, AlertState

log = logs.get(__name__)

KIND = "device_down"
RAISED: AlertState = "RAISED"
CLEARED: AlertState = "CLEARED"

EventEmit = Callable[[Alert], None]


def rule_name(device: str) -> str:
    return f"device-down:{device}"


def outage_id(device: str, asset: str, start_us: int) -> str:
    return hashlib.sha256(f"{rule_name(device)}|{asset}|{start_us}".encode()).hexdigest()[:24]


@dataclass
class OutageTracker:
    """Turns per-scan up/down observations of one device into RAISED/CLEARED alert records (pure)."""

    device: str
    asset: str
    tags: Sequence[str] = ()
    down_since_us: int | None = field(default=None, init=False)

    def observe(self, reachable: bool, time_us: int, cause: str = "") -> Alert | None:
        """The record to publish after this scan, or None when nothing changed."""
        if not reachable and self.down_since_us is None:
            self.down_since_us = time_us
            return self._record(RAISED, time_us, f"device {self.device} stopped answering: {cause}")
        if reachable and self.down_since_us is not None:
            since, self.down_since_us = self.down_since_us, None
            seconds = (time_us - since) / 1e6
            return self._record(CLEARED, time_us, f"device {self.device} answers again after {seconds:.1f} s", since)
        return None

    def _record(self, state: AlertState, time_us: int, message: str, since_us: int | None = None) -> Alert:
        start = since_us if since_us is not None else time_us
        return records.alert(
            alert_id=outage_id(self.device, self.asset, start),
            asset=self.asset,
            rule=rule_name(self.device),
            kind=KIND,
            state=state,
            severity="WARNING",
            time=time_us,
            message=message,
            tags=self.tags,
        )


def log_event(alert: Alert) -> None:
    """The operator's log line of a device event: WARNING when raised, INFO when cleared."""
    log.log(logging.WARNING if alert["state"] == RAISED else logging.INFO, "device event: %s", alert["message"])
