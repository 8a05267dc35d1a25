"""Sinks: storage writers (SQLite now), later alert delivery and the dashboard."""
