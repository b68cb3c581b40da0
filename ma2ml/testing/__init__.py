"""Helpers that ship for the tests and the benchmarks, never used by ma2ml itself.

``scratch``: throw-away PostgreSQL databases (one per test or benchmark run).
They live in the package because the benchmarks (run as scripts from
``benchmarks/``) need them as much as ``tests/`` does; .importlinter keeps the
product from importing them.
"""
