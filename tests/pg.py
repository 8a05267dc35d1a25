"""Session fixture `pg`: a real PostgreSQL server on a free loopback port, stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plantstream.stack.postgres import LocalPostgres


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    server = LocalPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_dsn(pg: LocalPostgres) -> str:
    """A fresh, empty database for one test."""
    return pg.dsn(pg.new_database())
