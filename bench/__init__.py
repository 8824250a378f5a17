"""Benchmarks of Stealth Recovery (not tests): run them with `python -m bench.<name>`."""
