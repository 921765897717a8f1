#!/usr/bin/env bash
# Set up .venv (if needed), then lint (ruff), type-check (mypy) and run the tests (pytest),
# spread over up to 4 workers (FERRY_TEST_WORKERS sets how many; 0 runs them in this process).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k query -x`; `-m "not slow"`
# runs the fast tests alone (no hub or agent processes), in under 3 minutes.
source "$(dirname "$0")/venv.sh"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
workers=${FERRY_TEST_WORKERS:-$(.venv/bin/python -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')}
# a test file's tests stay on one worker (their module fixtures, e.g. the Docker client)
echo "== pytest ($workers workers)" && exec pytest -n "$workers" --dist loadfile "$@"
