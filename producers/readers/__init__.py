"""Device readers: one module per protocol, all on the loop in base.py."""
