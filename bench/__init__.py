"""Benchmark harness: this project against the lesson's method and a careful naive loop (`python3 -m bench`)."""
