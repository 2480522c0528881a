#!/usr/bin/env bash
# Set up, then lint, type-check, check generated files and run every test (all markers: db,
# slow, load, kill) on SQLite and PostgreSQL (PostgreSQL from TEST_POSTGRES_URL, default the
# local server). Arguments go to pytest; a later -m narrows the selection.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/schemagen generate --check > /dev/null
.venv/bin/schemagen schema --check > /dev/null
.venv/bin/pytest -m "" -n "${PYTEST_WORKERS:-2}" --dist loadgroup --durations=25 "$@"
