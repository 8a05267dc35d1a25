"""Storage backends (SQLite, PostgreSQL) behind one Store interface, chosen by name in registry.py."""
