"""Kafka client settings from the one config model, for confluent-kafka and for Faust (aiokafka)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from plantstream.core import local_stack, logs
from plantstream.core.config import Settings
from plantstream.core.errors import CoreError
from plantstream.core.serde import Registry, registry_client

log = logs.get(__name__)


class BrokerNotConfigured(CoreError, RuntimeError):
    pass


def bootstrap(settings: Settings) -> str:
    """The configured bootstrap list, else the local launcher's running broker."""
    k = settings.pipeline.kafka
    if k.bootstrap:
        return k.bootstrap
    if found := local_stack.kafka_bootstrap(settings):  # one node of a local cluster may be down for a while
        return found
    raise BrokerNotConfigured(
        "no Kafka broker: pipeline.kafka.bootstrap (env KAFKA_BOOTSTRAP) is empty and the local broker is "
        "not running. Fix: `plantstream kafka start`, or set KAFKA_BOOTSTRAP=host:port"
    )


def registry_url(settings: Settings) -> str:
    r = settings.pipeline.registry
    if r.url:
        return r.url
    if info := local_stack.running(settings, local_stack.REGISTRY):
        return info.endpoint
    raise BrokerNotConfigured(
        "no schema registry: pipeline.registry.url (env SCHEMA_REGISTRY_URL) is empty and the local "
        "registry is not running. Fix: `plantstream kafka start`, or set SCHEMA_REGISTRY_URL"
    )


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka security settings; the local secured broker's CA is trusted when none is configured."""
    k = settings.pipeline.kafka
    conf: dict[str, Any] = {"security.protocol": k.security_protocol}
    if k.sasl_mechanism:
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username or ""
        conf["sasl.password"] = k.sasl_password.get_secret_value() if k.sasl_password else ""
    cafile = ca_file(settings)
    if cafile:
        conf["ssl.ca.location"] = cafile
    return conf


def ca_file(settings: Settings) -> str | None:
    k = settings.pipeline.kafka
    if k.ssl_cafile:
        return k.ssl_cafile
    if "SSL" in k.security_protocol and not k.bootstrap:
        return str(local_stack.local_ca(settings))
    return None


def client_id(component: str) -> str:
    return f"plantstream-{component}-{socket.gethostname()}-{os.getpid()}"


def producer_config(settings: Settings, component: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "logger": logs.LIBRDKAFKA,
        "bootstrap.servers": bootstrap(settings),
        "client.id": client_id(component),
        # no duplicates on retry, nothing acknowledged before every in-sync replica has it
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        # keep retrying through a broker outage rather than failing the frames (default 300 s)
        "message.timeout.ms": 600_000,
        **security_config(settings),
    }
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group: str, component: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "logger": logs.LIBRDKAFKA,
        "bootstrap.servers": bootstrap(settings),
        "client.id": client_id(component),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # a consumer killed with -9 holds its partitions until this expires: keep it short (broker minimum 6 s)
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        **security_config(settings),
    }
    conf.update(extra)
    return conf


def admin_config(settings: Settings) -> dict[str, Any]:
    return {"logger": logs.LIBRDKAFKA, "bootstrap.servers": bootstrap(settings), **security_config(settings)}


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """faust.App keyword arguments for the broker (URL and credentials)."""
    import faust

    k = settings.pipeline.kafka
    hosts = ";".join(bootstrap(settings).split(","))
    kwargs: dict[str, Any] = {"broker": f"kafka://{hosts}"}
    if k.security_protocol != "PLAINTEXT":
        context = ssl.create_default_context(cafile=ca_file(settings)) if "SSL" in k.security_protocol else None
        if k.sasl_mechanism:
            kwargs["broker_credentials"] = faust.SASLCredentials(
                username=k.sasl_username or "",
                password=k.sasl_password.get_secret_value() if k.sasl_password else "",
                mechanism=k.sasl_mechanism,
                ssl_context=context,
            )
        elif context is not None:
            kwargs["broker_credentials"] = faust.SSLCredentials(context)
    return kwargs


def wait_for_broker(
    settings: Settings,
    component: str,
    *,
    max_wait: float | None = None,
    stop: threading.Event | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> bool:
    """Block until the broker answers (True), logging a clear message with backoff; never a crash loop.
    False when `stop` was set while waiting. `on_wait` hears each failed attempt's message (a status display)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    where = bootstrap(settings)
    # librdkafka reports why a connection failed (TLS, SASL) only through its error callback
    causes: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            causes.append(err.str())

    conf: dict[str, Any] = {**admin_config(settings), "log_level": 0, "error_cb": on_error}
    admin = AdminClient(conf)
    delay, waited = 1.0, 0.0
    while True:
        try:
            if admin.list_topics(timeout=3).brokers:
                if waited:
                    log.info("%s: Kafka at %s answers again", component, where)
                return True
        except Exception as e:  # KafkaException with _TRANSPORT / _TIMED_OUT while it is down
            reason = str(e)
        else:
            reason = "no broker in the metadata"
        admin.poll(0)  # serve the error callback
        if causes:
            fix = (
                "check pipeline.kafka.sasl_username / sasl_password (env PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD)"
                if "uthentication" in causes[-1]
                else "check pipeline.kafka.ssl_cafile and security_protocol"
            )
            message = f"Kafka at {where} refused the connection: {causes[-1]}. Fix: {fix}"
        else:
            message = (
                f"Kafka at {where} is unreachable ({reason}). Fix: start it (`plantstream kafka start`) or set "
                "KAFKA_BOOTSTRAP / pipeline.kafka.bootstrap to a running broker"
            )
        if max_wait is not None and waited >= max_wait:
            raise BrokerNotConfigured(f"{message} (gave up after {max_wait:.0f}s)")
        log.warning("%s: %s; retrying in %.0fs", component, message, delay)
        if on_wait is not None:
            on_wait(message)
        if stop is not None:
            if stop.wait(delay):
                return False
        else:
            time.sleep(delay)
        waited += delay
        delay = min(delay * 2, 30.0)


def registry(settings: Settings) -> Registry:
    """The schema registry this deployment uses, with its credentials."""
    url = registry_url(settings)
    r = settings.pipeline.registry
    password = r.password.get_secret_value() if r.password else None
    return Registry(registry_client(url, r.username, password), url)
