"""The hubs an agent may talk to, in order: URLs, or names from the servers database.

``hub:`` in an agent's config is one hub or a list of them. Each entry is a
URL, or the name of a server in the servers database (the system database
for a system agent, the user's otherwise; ``ferry servers list``). The agent
talks to the first; when it is unavailable (it cannot be reached, twice in a
row) the agent fails over to the next, and it goes back to the first once
that one answers again (``HubClient``). A named hub's status in the servers
database follows what the agent sees.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from core.errors import ConfigError

log = structlog.get_logger("agent.hubs")


@dataclass(frozen=True)
class HubTarget:
    url: str
    name: str | None = None  # its name in the servers database, when it was named

    @property
    def label(self) -> str:
        return f"{self.name} ({self.url})" if self.name else self.url


def is_url(entry: str) -> bool:
    return "://" in entry


def resolve(entries: list[str], *, system: bool) -> list[HubTarget]:
    """The config's hubs as URLs; a name unknown to the servers database, or whose
    protocol lacks what an agent needs, is a ``ConfigError`` naming it."""
    targets = []
    db = None
    for n, entry in enumerate(entries):
        if is_url(entry):
            targets.append(HubTarget(entry.rstrip("/")))
            continue
        from servers import ServersDB, ServersError, require  # noqa: PLC0415 - keyring: hubs named by server only

        if db is None:
            db = ServersDB(system=system)
        try:
            server = db.get(entry)
            for request in ("enroll", "checkin", "claim", "heartbeat", "report"):
                require(server, request)
        except ServersError as exc:
            key = "hub" if len(entries) == 1 else f"hub[{n}]"
            raise ConfigError(str(exc), key=key) from None
        targets.append(HubTarget(server.application.url.rstrip("/"), server.name))
    return targets


class StatusRecorder:
    """Writes a named hub's status to the servers database when it changes (not on
    every request: the database is a file)."""

    def __init__(self, *, system: bool) -> None:
        self.system = system
        self._last: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def saw(self, target: HubTarget, ok: bool) -> None:
        if target.name is None or self._last.get(target.name) == ok:
            return
        self._last[target.name] = ok
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(
            self._write, target.name, ok))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, name: str, ok: bool) -> None:
        from servers import ServersDB  # noqa: PLC0415 - keyring: hubs named by server only

        try:
            ServersDB(system=self.system).observe(name, ok)
        except Exception as exc:  # the status is a courtesy: never the agent's failure
            log.warning("cannot record the hub's status in the servers database",
                        hub=name, error=str(exc))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
