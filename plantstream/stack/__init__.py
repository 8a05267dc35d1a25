"""Local stack launcher: Apache Kafka (KRaft, 1 or 3 nodes), a Confluent-compatible registry, PostgreSQL and
mosquitto, from Maven Central and Debian packages; no Docker."""
