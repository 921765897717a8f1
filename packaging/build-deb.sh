#!/usr/bin/env bash
# Build dist/ferry_<version>_<arch>.deb with Debian's own dpkg-deb; prints its path.
#
# The package carries ferry's wheel and its dependencies' wheels (built here, where
# PyPI answers); installing it makes /opt/ferry/venv from them with the system's
# python3, offline, and the user `ferry`; /usr/bin/ferry runs it; the template unit
# ferry-agent@.service runs an agent instance by name (`ferry service install` writes
# units of its own, with the instance's drain time). Removing it stops and removes the
# agent services; purging it removes their config, data, logs and the user too.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "build-deb: $*" >&2; }
command -v dpkg-deb >/dev/null || { say "dpkg-deb is missing (apt-get install dpkg)"; exit 1; }
[ -x "$ROOT/.venv/bin/pip" ] || { source "$ROOT/scripts/venv.sh" >&2; }
VERSION=$("$ROOT/.venv/bin/python" -c 'import ferry; print(ferry.__version__)')
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/ferry"
mkdir -p "$PKG/DEBIAN" "$PKG/opt/ferry/wheels" "$PKG/usr/bin" "$PKG/lib/systemd/system"
say "wheels of ferry $VERSION and its dependencies"
"$ROOT/.venv/bin/pip" wheel --quiet --disable-pip-version-check --wheel-dir "$PKG/opt/ferry/wheels" \
    -c "$ROOT/constraints.txt" "$ROOT" >&2
install -m 0755 "$ROOT/packaging/debian/ferry" "$PKG/usr/bin/ferry"
install -m 0644 "$ROOT/packaging/systemd/ferry-agent@.service" "$PKG/lib/systemd/system/"
for script in postinst prerm postrm; do
    install -m 0755 "$ROOT/packaging/debian/$script" "$PKG/DEBIAN/$script"
done
SIZE=$(du -sk "$PKG" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    "$ROOT/packaging/debian/control" >"$PKG/DEBIAN/control"
mkdir -p "$ROOT/dist"
OUT="$ROOT/dist/ferry_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$PKG" "$OUT" >&2
echo "$OUT"
