"""One logger naming scheme: `plantstream.<module path>`, every logger of ours under "plantstream".

Each module takes `log = logs.get(__name__)`: plantstream.core.serde keeps its name, producers.publisher
logs as plantstream.producers.publisher. One setting on "plantstream" reaches all of ours, and the name
in a log line says which module wrote it. `configure` is the one place a process sets up logging.
"""

from __future__ import annotations

import logging
import sys

from plantstream.core.outage_log import NOISY_LOGGERS, limit_logging

ROOT = "plantstream"
# libraries that log a line per connection attempt or rebalance step: warnings and worse only
NOISY = ("aiokafka", "faust", "mode", "pymodbus", "asyncua", "httpx")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# librdkafka's own log lines (a refused connection is retried several times a second during an outage) go
# through Python logging under this name (the `logger` of every client config, kafka_clients.py), served by
# the clients' poll/consume calls, where `configure` rate-limits them with the other Kafka clients' lines
LIBRDKAFKA = logging.getLogger("librdkafka")


def name_for(module: str) -> str:
    """The logger name of `module` (a module's __name__)."""
    return module if module == ROOT or module.startswith(ROOT + ".") else f"{ROOT}.{module}"


def get(module: str) -> logging.Logger:
    """The logger of `module`: pass __name__."""
    return logging.getLogger(name_for(module))


def configure(level: str) -> None:
    """Log lines on stderr at `level` (debug, info, warning, error); chatty libraries at warning or above,
    and the Kafka clients' retries during a broker outage one line per condition per minute."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=FORMAT)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    limit_logging(NOISY_LOGGERS)
