"""Producers: device readers (readers/), historian replay, and the one publisher that takes their records to
Kafka through a store-and-forward buffer. Imports only plantstream.core and schemas."""
