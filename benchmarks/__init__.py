"""Benchmarks for llm_inductor: run from the repository (``python benchmarks/run.py``), never installed."""
