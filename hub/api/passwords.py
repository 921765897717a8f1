"""Passwords: change one's own, and reset a lost one by email.

``POST /password/change`` needs the current password, not a token, so that a user
whose password must be changed (a weak one from a batch import) can do it.
``POST /password/lost`` mails a reset token when the hub has ``smtp`` configured;
it answers the same whether or not the user exists. ``POST /password/reset`` sets a
new password with that token, once: the token names the password it replaces.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from typing import Annotated

import msgspec
import structlog
from aiohttp import web
from sqlalchemy import func, select, update

from core.errors import ApiError
from hub.api.auth import DUMMY_HASH
from hub.api.common import Route, client_ip, json_response, read_body, runtime
from hub.config import HubConfig
from hub.errors import Invalid
from hub.security import (
    check_password_strength,
    hash_secret_async,
    password_version,
    verify_secret_async,
)
from hub.storage.models import User, utcnow

log = structlog.get_logger("hub.passwords")

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class ChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    password: Text
    new_password: Text


class LostRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=255)] | None = None


class ResetRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    reset_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    password: Text


async def _set(request: web.Request, user_id: str, password: str) -> None:
    check_password_strength(password)
    hashed = await hash_secret_async(password)
    async with runtime(request).db.write() as conn:
        await conn.execute(update(User).where(User.id == user_id).values(
            password_hash=hashed, password_change_required=False, modified=utcnow()))


async def change(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await read_body(request, ChangeRequest)
    source = client_ip(request)
    rt.logins.check(source)
    async with rt.db.read() as conn:
        row = (await conn.execute(select(User.id, User.password_hash)
                                  .where(User.username == body.username))).first()
    ok = await verify_secret_async(row.password_hash if row else DUMMY_HASH, body.password)
    if row is None or not ok:
        rt.logins.failed(source)
        raise ApiError(401, "bad_credentials", "wrong username or password")
    if body.new_password == body.password:
        raise ApiError(422, "invalid_value", "the new password must differ from the old one",
                       {"field": "new_password"})
    try:
        await _set(request, row.id, body.new_password)
    except Invalid as exc:  # its answer names the field of this request
        raise Invalid(exc.code, exc.message, field="new_password") from None
    log.info("password changed", user=row.id)
    return json_response({"success": True, "message": "password changed; log in again"})


def _send(config: HubConfig, to: str, subject: str, text: str) -> None:
    """Send one mail through the configured server (STARTTLS when it offers it; never
    credentials in the clear to a server that is not this machine)."""
    smtp = config.smtp
    assert smtp is not None
    sender = config.support_email or smtp.username or "ferry@localhost"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(text)
    with smtplib.SMTP(smtp.server, smtp.port, timeout=15) as server:
        server.ehlo()
        if server.has_extn("starttls"):
            server.starttls(context=ssl.create_default_context())
            server.ehlo()
        elif smtp.username and smtp.server not in ("127.0.0.1", "::1", "localhost"):
            raise smtplib.SMTPException("the mail server offers no STARTTLS; not sending the "
                                        "password over a plain connection")
        if smtp.username:
            server.login(smtp.username, smtp.password or "")
        server.send_message(message)


async def lost(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await read_body(request, LostRequest)
    if (body.username is None) == (body.email is None):
        raise ApiError(422, "invalid_body", "send either username or email")
    if rt.config.smtp is None:
        raise ApiError(409, "no_smtp", "this hub sends no email (no 'smtp' in its config); ask "
                       "an administrator to set a new password")
    rt.logins.check(client_ip(request))  # the same budget as logins: no mail flood
    rt.logins.failed(client_ip(request))
    # by the one field given: a username never matches by a missing email, nor the reverse
    found = User.username == body.username if body.username is not None \
        else func.lower(User.email) == (body.email or "").lower()
    async with rt.db.read() as conn:
        row = (await conn.execute(select(User.id, User.email, User.password_hash)
                                  .where(found).order_by(User.id).limit(1))).first()
    if row is not None and row.email:
        minutes = rt.config.email_token_validity_minutes
        issued = rt.tokens.issue_reset(row.id, password_version(row.password_hash),
                                       timedelta(minutes=minutes))
        text = (f"A new password was asked for your Ferry account.\n\nReset token (valid "
                f"{minutes} minutes, once):\n\n{issued.token}\n\nUse it with POST "
                f"{rt.config.api_prefix}/password/reset {{\"reset_token\", \"password\"}}.\n"
                "If you did not ask for this, ignore this mail.\n")
        try:
            await asyncio.to_thread(_send, rt.config, row.email, "Ferry password reset", text)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("reset mail not sent", user=row.id, error=str(exc))
            raise ApiError(503, "mail_failed", "the hub could not send the mail; try again "
                           "later or ask an administrator") from None
        log.info("reset mail sent", user=row.id)
    return json_response({"success": True, "message": "if that user exists and has an email "
                          "address, a reset token was sent to it"})


async def reset(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await read_body(request, ResetRequest)
    user_id, version = rt.tokens.verify_reset(body.reset_token)
    async with rt.db.read() as conn:
        stored = (await conn.execute(select(User.password_hash).where(User.id == user_id))
                  ).scalar()
    if stored is None or password_version(stored) != version:
        raise ApiError(400, "reset_token_used", "this reset token was used already, or the "
                       "password changed since it was sent")
    await _set(request, user_id, body.password)
    log.info("password reset", user=user_id)
    return json_response({"success": True, "message": "password set; log in with it"})


ROUTES = [
    Route("POST", "/password/change", change, "Change your password (needs the current one)",
          auth=None, body=ChangeRequest),
    Route("POST", "/password/lost", lost, "Mail a reset token (when the hub has smtp)",
          auth=None, body=LostRequest),
    Route("POST", "/password/reset", reset, "Set a new password with a mailed reset token",
          auth=None, body=ResetRequest),
]
