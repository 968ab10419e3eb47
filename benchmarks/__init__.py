"""Benchmarks of the channel backends against local latency stand-ins (see benchmarks/README.md)."""
