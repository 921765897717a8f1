"""Passwords, API keys and access tokens.

Passwords and API keys are stored as argon2id hashes. Tokens are short
JWTs (HS256) naming who holds them: ``kind`` is ``user`` or ``client``.
Hashing runs in a thread: argon2 is slow on purpose and releases the GIL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ferry.errors import ApiError

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


async def hash_secret_async(secret: str) -> str:
    return await asyncio.to_thread(hash_secret, secret)


async def verify_secret_async(hashed: str, secret: str) -> bool:
    return await asyncio.to_thread(verify_secret, hashed, secret)


def new_api_key() -> str:
    return "fk_" + secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def key_lookup(pepper: bytes, key: str) -> str:
    """32 bits of a peppered hash: finds a key's row without revealing the key."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()[:8]


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ApiError(422, "weak_password",
                       f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                       {"field": "password"})
    if password.lower() in {"password", "root", "rootroot", "12345678", "changeme"}:
        raise ApiError(422, "weak_password", "password is too common", {"field": "password"})


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    kind: Kind
    id: str


@dataclass(frozen=True)
class Issued:
    token: str
    expires: datetime


class TokenService:
    """Issues and checks access tokens."""

    def __init__(self, secret: str, user_lifetime: timedelta, client_lifetime: timedelta) -> None:
        self._secret = secret
        self._lifetimes = {"user": user_lifetime, "client": client_lifetime}

    def issue(self, kind: Kind, subject: str) -> Issued:
        now = datetime.now(UTC)
        expires = now + self._lifetimes[kind]
        claims = {"sub": subject, "kind": kind, "iat": now, "exp": expires}
        return Issued(jwt.encode(claims, self._secret, algorithm="HS256"), expires)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "access token expired; log in again") from None
        except jwt.InvalidTokenError:
            raise ApiError(401, "token_invalid", "access token is not valid") from None
        kind = claims.get("kind")
        if kind not in ("user", "client"):
            raise ApiError(401, "token_invalid", "access token is not valid")
        return Principal(kind, str(claims["sub"]))
