"""One exception tree for all of Ferry: every exception Ferry raises derives from FerryError.

::

    FerryError
     ├── ConfigError          a config file or flag is wrong (names key and file)
     ├── InstanceError        pid/log/runtime files of a hub or agent instance
     ├── HubError             raised by the hub and by clients talking to it
     │    ├── QueryError      the query language (names position and expectation)
     │    ├── ApiError        an HTTP answer from the hub (status, code, message)
     │    ├── NotLoggedIn     no credentials, or a stored token the hub refused
     │    ├── Refusal         hub/errors.py: what job logic refuses (invalid, not found, …)
     │    └── Retryable       agent/hubclient.py: a hub down, busy or confused: try again
     ├── AgentError           the agent daemon
     │    └── EnrollmentError the hub refused the agent's API key
     ├── SupervisorClosed     core/tasks.py: a task spawned while shutting down
     ├── PathRefused          protocol/paths.py: a share path that is not allowed
     ├── SealError            protocol/sealing.py: sealed data that does not open
     ├── TicketRefused        protocol/tickets.py: a transfer ticket that is not valid
     ├── Refused              protocol/transfer.py: a transfer endpoint's refusal
     ├── TransferError        transports/errors.py: a transfer that failed (and why)
     ├── WireError            transports/errors.py: an endpoint's connection that broke,
     │                        stalled or spoke no HTTP
     ├── ServersError         servers/errors.py: the servers database
     └── ServiceError         service/base.py: installing or asking the OS service

Library exceptions are translated into these at the boundary where they
arise, so callers catch one family. The classes of a package live in that
package; only the root and what several packages share are here.
"""

from __future__ import annotations


class FerryError(Exception):
    """Root of every error Ferry raises on purpose."""


class ConfigError(FerryError):
    """A config file, config value or command-line flag is wrong."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = []
        if file:
            where.append(f"in {file}")
        if key:
            where.append(f"at key '{key}'")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class InstanceError(FerryError):
    """Starting, stopping or locating a hub or agent instance failed."""


class HubError(FerryError):
    """Raised by the hub, or by a client talking to it."""


class NotLoggedIn(HubError):
    """No credentials for the hub, or a stored token it refused: the user must log in."""


class QueryError(HubError):
    """A query could not be parsed or does not fit the entity it names."""

    def __init__(self, message: str, *, position: int | None = None, query: str | None = None):
        self.position = position
        self.query = query
        self.detail = message
        if position is not None and query is not None:
            pointer = " " * position + "^"
            message = f"{message} at position {position}\n  {query}\n  {pointer}"
        elif position is not None:
            message = f"{message} at position {position}"
        super().__init__(message)


class ApiError(HubError):
    """The hub answered an HTTP request with an error."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, object] | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(f"{status} {code}: {message}")


class AgentError(FerryError):
    """The agent daemon failed."""


class EnrollmentError(AgentError):
    """The hub refused the agent's API key; retrying will not help."""
