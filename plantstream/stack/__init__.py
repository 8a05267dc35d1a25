"""Local stack launcher: Apache Kafka (KRaft) and a Confluent-compatible registry from Maven Central."""
