#!/usr/bin/env bash
# Install and start a Docker engine from Debian's packages (when missing) and build the test
# image the Docker lane's tests run; prints the image name. Safe to run again.
#
#   bash scripts/docker.sh          # -> ferry-test/busybox:1
#
# The engine runs without a bridge network or iptables rules (containers get
# network_mode "none"); nothing is pulled: the image is imported from busybox-static.
# Run as root, or with sudo available. Messages go to stderr, stdout carries only the name.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "docker: $*" >&2; }

IMAGE=ferry-test/busybox:1
APPLETS="sh cat echo ls sleep wc sha256sum head tail tr dd id nc true false env"
LOG=/var/log/dockerd.log
WAIT=${FERRY_DOCKERD_WAIT:-60}  # seconds for a starting engine to answer

install() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" ||
        missing+=(busybox-static)
    [ ${#missing[@]} = 0 ] && return 0
    say "installing ${missing[*]} (Debian packages)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

start_engine() {
    docker info >/dev/null 2>&1 && return 0
    say "starting dockerd (log: $LOG)"
    as_root touch "$LOG"
    local seen
    seen=$(wc -l <"$LOG")  # what an earlier start wrote: not this start's error
    # a session of its own, so it outlives this script and the shell that ran it
    if [ "$(id -u)" = 0 ]; then
        setsid dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
    else
        sudo setsid dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
    fi
    local pid=$! deadline=$((SECONDS + WAIT))
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "error: dockerd exited while starting; the end of $LOG:"
            tail -n +$((seen + 1)) "$LOG" | tail -n 20 >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            # not left half-started: stopped, so that the next run starts it afresh
            say "error: dockerd did not answer within ${WAIT}s; stopping it. The end of $LOG:"
            tail -n +$((seen + 1)) "$LOG" | tail -n 20 >&2
            as_root kill "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            as_root kill -9 "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

build_image() {
    # the recipe's hash is a label: an image built from another recipe is built again
    local recipe
    recipe=$(echo "$APPLETS" | sha256sum | cut -c1-12)
    if [ "$(docker image inspect -f '{{index .Config.Labels "ferry.recipe"}}' "$IMAGE" 2>/dev/null)" = "$recipe" ]; then
        return 0
    fi
    say "building $IMAGE from busybox-static"
    local root
    root=$(mktemp -d)
    trap 'rm -rf "$root"' RETURN
    mkdir -p "$root/bin" "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $APPLETS; do ln -s busybox "$root/bin/$applet"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
        docker import -c "LABEL ferry.recipe=$recipe" -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    docker run --rm --network none "$IMAGE" sh -c 'echo ok' >/dev/null
}

install
start_engine
build_image
echo "$IMAGE"
