"""Passwords, API keys and access tokens.

Passwords and API keys are stored as argon2id hashes. Tokens are short
JWTs (HS256) naming who holds them: ``kind`` is ``user`` or ``client``.
Hashing runs in a thread: argon2 is slow on purpose and releases the GIL.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hub.errors import Invalid, Malformed, TooManyFailures, Unauthenticated

# OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

MIN_PASSWORD_LENGTH = 8
Kind = Literal["user", "client"]


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(hashed: str, secret: str) -> bool:
    try:
        return bool(_hasher.verify(hashed, secret))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _hashing_pool() -> ThreadPoolExecutor:
    """Two threads for argon2: at 19 MiB a hash, a flood of logins stays bounded in memory
    and leaves the default pool (database, files) alone. Made on first use."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hash_secret_async(secret: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_hashing_pool(), hash_secret, secret)


async def verify_secret_async(hashed: str, secret: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _hashing_pool(), verify_secret, hashed, secret)


class FailureLimiter:
    """Refuses a source after too many failed logins in a sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, source: str) -> deque[float]:
        times = self._failures.setdefault(source, deque())
        cutoff = time.monotonic() - 60
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def check(self, source: str) -> None:
        times = self._recent(source)
        if len(times) >= self.per_minute:
            wait = max(1, int(60 - (time.monotonic() - times[0])) + 1)
            raise TooManyFailures("too_many_failures", f"too many failed logins from {source}; "
                                  f"try again in {wait} s", retry_after=wait)
        if not times:
            self._failures.pop(source, None)  # keep the table small

    def failed(self, source: str) -> None:
        self._recent(source).append(time.monotonic())


def new_api_key() -> str:
    return "fk_" + secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def key_lookup(pepper: bytes, key: str) -> str:
    """32 bits of a peppered hash: finds a key's row without revealing the key."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()[:8]


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid("weak_password",
                      f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if password.lower() in {"password", "root", "rootroot", "12345678", "changeme"}:
        raise Invalid("weak_password", "password is too common", field="password")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. ``version`` ties a user's token to their password."""

    kind: Kind
    id: str
    version: str | None = None
    run: str | None = None  # a run's token: the task it was issued to (acts for the job's user)
    # an administrator at the hub's own machine (``ferry hub shell``, ``import``): changing
    # one's own password there needs no current password, as the database is at hand
    local: bool = False


def password_version(password_hash: str) -> str:
    """Changes whenever the password does: a new password revokes older tokens."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Issued:
    token: str
    expires: datetime


class TokenService:
    """Issues and checks access tokens."""

    def __init__(self, secret: str, user_lifetime: timedelta, client_lifetime: timedelta) -> None:
        self._secret = secret
        self._lifetimes = {"user": user_lifetime, "client": client_lifetime}

    def issue(self, kind: Kind, subject: str, version: str | None = None,
              until: datetime | None = None) -> Issued:
        """A token for ``subject``, lasting its kind's lifetime or until ``until`` (an
        aware time: when what it was issued for, an API key say, expires), whichever is
        first."""
        now = datetime.now(UTC)
        expires = now + self._lifetimes[kind]
        if until is not None:
            expires = min(expires, until)
        claims: dict[str, object] = {"sub": subject, "kind": kind, "iat": now, "exp": expires}
        if version is not None:
            claims["ver"] = version
        return Issued(jwt.encode(claims, self._secret, algorithm="HS256"), expires)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token_expired", "access token expired; log in again") from None
        except (jwt.InvalidTokenError, UnicodeError):
            raise Unauthenticated("token_invalid", "access token is not valid") from None
        kind = claims.get("kind")
        if kind not in ("user", "client"):
            raise Unauthenticated("token_invalid", "access token is not valid")
        version = claims.get("ver")
        run = claims.get("run")
        if run is not None and (kind != "user" or not isinstance(run, str)):
            raise Unauthenticated("token_invalid", "access token is not valid")
        return Principal(kind, str(claims["sub"]), str(version) if version is not None else None,
                         run)

    def issue_run(self, subject: str, version: str, task_id: str, lifetime: timedelta
                  ) -> Issued:
        """A docker run's token: it acts for the job's user, may only create child jobs of
        the run's job and read them, and stops working when the run ends (the hub checks
        the task on every use) or at ``lifetime``, whichever comes first."""
        now = datetime.now(UTC)
        expires = now + lifetime
        claims = {"sub": subject, "kind": "user", "ver": version, "run": task_id, "iat": now,
                  "exp": expires}
        return Issued(jwt.encode(claims, self._secret, algorithm="HS256"), expires)

    def issue_reset(self, subject: str, version: str, lifetime: timedelta) -> Issued:
        """A password-reset token: good for one reset (it names the password it replaces),
        never as an access token."""
        now = datetime.now(UTC)
        expires = now + lifetime
        claims = {"sub": subject, "kind": "reset", "ver": version, "iat": now, "exp": expires}
        return Issued(jwt.encode(claims, self._secret, algorithm="HS256"), expires)

    def verify_reset(self, token: str) -> tuple[str, str]:
        """The user id and password version a reset token is for; ``Malformed`` when it is not one."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub", "ver"]})
        except jwt.ExpiredSignatureError:
            raise Malformed("reset_token_expired", "the reset token expired; ask for a new "
                            "one") from None
        except (jwt.InvalidTokenError, UnicodeError):
            raise Malformed("reset_token_invalid", "the reset token is not valid") from None
        if claims.get("kind") != "reset":
            raise Malformed("reset_token_invalid", "the reset token is not valid")
        return str(claims["sub"]), str(claims["ver"])
