"""The core every stage uses: config, records, Avro serde, topics, Kafka clients, metrics, errors.

It imports no stage (producers, processors, sinks) and nothing of the layer above (cli, up, stack,
bench, simulators); `make lint` enforces it.
"""
