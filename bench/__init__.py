"""Benchmarks and evaluations: synthetic data generators and the scripts that measure with them.

Run each as a module from the repository root, e.g. ``python -m bench.prompt_eval``.
"""
