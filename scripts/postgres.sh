#!/usr/bin/env bash
# Install and start PostgreSQL from Debian's packages (when missing), with a login role for
# Ferry's tests and benchmarks; prints the URL to use. Safe to run again.
#
#   bash scripts/postgres.sh          # -> postgresql://ferry:ferry@127.0.0.1:5432/postgres
#
# The tests read FERRY_POSTGRES_URL (this URL by default) and make a database of their own
# for each test. Run as root, or with sudo available.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "postgres: installing postgresql (Debian package)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [ "$status" != "online" ]; then
    # its messages ("Removed stale pid file.") go to stderr: stdout carries only the URL
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2
fi
for _ in $(seq 50); do
    as_root su postgres -c "psql -p $port -Atqc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.2
done
if [ "$(as_root su postgres -c "psql -p $port -Atqc \"select 1 from pg_roles where rolname='ferry'\"")" != 1 ]; then
    as_root su postgres -c "psql -p $port -qc \"create role ferry login createdb password 'ferry'\"" >&2
fi
echo "postgresql://ferry:ferry@127.0.0.1:$port/postgres"
