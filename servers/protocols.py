"""The protocols a hub's services speak, as the package defines them.

A protocol is a name and the set of requests a service implementing it answers
(servers-database.rst: "for the moment the protocols definitions are contained in the
python package directly"). Adding, removing or changing one is a new release of Ferry;
users cannot define their own. A server names one protocol per service, so a client
can refuse early, with a clear message, a request its server does not speak, instead
of sending it and getting a 404 that looks like a broken hub.

``ferry-v1`` is the hub of this package: the hub's ``PROTOCOL_VERSION``, and the
operations of its API under ``/api/v1`` that a client sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from servers.errors import ServersError

Service = Literal["application", "authentication"]


@dataclass(frozen=True)
class Protocol:
    """A named set of requests; the responses are those of the hub's API reference."""

    name: str
    requests: frozenset[str]

    def __contains__(self, request: object) -> bool:
        return request in self.requests


FERRY_V1 = Protocol("ferry-v1", frozenset({
    # authentication service
    "token", "password_change", "password_lost", "password_reset",
    # the agent's operations
    "enroll", "checkin", "goodbye", "organization_key", "claim", "heartbeat", "report",
    "reset", "upload_log",
    # records: queries and the entities' create/read/update/delete
    "find", "get", "related", "create", "update", "delete",
    # jobs
    "add_tasks", "update_tasks", "task_log",
    # slow-changing answers a client caches (ServersDB.cached)
    "version", "description", "shares", "collaborations",
}))

# the first protocol is the default of a new server
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (FERRY_V1,)}
DEFAULT_PROTOCOL = next(iter(PROTOCOLS))


def known(name: str) -> Protocol:
    """The protocol called ``name``; ServersError listing the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ServersError(f"unknown protocol {name!r}: this Ferry knows "
                           f"{', '.join(repr(p) for p in PROTOCOLS)}") from None
