"""Shared ground: typed params, the papermill stage harness, atomic I/O, progress, statistics, the one
OpenAI-compatible HTTP client and answer cache, preflight checks, plotting style and the paper's numbers.
Imports nothing else of rlbff_lib.
"""
