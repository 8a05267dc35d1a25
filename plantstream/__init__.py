"""plantstream: shop-floor data (OPC UA, Modbus) to Kafka, KPIs, anomalies, storage and alerts."""

__version__ = "0.1.0"
