"""`plantstream sink alerts`: alert state changes from Kafka to webhooks, e-mail and MQTT.

Flow: consume a batch -> record its deliveries as pending in the delivery log (one transaction)
-> commit the offsets -> wake the channel workers. Each channel has its own worker thread that
sends from the log, so a slow or failing receiver only delays itself. Together that gives
exactly one delivery per (state change, channel) across restarts, except for a crash in the
instant between a receiver's acceptance and the row being marked sent (then the receiver sees a
repeat, with the same X-Plantstream-Delivery id to drop it by). An alert whose alarm is shelved,
suppressed by design or out of service (`suppression` set by the worker's alarm lifecycle) is not
delivered; the worker raises it again when the alarm comes back while still active.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import schemas
from plantstream.core import logs, metrics, topics
from plantstream.core.config import AlertingSettings, AlertRoute, Settings
from plantstream.core.runstats import RunStats
from plantstream.core.shutdown import StopOnSignal
from sinks.alerts.channels import Sender, make_sender
from sinks.alerts.delivery_log import Delivery, DeliveryLog
from sinks.alerts.routing import TokenBucket, backoff_s, plan_batch
from sinks.batch import Batch
from sinks.runner import SinkRunner

log = logs.get(__name__)

COMPONENT = "sink-alerts"

IDLE_POLL_S = 1.0  # workers also wake on new rows; this only bounds how late a retry can start


def delivery_log_path(settings: Settings) -> Path:
    p = Path(settings.pipeline.alerting.delivery_log).expanduser()
    return p if p.is_absolute() else settings.state_path(str(p))


class ChannelWorker(threading.Thread):
    """Sends one channel's due deliveries: rate limited, coalesced into a digest when flooded,
    retried with exponential backoff."""

    def __init__(
        self,
        cfg: AlertRoute,
        sender: Sender,
        dlog: DeliveryLog,
        alerting: AlertingSettings,
        stats: RunStats,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"alert-{cfg.name}", daemon=True)  # daemon: a hung receiver must not block exit
        self.cfg = cfg
        self.sender = sender
        self.dlog = dlog
        self.retry = alerting.retry
        self.stats = stats
        self.stop_event = stop
        self.wake = threading.Event()
        self.bucket = TokenBucket(cfg.rate_limit_per_min, cfg.burst)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.wake.clear()
                try:
                    pause = self._step(time.time())
                except Exception:  # e.g. the delivery log's disk is full: keep the channel alive, rows stay pending
                    log.exception("channel %s: delivery round failed; trying again shortly", self.cfg.name)
                    pause = IDLE_POLL_S
                if pause > 0:
                    self.wake.wait(pause)
        finally:
            self.sender.close()

    def _step(self, now: float) -> float:
        """Send what is due; return how long to sleep (0 = look again at once)."""
        due = self.dlog.due(self.cfg.name, now)
        if not due:
            nxt = self.dlog.next_due_at(self.cfg.name)
            return IDLE_POLL_S if nxt is None else max(0.01, min(IDLE_POLL_S, nxt - now))
        plan = plan_batch(len(due), self.bucket.available(now), self.sender.can_digest)
        if plan == "wait":
            return max(0.05, self.bucket.wait_s(now))
        if plan == "digest":
            self.bucket.take(now)
            self._send(due)
            return 0.0
        for d in due:
            if self.stop_event.is_set():
                break
            if self.bucket.available(time.time()) < 1:
                break
            self.bucket.take(time.time())
            self._send([d])
        return 0.0

    def _send(self, batch: list[Delivery]) -> None:
        t0 = time.perf_counter()
        try:
            self.sender.send([d.alert for d in batch])
        except Exception as e:  # DeliveryError, or a bug in a sender: either way retry later, keep the worker
            reason = str(e) if type(e).__name__ == "DeliveryError" else f"{type(e).__name__}: {e}"
            # every failed try of a delivery; deliveries_failed counts those given up on
            self.stats.add("delivery_attempts_failed", len(batch))
            for d in batch:
                attempts = d.attempts + 1
                if attempts >= self.retry.max_attempts:
                    self.dlog.mark_attempt_failed(d.key, reason, None)
                    self.stats.add("deliveries_failed")
                    log.error(
                        "channel %s: giving up on %s %s after %d attempts (%s); retried at the next start",
                        self.cfg.name, d.alert_id, d.state, attempts, reason,
                    )  # fmt: skip
                else:
                    delay = backoff_s(attempts, self.retry)
                    self.dlog.mark_attempt_failed(d.key, reason, time.time() + delay)
                    self.stats.add("deliveries_retried")
                    log.warning(
                        "channel %s: %s %s not delivered (%s); retry %d in %.1fs",
                        self.cfg.name, d.alert_id, d.state, reason, attempts, delay,
                    )  # fmt: skip
            return
        self.stats.observe("delivery_send_ms", (time.perf_counter() - t0) * 1000)
        self.dlog.mark_sent([d.key for d in batch], time.time())
        self.stats.add("deliveries_sent", len(batch))
        if len(batch) > 1:
            self.stats.add("digests_sent")
        log.info("channel %s: delivered %d alert state change(s)", self.cfg.name, len(batch))


class DeliveryLogDestination:
    """The sink runner's destination: each batch's alerts recorded as pending deliveries, then the workers woken."""

    def __init__(self, dlog: DeliveryLog, alerting: AlertingSettings, workers: list[ChannelWorker]) -> None:
        self.dlog = dlog
        self.alerting = alerting
        self.workers = workers

    def write(self, batch: Batch) -> dict[str, int]:
        # a shelved, suppressed or out-of-service alarm is not annunciated (ISA-18.2): the worker marks its
        # records; when it comes back while active, the worker RAISES it again, unmarked (processors/
        # alarm_lifecycle.py)
        shown = [a for a in batch.alerts if not a.get("suppression")]
        recorded = self.dlog.record(shown, self.alerting.channels, time.time())
        return {"deliveries_recorded": recorded, "not_annunciated": len(batch.alerts) - len(shown)}

    def maintain(self) -> None:
        pass

    def account(self, batch: Batch, written: dict[str, int], stats: RunStats) -> None:
        new = written["deliveries_recorded"]
        stats.add("alerts_in", len(batch.alerts))
        stats.add("deliveries_recorded", new)
        stats.add("alerts_not_annunciated", written.get("not_annunciated", 0))
        for a in batch.alerts:
            held = f" (not annunciated: {a['suppression']})" if a.get("suppression") else ""
            log.info("alert %s %s %s %s %s%s", a["severity"], a["state"], a["asset"], a["rule"], a["alert_id"], held)
        if new:
            for w in self.workers:
                w.wake.set()

    def close(self) -> None:
        pass  # the delivery log outlives the consumer: the workers may still be sending from it


def run_alert_sink(settings: Settings, stop: threading.Event, stats: RunStats | None = None) -> None:
    stats = stats or RunStats(COMPONENT, settings.pipeline.state_dir)
    metrics.serve(settings, stats)
    alerting = settings.pipeline.alerting
    if not alerting.channels:
        log.warning("no alert channels configured (pipeline.alerting.channels); alerts are only logged")
    dlog = DeliveryLog(delivery_log_path(settings))
    requeued = dlog.requeue_failed(time.time())
    if requeued:
        log.info("retrying %d delivery(ies) that an earlier run gave up on", requeued)
    workers = [ChannelWorker(c, make_sender(c), dlog, alerting, stats, stop) for c in alerting.channels]
    for w in workers:
        w.start()
    try:
        log.info("alert sink: %d channel(s), delivery log %s", len(workers), dlog.path)
        runner = SinkRunner(
            settings,
            COMPONENT,
            {settings.topic(topics.ALERTS): schemas.ALERT},
            DeliveryLogDestination(dlog, alerting, workers),
            stats,
            batch_size=500,
            flush_interval_s=0.5,
        )
        runner.run(stop)
    finally:
        stop.set()
        for w in workers:
            w.wake.set()
        # a worker inside a send finishes it (each bounded by its channel timeout) before the log closes
        deadline = time.monotonic() + max((getattr(c, "timeout_s", 5.0) for c in alerting.channels), default=0) + 1
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        if all(not w.is_alive() for w in workers):
            dlog.close()
        stats.flush()


def main(settings: Settings) -> None:
    stop = threading.Event()
    # a signal asks for an orderly stop, within a deadline: closing a consumer may wait for a broker that is gone
    StopOnSignal("the alert sink", settings.pipeline.shutdown_timeout_s).install().on_stop(stop.set)
    run_alert_sink(settings, stop)
