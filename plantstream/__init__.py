"""plantstream: shop-floor data (OPC UA, Modbus) to Kafka, KPIs, anomalies, storage and alerts."""

import os

# numpy's BLAS starts a thread per core for the anomaly models' small matrices; on a small box those
# threads spin against the broker and the other components for no gain (`plantstream bench worker`:
# 97% instead of 124% CPU for more samples/s). Set before numpy loads; an explicit setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
