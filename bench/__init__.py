"""Benchmarks (scripts, never tests): `python -m bench.ack_latency`."""
