"""Transfer tickets: the hub's signed word that the bearer may read or write one path of
one share on one serving agent, until a given time.

A ticket is ``<payload>.<signature>``, both base64url without padding: the
payload is compact JSON, the signature Ed25519 over the payload's bytes. The
hub signs with a key only it holds; every agent knows the public half (it
comes with enrollment) and checks tickets without asking the hub. A ticket is
a bearer token for its scope only: one share, one path, one direction, one
serving agent, for as long as its task may need (6 hours for a transfer task).

    ticket = issue(key, TicketScope(server=..., share=..., path="a/b.mov", op="read",
                                    job=..., task=...), ttl=300)
    claims = verify(public_key, ticket, server=my_id, share=..., path=..., op="read")

An agent holds the public key as its 32 bytes (``PublicKey``); cryptography, which weighs
6 MiB in a process, is loaded with the first ticket it checks, not when it enrolls.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING, Literal

import msgspec

from core.errors import FerryError

if TYPE_CHECKING:  # the hub's signing key; agents never hold one
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Op = Literal["read", "write"]
# one operation on the files of a share (``protocol.files``): a ticket for one of these opens
# the agent's file-operation request only, never a transfer's (whose ``op`` is read or write)
FileOp = Literal["ls", "stat", "mkdir", "rename", "mv", "delete"]
SKEW = 30.0  # seconds of clock difference forgiven between the hub and an agent
MAX_TICKET = 8192


class TicketScope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: str  # client id of the agent that serves the share
    share: str  # share id
    path: str  # inside the share; a folder's path covers what is below it when ``tree``
    op: Op | FileOp
    job: str
    task: str
    exp: float = 0.0  # unix seconds
    iat: float = 0.0
    tree: bool = False  # the path is a folder: its files are covered too
    v: int = 1


class TicketRefused(FerryError):
    """A ticket that does not allow what it was shown for; ``why`` is safe to answer."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PublicKey:
    """The hub's Ed25519 public key as an agent holds it: its 32 raw bytes."""

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError(f"not an Ed25519 public key: {len(raw)} bytes, not 32")
        self.raw = raw
        self._key: object = None

    def verify(self, signature: bytes, payload: bytes) -> bool:
        """Is ``signature`` the hub's over ``payload``?"""
        if self._key is None:
            # cryptography is loaded with the first ticket checked (see the module's text)
            from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
                Ed25519PublicKey,
            )

            try:
                self._key = Ed25519PublicKey.from_public_bytes(self.raw)
            except ValueError:
                return False
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - loaded above

        try:
            self._key.verify(signature, payload)  # type: ignore[attr-defined]
        except InvalidSignature:
            return False
        return True


def private_key(seed: bytes) -> Ed25519PrivateKey:
    """The hub's key from its 32-byte seed (kept with its other secrets)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415 - hub only
        Ed25519PrivateKey,
    )

    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half, as agents receive it."""
    return _b64(key.public_key().public_bytes_raw())


def public_key(text: str) -> PublicKey:
    try:
        return PublicKey(_unb64(text))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from None


def issue(key: Ed25519PrivateKey, scope: TicketScope, ttl: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    payload = msgspec.json.encode(msgspec.structs.replace(scope, iat=round(now, 3),
                                                          exp=round(now + ttl, 3)))
    return f"{_b64(payload)}.{_b64(key.sign(payload))}"


def read(key: PublicKey, ticket: str, now: float | None = None) -> TicketScope:
    """The scope of a genuine, unexpired ticket; ``TicketRefused`` otherwise."""
    if not isinstance(ticket, str) or len(ticket) > MAX_TICKET or ticket.count(".") != 1:
        raise TicketRefused("malformed ticket")
    payload_text, signature_text = ticket.split(".")
    try:
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, binascii.Error):
        raise TicketRefused("malformed ticket") from None
    if not key.verify(signature, payload):
        raise TicketRefused("forged ticket: the signature is not the hub's")
    try:
        scope = msgspec.json.decode(payload, type=TicketScope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise TicketRefused("malformed ticket") from None
    now = time.time() if now is None else now
    if now > scope.exp + SKEW:
        raise TicketRefused(f"expired ticket (expired {now - scope.exp:.0f} s ago)")
    if scope.iat > now + SKEW:
        raise TicketRefused("ticket issued in the future: check the clocks")
    return scope


def verify(key: PublicKey, ticket: str, *, server: str, share: str, path: str | None,
           op: Op | FileOp, now: float | None = None) -> TicketScope:
    """``read``, and that the ticket covers this request: this server, share, path and
    direction. A folder ticket (``tree``) covers what is below its path. ``path`` None
    leaves the path to the caller (``covers``), for a request that names several."""
    scope = read(key, ticket, now)
    if scope.server != server:
        raise TicketRefused("ticket for another server")
    if scope.share != share:
        raise TicketRefused("ticket for another share")
    if scope.op != op:
        raise TicketRefused(f"ticket to {scope.op}, not to {op}")
    if path is not None and not covers(scope, path):
        raise TicketRefused("ticket for another path")
    return scope


def covers(scope: TicketScope, path: str) -> bool:
    if path == scope.path:
        return True
    return scope.tree and (scope.path == "" or path.startswith(scope.path.rstrip("/") + "/"))
