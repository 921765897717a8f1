#!/usr/bin/env bash
# Build the Docker image ferry-test/systemd:1 (when missing): a Debian 12 root filesystem
# with systemd as PID 1 and python3, from Debian's mirror with debootstrap. Prints its name.
# Needs the Docker engine (scripts/docker.sh). Safe to run again.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "systemd-image: $*" >&2; }
IMAGE=ferry-test/systemd:1
if docker image inspect "$IMAGE" >/dev/null 2>&1; then echo "$IMAGE"; exit 0; fi
command -v debootstrap >/dev/null ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
ROOTFS=$(mktemp -d)
trap 'as_root rm -rf "$ROOTFS"' EXIT
say "debootstrap bookworm with systemd and python3 (about a minute)"
as_root debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-venv,passwd,procps \
    bookworm "$ROOTFS" >/dev/null
as_root tar -C "$ROOTFS" -c . | docker import -c 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null
echo "$IMAGE"
