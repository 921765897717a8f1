"""What a server is: a name, two service accesses, a status and a cache.

Values here are frozen snapshots: ``ServersDB`` hands them out and replaces them whole
when something changes, so a caller holding one never sees it change under it. They
validate themselves when built, so a bad URL or name is refused before anything is
written.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from servers.errors import ServersError
from servers.protocols import DEFAULT_PROTOCOL, Protocol, Service, known

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NAME_RULE = "1 to 64 letters, digits, '_', '.' and '-'"


class Status(enum.StrEnum):
    """A server's availability, with the reference's strings (servers-database.rst)."""

    NEVER_REACHED = "Never reached"  # created; every attempt (if any) failed
    UNAVAILABLE = "Unavailable"  # reached once, the last attempts failed
    RUNNING = "Running"  # the last request was answered


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ServersError(f"invalid server name {name!r}: use {NAME_RULE}")
    return name


def fold(name: str) -> str:
    """The form names are compared in: they are unique regardless of case."""
    return name.casefold()


def check_url(url: str) -> str:
    """``url`` as a service's base URL: http or https, a host, no credentials, query or
    fragment; a trailing slash dropped so paths join with one slash."""
    if not isinstance(url, str) or not url or url != url.strip() or any(c.isspace() for c in url):
        raise ServersError(f"invalid URL {url!r}: give http://HOST[:PORT][/PATH] or https://…")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise ServersError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ServersError(f"invalid URL {url!r}: it must start with http:// or https://")
    if not parts.hostname:
        raise ServersError(f"invalid URL {url!r}: it names no host")
    if not port_ok:
        raise ServersError(f"invalid URL {url!r}: port 0 cannot be reached")
    if parts.username is not None or parts.password is not None:
        # the database is a plain file; tokens go to the secret store
        raise ServersError(f"invalid URL {url!r}: put no user name or password in the URL")
    if parts.query or parts.fragment:
        raise ServersError(f"invalid URL {url!r}: a base URL has no '?query' or '#fragment'")
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class ServiceAccess:
    """Where a service is (its base URL) and which protocol it speaks."""

    url: str
    protocol: str = DEFAULT_PROTOCOL

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_url(self.url))
        known(self.protocol)


@dataclass(frozen=True)
class CacheEntry:
    """A slow-changing answer of a server and when it was fetched. ``failed`` and
    ``error`` tell about the last refresh that failed, while ``value`` stayed."""

    value: Any  # JSON: dict, list, str, number, bool or None
    fetched: datetime
    failed: datetime | None = None
    error: str | None = None

    def age(self, now: datetime) -> float:
        return (now - self.fetched).total_seconds()


@dataclass(frozen=True)
class Server:
    """A hub as clients name it.

    ``authentication`` answers log-in requests, ``application`` everything else; they
    are often the same URL. ``predefined`` servers ship with the package.
    """

    name: str
    predefined: bool
    authentication: ServiceAccess
    application: ServiceAccess
    status: Status = Status.NEVER_REACHED
    last_success: datetime | None = None
    last_failure: datetime | None = None
    cache: Mapping[str, CacheEntry] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name)

    @classmethod
    def define(cls, name: str, url: str, *, auth_url: str | None = None,
               protocol: str = DEFAULT_PROTOCOL, predefined: bool = False) -> Server:
        """A new server whose services speak ``protocol``; authentication at ``url``
        unless ``auth_url`` says otherwise."""
        return cls(name=check_name(name), predefined=predefined,
                   authentication=ServiceAccess(auth_url or url, protocol),
                   application=ServiceAccess(url, protocol))

    @property
    def key(self) -> str:
        return fold(self.name)

    @property
    def url(self) -> str:
        """The application service's URL: the one users mean by "the hub's address"."""
        return self.application.url

    @property
    def kind(self) -> str:
        return "predefined" if self.predefined else "user"


def require(server: Server, request: str, *, service: Service = "application") -> Protocol:
    """The protocol of ``server``'s service (its application service unless told),
    provided it has ``request``; ServersError naming server, protocol and request if not."""
    access = server.application if service == "application" else server.authentication
    protocol = known(access.protocol)
    if request not in protocol:
        raise ServersError(f"server '{server.name}' speaks protocol '{protocol.name}', "
                           f"which has no request '{request}'")
    return protocol
