#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the project with its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# Compile the tool's modules as an installed wheel has them (pip compiles a wheel's modules at
# install; an editable install leaves them to the first import, which environments with
# PYTHONDONTWRITEBYTECODE never writes, so every run would compile them from source again:
# about 0.16 s of each `schemagen` command). A stale file is recompiled in memory as ever.
.venv/bin/python -m compileall -q generator marketdata benchmarks
# The templates compiled ahead the same way, into .venv/share/schemagen (generator/precompiled.py:
# Jinja's modules and their bytecode); a template edited since is compiled from its source by
# each run, until this runs again.
.venv/bin/python -m generator.precompiled
