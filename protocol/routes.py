"""The hub's endpoints that agents call: one typed table that both sides use.

Each :class:`Endpoint` says how it is called (method and path under ``API_PREFIX``), who may
call it, and the types of its request and its answer. The hub routes its handlers by these
(``hub/api``), the agent's ``HubClient.call`` sends and decodes by them, and the fake hub that
fast tests of the agent run in-process (``agent/fakehub.py``) serves exactly these. A path or
a type changes here, or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec

from protocol.models import (
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    OrganizationKeyRequest,
    Struct,
    TokenRequest,
    TokenResponse,
)
from protocol.work import (
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    ReportRequest,
    ReportResponse,
    ResetRequest,
    ResetResponse,
)

Req = TypeVar("Req")
Ans = TypeVar("Ans")

Auth = Literal["client", "user", "any"] | None  # None: no token needed


class Nothing(Struct, frozen=True):
    """No body: the request is sent without one."""


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the small answers below: a newer hub may add fields, a client reads these."""


class Version(Answer, frozen=True):
    """What ``GET /version`` answers."""

    version: str
    protocol: str
    description: str | None = None
    environment: str = ""


class Gone(Answer, frozen=True):
    """The answer to a goodbye: the client is offline now."""

    client_id: str
    status: str


class KeyPublished(Answer, frozen=True):
    """The answer to publishing the organization's public key: the organization's id."""

    success: bool
    organization: str


class LogStored(Answer, frozen=True):
    """The answer to a log upload: bytes received and the part of them kept."""

    task_id: str
    bytes: int
    kept: int


@dataclass(frozen=True)
class Endpoint(Generic[Req, Ans]):
    """One endpoint: ``method`` and ``path`` (``{name}`` marks a path parameter), who may call
    it (``auth``), and what goes in (``request``; ``bytes`` for a streamed body) and comes
    back (``answer``)."""

    name: str
    method: str
    path: str
    request: type[Req]
    answer: type[Ans]
    auth: Auth = "client"

    def at(self, **params: str) -> str:
        """The path with its parameters filled in, e.g. ``UPLOAD_LOG.at(task="t1")``."""
        try:
            return self.path.format(**params)
        except KeyError as exc:
            raise ValueError(f"{self.name}: path parameter {exc.args[0]!r} is missing") from None


VERSION: Endpoint[Nothing, Version] = Endpoint("version", "GET", "/version", Nothing, Version,
                                               auth=None)
TOKEN: Endpoint[TokenRequest, TokenResponse] = Endpoint(
    "token", "POST", "/token", TokenRequest, TokenResponse, auth=None)
ENROLL: Endpoint[EnrollRequest, EnrollResponse] = Endpoint(
    "enroll", "POST", "/agent/enroll", EnrollRequest, EnrollResponse, auth=None)
CHECKIN: Endpoint[CheckinRequest, CheckinResponse] = Endpoint(
    "checkin", "POST", "/agent/checkin", CheckinRequest, CheckinResponse)
GOODBYE: Endpoint[Nothing, Gone] = Endpoint("goodbye", "POST", "/agent/goodbye", Nothing, Gone)
ORGANIZATION_KEY: Endpoint[OrganizationKeyRequest, KeyPublished] = Endpoint(
    "organization_key", "POST", "/agent/organization_key", OrganizationKeyRequest, KeyPublished)
CLAIM: Endpoint[ClaimRequest, ClaimResponse] = Endpoint(
    "claim", "POST", "/agent/claim", ClaimRequest, ClaimResponse)
HEARTBEAT: Endpoint[HeartbeatRequest, HeartbeatResponse] = Endpoint(
    "heartbeat", "POST", "/agent/heartbeat", HeartbeatRequest, HeartbeatResponse)
REPORT: Endpoint[ReportRequest, ReportResponse] = Endpoint(
    "report", "POST", "/agent/report", ReportRequest, ReportResponse)
RESET: Endpoint[ResetRequest, ResetResponse] = Endpoint(
    "reset", "POST", "/agent/reset", ResetRequest, ResetResponse)
UPLOAD_LOG: Endpoint[bytes, LogStored] = Endpoint(
    "upload_log", "POST", "/agent/log/{task}", bytes, LogStored)

AGENT_ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    VERSION, TOKEN, ENROLL, CHECKIN, GOODBYE, ORGANIZATION_KEY, CLAIM, HEARTBEAT, REPORT,
    RESET, UPLOAD_LOG)
"""Every endpoint an agent calls, in the order a new agent meets them."""
