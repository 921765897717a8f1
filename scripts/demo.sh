#!/usr/bin/env bash
# Set up .venv (if needed) and run `ferry demo`: an embedded hub and one agent.
source "$(dirname "$0")/venv.sh"
exec ferry demo "$@"
