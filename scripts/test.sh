#!/usr/bin/env bash
# Set up .venv (if needed), then lint (ruff), type-check (mypy), check the layers and import
# circles (scripts/cycles.py; import-linter's contracts in pyproject.toml, docs/ARCHITECTURE.md)
# and run the tests (pytest), spread over up to 4 workers (FERRY_TEST_WORKERS sets how many).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k query -x`; `-m "not slow"`
# runs the fast tests alone (no hub or agent processes), in under 3 minutes.
source "$(dirname "$0")/venv.sh"
# import-linter lives in a venv of its own: its dependency rich would otherwise be imported
# by structlog in every Ferry process of .venv, and weigh on the idle agent
if [ ! -x .venv-tools/bin/lint-imports ] || ! cmp -s constraints.txt .venv-tools/.constraints; then
    echo "setup: installing import-linter into .venv-tools" >&2
    rm -rf .venv-tools
    "$PY" -m venv .venv-tools
    .venv-tools/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt import-linter
    cp constraints.txt .venv-tools/.constraints
fi
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== import circles" && python scripts/cycles.py
echo "== layers" && PYTHONPATH="$ROOT" .venv-tools/bin/lint-imports --no-cache
workers=${FERRY_TEST_WORKERS:-$(python -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')}
# a test file's tests stay on one worker (their module fixtures, e.g. the Docker client)
echo "== pytest ($workers workers)" && exec pytest -n "$workers" --dist loadfile "$@"
