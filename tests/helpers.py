"""Real hub and agent processes for tests, each in its own folders and on free ports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from core.paths import instance_paths

T = TypeVar("T")

ROOT_PASSWORD = "test-root-password"
# the reference's example organization key (server-cli.rst, RSA-4096): base64 of a PEM
REFERENCE_PUBLIC_KEY = (
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUlJQ0lqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FnOEFNSUlDQ2dLQ0F"
    "nRUF2eU4wWVZhWWVZcHVWRVlpaDJjeQphTjdxQndCUnB5bVVibnRQNmw2Vk9OOGE1eGwxMmJPTlQyQ1hwSEVGUFhZQT"
    "FFZThQRFZwYnNQcVVKbUlseWpRCkgyN0NhZTlIL2lJbUNVNnViUXlnTzFsbG1KRTJQWDlTNXVxendVV3BXMmRxRGZFSH"
    "JLZTErUUlDRGtGSldmSEIKWkJkczRXMTBsMWlxK252dkZ4OWY3dk8xRWlLcVcvTGhQUS83Mm52YlZLMG9nRFNaUy9Jc1"
    "NnUlk5ZnJVU1FZUApFbGVZWUgwYmI5VUdlNUlYSHRMQjBkdVBjZUV4dXkzRFF5bXh2WTg3bTlkelJsN1NqaFBqWEszdU"
    "plSDAwSndjCk80TzJ0WDVod0lLL1hEQ3h4eCt4b3cxSDdqUWdXQ0FybHpodmdzUkdYUC9wQzEvL1hXaVZSbTJWZ3Zqa"
    "XNNaisKS2VTNWNaWWpkUkMvWkRNRW1QU29rS2Y4UnBZUk1lZk0xMWtETTVmaWZIQTlPcmY2UXEyTS9SMy90Mk92VDRl"
    "RgorUzVJeTd1QWk1N0ROUkFhejVWRHNZbFFxTU5QcUpKYlRtcGlYRWFpUHVLQitZVEdDSC90TXlrRG1JK1dpejNRCjh6"
    "SVo1bk1IUnhySFNqSWdWSFdwYnZlTnVaL1Q1aE95aE1uZHU0c3NpRkJyUXN5ZGc1RlVxR3lkdE1JMFJEVHcKSDVBc1ov"
    "aFlLeHdiUm1xTXhNcjFMaDFBaDB5SUlsZDZKREY5MkF1UlNTeDl0djNaVWRndEp5VVlYN29VZS9GKwpoUHVwVU4rdWVT"
    "UndGQjBiVTYwRXZQWTdVU2RIR1diVVIrRDRzTVQ4Wjk0UVl2S2ZCanU3ZXVKWSs0Mmd2Wm9jCitEWU9ZS05qNXFER2V5"
    "azErOE9aTXZNQ0F3RUFBUT09Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo="
)


def wait_for(predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (a deadline, not a speed check)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except AssertionError as exc:
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f": {last_error}" if last_error else ""))


def ferry(*args: str, env: dict[str, str] | None = None, input: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``ferry`` command line as a user would."""
    return subprocess.run([sys.executable, "-m", "ferry", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=timeout, check=False)


class Instance:
    """One ``ferry <kind> start --attach`` process."""

    def __init__(self, kind: str, name: str, workdir: Path, section: dict[str, Any],
                 env: dict[str, str]) -> None:
        self.kind = kind
        self.name = name
        self.config_file = workdir / f"{kind}-{name}.yaml"
        self.section = section
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = workdir / f"{kind}-{name}.out"
        self.info: dict[str, Any] = {}
        self.write_config()

    def write_config(self) -> None:
        self.config_file.write_text(yaml.safe_dump({"application": self.section}))

    @property
    def paths(self) -> Any:
        return instance_paths(self.kind, self.name, False, self.config_file)  # type: ignore[arg-type]

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to serve."""
        self.paths.runtime_file.unlink(missing_ok=True)
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ferry", self.kind, "start", "--attach", "--user",
                 "--name", self.name, "--config", str(self.config_file)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env)
        return self.proc

    def start(self, timeout: float = 60) -> dict[str, Any]:
        proc = self.launch()

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(self.paths.runtime_file.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == proc.pid else None

        self.info = wait_for(ready, timeout=timeout, what=f"{self.kind} {self.name} to start")
        return self.info

    def log(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Hub(Instance):
    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def database(self) -> Path | str:
        """The hub's SQLite file, or the URL of its PostgreSQL database."""
        uri = str(self.section.get("uri") or "")
        return uri if uri.startswith("postgresql") else self.paths.data_dir / "hub.sqlite"


class Agent(Instance):
    @property
    def status_url(self) -> str:
        return str(self.info["status_url"])

    def status(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.status_url}/status.json", timeout=10) as resp:
            return json.load(resp)  # type: ignore[no-any-return]


def isolated_env(base: Path) -> dict[str, str]:
    """Environment whose user folders all live under ``base``."""
    env = dict(os.environ)
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache"),
                     ("HOME", "home")):
        env[var] = str(base / sub)
        (base / sub).mkdir(parents=True, exist_ok=True)
    env["FERRY_ROOT_PASSWORD"] = ROOT_PASSWORD
    # tokens of the servers database never reach the keyring of whoever runs the tests:
    # the null backend stores nothing, so they go to the owner-only file under base
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def http(method: str, url: str, body: Any = None, *, token: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, Any]:
    """One raw HTTP call; returns (status, decoded JSON or text)."""
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


def login(hub: Hub, username: str = "root", password: str = ROOT_PASSWORD) -> str:
    status, body = http("POST", f"{hub.api}/token", {"username": username, "password": password})
    assert status == 200, body
    return str(body["token"])


def _postgres(database: Path | str, sql: str, params: tuple[Any, ...], fetch: bool
              ) -> list[tuple[Any, ...]]:
    import asyncio
    import re

    import asyncpg

    numbered = iter(range(1, len(params) + 1))
    query = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(str(database).replace("postgresql+asyncpg", "postgresql"))
        try:
            if fetch:
                return [tuple(r) for r in await conn.fetch(query, *params)]
            await conn.execute(query, *params)
            return []
        finally:
            await conn.close()

    return asyncio.run(run())


def db_query(database: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query, read straight from the hub's database (SQLite or PostgreSQL;
    write ``?`` for parameters)."""
    if isinstance(database, str):
        return _postgres(database, sql, params, fetch=True)
    import sqlite3

    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def db_execute(database: Path | str, sql: str, *params: Any) -> None:
    """One statement on the hub's database, committed: for tests that reach in."""
    if isinstance(database, str):
        _postgres(database, sql, params, fetch=False)
        return
    import sqlite3

    with sqlite3.connect(database) as con:
        con.execute(sql, params)
    con.close()


def db_rows(database: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the hub's tables, read straight from its database."""
    if isinstance(database, str):
        tables = [r[0] for r in db_query(database, "SELECT tablename FROM pg_tables WHERE "
                                                   "schemaname = 'public'")]
    else:
        tables = [r[0] for r in db_query(database, "SELECT name FROM sqlite_master WHERE "
                                                   "type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: sorted(db_query(database, f'SELECT * FROM "{t}"'), key=repr) for t in tables}


def digest_tree(root: Path) -> dict[str, str]:
    """Each file below ``root`` by its relative path, as a SHA-256."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def ended(session: Any, job_id: str) -> dict[str, Any] | None:
    """The job once it has ended (done, failed or aborted), else None: for wait_for."""
    job: dict[str, Any] = session.get("Job", job_id)
    return job if job["status"] in ("done", "failed", "aborted") else None


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``1m``, ``4m``) mounted at ``mount``: a disk that fills up.
    Skips the test where mounting is not allowed (not root, or no tmpfs)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_port() -> int:
    """A loopback port nobody listens on now (for a server a test starts, or one it must
    find closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakMemory:
    """The largest resident memory of a process (with ``children``: and its children,
    together), sampled every 20 ms on a thread of its own while the block runs: a
    process too busy to answer cannot hide its peak. ``start`` is the RSS on entry."""

    def __init__(self, pid: int, *, children: bool = False) -> None:
        import threading

        import psutil

        self.process = psutil.Process(pid)
        self.children = children
        self.start = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> int:
        import psutil

        try:
            procs = [self.process, *(self.process.children(recursive=True)
                                     if self.children else [])]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:  # gone, or a child gone meanwhile: the next sample counts
            return 0

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
