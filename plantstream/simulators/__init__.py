"""Simulated plants and devices for the demo, tests and benchmarks (`plantstream simulate`)."""
