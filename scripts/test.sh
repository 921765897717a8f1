#!/usr/bin/env bash
# Set up .venv (if needed), then lint (ruff), type-check (mypy) and run the tests (pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k query -x`.
source "$(dirname "$0")/venv.sh"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== pytest" && exec pytest "$@"
