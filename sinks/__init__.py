"""Sinks: the sink runner and what it writes to — the stores (SQLite, PostgreSQL), alert delivery, and the
dashboard. Imports only plantstream.core and schemas."""
