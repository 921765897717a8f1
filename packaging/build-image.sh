#!/usr/bin/env bash
# Build the agent's container image ferry/agent:<version> from the Debian package (built
# when missing) on BASE: debian:12 by default; a local Debian 12 image where no registry
# answers (the tests use ferry-test/systemd:1 from scripts/systemd-image.sh). Prints its name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-debian:12}
DEB=$(ls "$ROOT"/dist/ferry_*.deb 2>/dev/null | tail -n 1 || true)
[ -n "$DEB" ] || DEB=$(bash "$ROOT/packaging/build-deb.sh")
VERSION=$(basename "$DEB" | cut -d_ -f2)
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp "$ROOT/packaging/container/Dockerfile" "$CONTEXT/"
cp "$DEB" "$CONTEXT/ferry.deb"
docker build --quiet --network none --build-arg "BASE=$BASE" -t "ferry/agent:$VERSION" \
    "$CONTEXT" >&2
echo "ferry/agent:$VERSION"
