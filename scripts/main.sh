#!/usr/bin/env bash
# The main job: set up, render every spec, apply all migrations to an embedded SQLite file,
# verify it, and print what was applied and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DB=${DEMO_DB:-demo.db}
rm -f "$DB"
.venv/bin/schemagen generate
.venv/bin/schemagen upgrade --url "sqlite:///$DB"
.venv/bin/schemagen verify --url "sqlite:///$DB"
