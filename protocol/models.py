"""Request and response bodies of the hub's API, as ``msgspec`` structs.

The same structs validate bodies on the hub, build them in the agent, and
give the OpenAPI document its schemas.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec

API_PREFIX = "/api/v1"
PROTOCOL_VERSION = "ferry-v1"

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ShortText = Annotated[str, msgspec.Meta(max_length=255)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class ClientType(enum.IntEnum):
    """Client roles (clients.rst)."""

    APP = 0
    SERVER = 1
    USER_SERVER = 2
    BROWSER = 3
    COMPUTE_LANE = 5

    @property
    def hr(self) -> str:
        return _TYPE_HR[self]

    @classmethod
    def from_hr(cls, text: str) -> ClientType:
        for member, name in _TYPE_HR.items():
            if name == text:
                return member
        raise ValueError(text)


_TYPE_HR = {
    ClientType.APP: "app",
    ClientType.SERVER: "server",
    ClientType.USER_SERVER: "user server",
    ClientType.BROWSER: "browser",
    ClientType.COMPUTE_LANE: "compute lane",
}


class ClientStatus(enum.StrEnum):
    """Client statuses (clients.rst); only ``online`` and ``disabled`` can be written."""

    ONLINE = "online"
    OFFLINE = "offline"
    DISABLED = "disabled"
    DISABLED_OFFLINE = "disabled-offline"


class Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every body: unknown fields are errors, not silently dropped."""


class NetRate(msgspec.Struct, frozen=True, kw_only=True):
    """Network rates in MB/s; -1.0 means not measured yet.

    ``s`` is the host's rate over the last check-in interval, ``s_a`` its
    average since the agent started, ``s_t`` the rate of Ferry's own
    transfers (-1.0 until one has run).
    """

    s: float = -1.0
    s_a: float = -1.0
    s_t: float = -1.0


class Gpu(msgspec.Struct, frozen=True, kw_only=True):
    """One of the host's GPUs (Ferry's addition to the metrics record)."""

    index: Annotated[int, msgspec.Meta(ge=0)]
    uuid: Annotated[str, msgspec.Meta(max_length=128)] = ""
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    memory: Annotated[int, msgspec.Meta(ge=0)] | None = None  # bytes


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """The ``metrics`` record of a client (clients.rst).

    ``c`` cores, ``l`` CPU load %, ``m`` memory used %, ``mpf``/``mpt``
    physical memory free/total bytes, ``mvf``/``mvt`` swap free/total bytes,
    ``in``/``out`` network rates. ``la`` (1, 5, 15 minute load averages) and
    ``gpus`` (the host's GPUs, when it has any) are Ferry's additions. Unknown
    keys (here and in ``in``/``out``) are ignored, not refused, so a newer agent
    can report more to an older hub.
    """

    c: Annotated[int, msgspec.Meta(ge=1, le=65536)]
    l: Percent  # noqa: E741 - the reference's key
    m: Percent
    mpf: Annotated[int, msgspec.Meta(ge=0)]
    mpt: Annotated[int, msgspec.Meta(ge=0)]
    mvf: Annotated[int, msgspec.Meta(ge=0)]
    mvt: Annotated[int, msgspec.Meta(ge=0)]
    in_: NetRate = msgspec.field(default_factory=NetRate, name="in")
    out: NetRate = msgspec.field(default_factory=NetRate)
    la: list[NonNegative] | None = None
    gpus: Annotated[list[Gpu], msgspec.Meta(max_length=256)] | None = None  # when present


class TransferInfo(Struct, frozen=True):
    """Where an agent's transfer endpoint answers, and the certificate peers pin."""

    url: Annotated[str, msgspec.Meta(min_length=8, max_length=1024,
                                     pattern=r"^https?://[^\s/?#]+$")]
    fingerprint: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""
    # ``sha256//<base64>`` of its public key (SubjectPublicKeyInfo), for ``curl
    # --pinnedpubkey`` on download links; "" from agents older than download links
    pin: Annotated[str, msgspec.Meta(pattern=r"^(sha256//[A-Za-z0-9+/]{43}=)?$")] = ""


class ShareInfo(Struct, frozen=True):
    """A share this agent serves: its id (in tickets), name and root folder."""

    id: str
    name: str
    path: str


class EnrollRequest(Struct, frozen=True):
    """An agent trades its node API key for a client record and a token."""

    api_key: Annotated[str, msgspec.Meta(min_length=8, max_length=512)]
    machine_id: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    code: Code
    type: Annotated[int, msgspec.Meta(ge=1, le=2)] = ClientType.SERVER
    os: ShortText = ""
    username: ShortText = ""
    version: ShortText = ""
    host_id: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    site: ShortText | None = None
    lanes: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0
    transfer: TransferInfo | None = None  # None: it serves no transfer endpoint


class EnrollResponse(Struct, frozen=True):
    client_id: str
    token: str
    expires: str
    checkin_interval: float
    status: ClientStatus
    lanes: list[str] = []  # the lane clients (type 5), in order
    ticket_key: str = ""  # the hub's Ed25519 public key: transfer tickets are signed with it
    shares: list[ShareInfo] = []  # the shares this agent serves
    # the node's organization and collaboration (federated work), and the organization's
    # published public key ("" while none is): the agent holds the private half
    organization: str | None = None
    collaboration: str | None = None
    encrypted: bool = False  # the collaboration seals inputs and results
    organization_key: str = ""


class OrganizationKeyRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """An agent publishes its organization's public key (base64 of a PEM), once."""

    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]


class CheckinRequest(Struct, frozen=True):
    """Sent on every check-in; ``wan_ip`` is taken from the connection.

    An omitted (None) ``host_id``, ``code``, ``os``, ``username`` or ``version``
    keeps what the hub has.
    """

    metrics: Metrics
    host_id: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    code: Code | None = None
    os: ShortText | None = None
    username: ShortText | None = None
    version: ShortText | None = None
    lanes: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None
    # why the agent takes no work now ("outside schedule (next window mon 19:00)", "user
    # active (nimby)"); None: it takes work. Unlike the fields above, None clears it.
    status_reason: ShortText | None = None


class CheckinResponse(Struct, frozen=True):
    client_id: str
    status: ClientStatus
    checkin_interval: float
    server_time: str
    shares: list[ShareInfo] = []  # the shares this agent serves, as they are now


class TokenRequest(Struct, frozen=True):
    """Log in with username and password, or with a user API key."""

    username: ShortText | None = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    api_key: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class TokenResponse(Struct, frozen=True):
    token: str
    expires: str
    user: dict[str, Any]


class ErrorDetail(Struct, frozen=True):
    code: str
    message: str
    field: str | None = None
    position: int | None = None


class ErrorBody(Struct, frozen=True):
    """Every error answer has this shape, whatever the status."""

    error: ErrorDetail


# --- work: claims, heartbeats, reports -------------------------------------------------
