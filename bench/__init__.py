"""Benchmark harness: cowfs against a plain directory, kernel overlayfs and fuse-overlayfs.

`python -m bench --help` (as root); `make bench` runs the full set. See README.md, Benchmarks.
"""
