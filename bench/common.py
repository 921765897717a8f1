"""What the benchmarks share: free ports, starting a Ferry hub or agent, stopping processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
