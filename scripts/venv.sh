# Sourced by demo.sh and test.sh: create or refresh .venv with ferry and its test tools.
# Works on a fresh Debian 12 (installs python3-venv with apt when it is missing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: ferry needs Python 3.11 or newer (sudo apt-get install python3)" >&2
    return 1
}

PY=$(find_python)

if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkg="python3-venv"
    echo "setup: $PY lacks venv support; installing $pkg" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
    else
        echo "error: install $pkg (as root: apt-get install $pkg) and run again" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    rm -rf .venv
    echo "setup: creating .venv with $PY" >&2
    "$PY" -m venv .venv
fi

stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.ferry-stamp 2>/dev/null)" != "$stamp" ] || ! .venv/bin/python -c 'import ferry, hub, agent' 2>/dev/null; then
    echo "setup: installing ferry and its dependencies into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
    echo "$stamp" > .venv/.ferry-stamp
fi
export PATH="$ROOT/.venv/bin:$PATH"
