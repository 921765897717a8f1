"""What the benchmarks share: free ports, starting Ferry hubs and agents, a PostgreSQL database,
nginx in front of several hubs, stopping processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(base: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with every user folder under ``base`` and no Ferry credentials."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FERRY_HUB", "FERRY_USERNAME", "FERRY_PASSWORD", "FERRY_API_KEY")}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "HOME"):
        env[var] = str(base / var.lower())
        Path(env[var]).mkdir(parents=True, exist_ok=True)
    env.update(extra or {})
    return env


def start_ferry(kind: str, base: Path, section: dict[str, Any], extra_env: dict[str, str] | None = None,
                name: str = "bench", timeout: float = 60) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``ferry <kind> start --attach`` with its own folders; returns the process and runtime.json."""
    env = isolated_env(base, extra_env)
    config = base / f"{kind}-{name}.yaml"
    config.write_text(yaml.safe_dump({"application": section}))
    runtime = Path(env["XDG_DATA_HOME"]) / "ferry" / kind / name / "runtime.json"
    out = open(base / f"{kind}-{name}.out", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "ferry", kind, "start", "--attach", "--user",
                             "--name", name, "--config", str(config)],
                            stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited: {(base / f'{kind}-{name}.out').read_text()}")
        try:
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} did not start within {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def ensure(binary: str, package: str) -> None:
    """A standard tool from Debian's packages, installed when missing."""
    if shutil.which(binary) is None:
        print(f"{binary} not found; installing {package} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True,
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def postgres_database(prefix: str = "ferry_bench") -> tuple[str, Callable[[], None]]:
    """A fresh database on the server ``scripts/postgres.sh`` starts (installing it when
    missing); returns its URL and a function that drops it."""
    root = Path(__file__).resolve().parent.parent
    base = subprocess.run(["bash", str(root / "scripts" / "postgres.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"create database {name}"))
    return (base.rsplit("/", 1)[0] + "/" + name,
            lambda: asyncio.run(admin(f"drop database if exists {name} with (force)")))


def start_hubs(base: Path, section: dict[str, Any], count: int,
               extra_env: dict[str, str] | None = None
               ) -> tuple[list[subprocess.Popen[bytes]], list[dict[str, Any]]]:
    """``count`` hub processes with one config, one after the other (the first migrates)."""
    procs, infos = [], []
    try:
        for n in range(1, count + 1):
            proc, info = start_ferry("hub", base, section, extra_env, name=f"bench{n}")
            procs.append(proc)
            infos.append(info)
    except BaseException:
        for proc in procs:
            stop_process(proc)
        raise
    return procs, infos


def start_nginx(tmp: Path, port: int, http: str, *, workers: int = 1,
                connections: int = 1024) -> subprocess.Popen[bytes]:
    """nginx (Debian's package) as a plain process with its files under ``tmp``, serving
    ``http`` (the ``http`` block's inside, its server listening on ``port``). Started as
    root, its workers stay root, so they read the benchmark's 0700 temporary folders."""
    ensure("nginx", "nginx-light")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
{"user root root;" if os.geteuid() == 0 else ""}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
{http}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def start_balancer(base: Path, upstreams: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """nginx (Debian's package) in front of hubs (``http://host:port`` each), as a plain
    process with its files under ``base``: round robin, a hub that refuses connections is
    skipped, long-polling claims (up to 60 s) are let through, connections to the hubs are
    kept open. Returns the process and the URL agents and users call."""
    ensure("nginx", "nginx-light")
    prefix = base / "balancer"
    prefix.mkdir(exist_ok=True)
    port = free_port()
    servers = "\n".join(f"        server {u.removeprefix('http://')} max_fails=1 fail_timeout=10s;"
                        for u in upstreams)
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; }}
http {{
{temp}
    access_log off;
    upstream hubs {{
{servers}
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://hubs;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf),
                             "-e", str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, url
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not listen within 30 s")
