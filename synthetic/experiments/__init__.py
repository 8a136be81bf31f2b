"""Experiments that put theory, modular and synthetic side by side and return tables.

Each experiment is a module-level function ``f(config: dict) -> dict`` (so sweeps can
run it in worker processes and cache it by its configuration) returning at least
``rows`` (a list of flat dicts, one table row each) and ``checksums`` (data name ->
SHA-256). Plotting lives in :mod:`figures`.
"""
