#!/usr/bin/env bash
# The main job: set up, render every spec, build the baseline in an embedded SQLite file, fill
# it with demo data (thousands of ticks and alerts), apply phase 1 (every change checking
# itself), verify, and print the before/after summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DB=${DEMO_DB:-demo.db}
rm -f "$DB"
.venv/bin/schemagen generate
.venv/bin/python -m marketdata.demo --url "sqlite:///$DB"
.venv/bin/schemagen verify --url "sqlite:///$DB"
