"""Every simulator of the plant: devices that `plantstream simulate` serves and benchmarks drive."""
