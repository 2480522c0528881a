"""Benchmarks of the phase-1 schema: revision 0000 (baseline) against head, side by side.

``python -m benchmarks`` runs the INSERT, calculation and query suites on SQLite and
PostgreSQL (see docs/performance.md for the results and how to read them);
``benchmarks/pool_guard.py`` measures the connection-pool guard on its own.
"""
