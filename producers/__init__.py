"""Device-side components: the Modbus TCP producer, the demo plant simulator and the Kafka frame sink."""
