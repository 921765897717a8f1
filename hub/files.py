"""Files of a share, through the agent that serves it (``protocol.files``): ``ls``,
``stat``, ``mkdir``, ``rename``, ``mv``, ``delete``, with the caller's rights on the share.

The rule is the rule of a transfer job (``may_use``): ``read`` the share to list and stat
its files, ``write`` it to change them; a share the caller cannot even see answers as one
that does not exist. The hub then signs a ticket for exactly this one operation (its body's
digest, a nonce, a minute to live) and sends it to the serving agent's transfer endpoint
itself, pinning the certificate the agent enrolled with, as the agents do with each other:
the caller talks to the hub only. The agent checks the paths again against its disk
(``transports/fileops.py``) and its refusal comes back as the caller's answer.

Every change is logged with who made it (``file changed``: user, organization, share, op,
paths) and kept in ``file_changes``, which ``changes`` reads back for those who may read
the share.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import aiohttp
import msgspec
import structlog
from sqlalchemy import insert, select

from hub.bodies import invalid
from hub.errors import BadPeer, Conflict, Forbidden, Invalid, NotFound, Refusal, Unreachable
from hub.jobs.transfer_paths import may_use, share_party
from hub.runtime import Ctx
from hub.storage.models import Client, FileChange, Share, User, iso, new_id
from protocol import tickets
from protocol.files import (
    CHANGING,
    FILEOP_PATH,
    FILES,
    READING,
    TICKET_TTL,
    Changed,
    Entry,
    FileOpAnswer,
    FileOpRequest,
    FilesRequest,
    Listing,
    digest,
)
from protocol.paths import join
from protocol.tickets import FileOp

log = structlog.get_logger("hub.files")

CONNECT = 10.0  # seconds to reach the agent: past that it is taken as offline
ANSWER = 600.0  # seconds for its answer (a recursive delete or a folder's size takes time)


async def file_op(ctx: Ctx, op: FileOp, body: Any) -> Listing | Entry | Changed:
    """Do ``op`` as ``body`` (a ``FilesRequest``) says, on the agent that serves its share."""
    spec = _spec(body)
    _user(ctx)
    name, parts, _ = share_party(_prefixed(spec.path), "path")
    to = _to(op, spec, name)
    if spec.cursor and op != "ls":
        raise Invalid("invalid_value", "cursor: only ls is paged", field="cursor")
    async with ctx.db.read() as conn:
        share = await _share(conn, ctx, name, "read" if op in READING else "write")
        username = (await conn.execute(select(User.username).where(
            User.id == ctx.principal.id))).scalar() or ""
    request = FileOpRequest(op=op, path=join(parts), nonce=new_id(), to=to,
                            recursive=spec.recursive, limit=spec.limit, skip=spec.skip,
                            cursor=spec.cursor)
    answer = await _ask(ctx, share, request)
    if op in CHANGING:
        await _record(ctx, share, request, answer, username)
    return _shaped(name, op, request, answer)


async def changes(ctx: Ctx, body: Any) -> dict[str, Any]:
    """The changes made through the hub to the files of the share ``body.path`` names,
    newest first (``limit``, ``skip``), for a caller who may read the share."""
    spec = _spec(body)
    _user(ctx)
    name, _, _ = share_party(_prefixed(spec.path), "path")
    async with ctx.db.read() as conn:
        share = await _share(conn, ctx, name, "read")
        rows = (await conn.execute(
            select(FileChange).where(FileChange.share_id == share.id)
            .order_by(FileChange.created.desc(), FileChange.id.desc())
            .offset(spec.skip).limit(spec.limit))).all()
    return {"result": [{"id": r.id, "created": iso(r.created), "user": r.user_id,
                        "username": r.username, "organization": r.organization_id,
                        "share": r.share, "op": r.op, "path": r.path, "result": r.result,
                        "recursive": r.recursive} for r in rows]}


def _spec(body: Any) -> FilesRequest:
    try:
        return msgspec.convert(body, FilesRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None


def _user(ctx: Ctx) -> None:
    if ctx.principal.kind != "user" or ctx.principal.run is not None:
        raise Forbidden("forbidden", "files are worked on by users, not by agents or a "
                        "run's token")


def _prefixed(text: str) -> str:
    """``Session.link``'s rule: a share path with or without ``share=``."""
    return text if text.startswith("share=") else f"share={text}"


def _to(op: FileOp, spec: FilesRequest, name: str) -> str:
    """``to`` as the agent takes it: a name (rename), a path inside the same share (mv)."""
    if op not in ("rename", "mv"):
        if spec.to:
            raise Invalid("invalid_value", f"to: {op} takes no 'to' (rename and mv do)",
                          field="to")
        return ""
    if not spec.to:
        raise Invalid("missing_field", f"to: {op} needs 'to': "
                      + ("the new name" if op == "rename" else "where to move it"), field="to")
    if op == "rename":
        if "/" in spec.to or spec.to.startswith("share="):
            raise Invalid("invalid_name", f"to: {spec.to!r} is not a name: rename takes a new "
                          "name in the same folder (no '/'); mv moves elsewhere", field="to")
        return spec.to
    other, parts, _ = share_party(_prefixed(spec.to), "to")
    if other != name:
        raise Invalid("invalid_path", f"to: mv moves within one share ('{name}'), not to "
                      f"share '{other}': copy with a transfer job (ferry cp)", field="to")
    return join(parts)


async def _share(conn: Any, ctx: Ctx, name: str, operation: str) -> Any:
    rows = {r.name: r for r in (await conn.execute(
        select(Share.id, Share.name, Share.client_id, Client.code, Client.transfer_url,
               Client.transfer_fingerprint, Client.last_checkin)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.name == name))).all()}
    share = await may_use(conn, ctx, rows, name, "path", operation)
    if not share.transfer_url:
        raise Invalid("not_served", f"path: the agent of share '{name}' runs no transfer "
                      "endpoint: nothing can work on its files", field="path")
    if not share.transfer_fingerprint:
        raise Invalid("not_served", f"path: the agent '{share.code}' of share '{name}' is "
                      "older than file operations: upgrade it", field="path")
    if share.last_checkin is None or share.last_checkin < ctx.now - ctx.rt.offline_grace:
        since = iso(share.last_checkin) or "never"
        raise Unreachable("agent_unreachable", f"the agent '{share.code}' that serves "
                          f"share '{name}' is offline (last check-in: {since}): try again "
                          "when it is back")
    return share


async def _ask(ctx: Ctx, share: Any, request: FileOpRequest) -> FileOpAnswer:
    """Send ``request`` with its ticket to the share's agent; its answer, or its refusal
    as the caller's."""
    ticket = tickets.issue(ctx.rt.ticket_key, tickets.TicketScope(
        server=share.client_id, share=share.id, path=request.path, op=request.op, job=FILES,
        task=digest(request)), ttl=TICKET_TTL, now=ctx.now.replace(tzinfo=UTC).timestamp())
    url = f"{share.transfer_url.rstrip('/')}{FILEOP_PATH}"
    who = f"the agent '{share.code}' that serves share '{share.name}'"
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT, sock_connect=CONNECT,
                                    sock_read=ANSWER)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as client, client.post(
                url, params={"share": share.id, "op": request.op},
                data=msgspec.json.encode(request),
                headers={"Authorization": f"Ticket {ticket}",
                         "Content-Type": "application/json"},
                ssl=aiohttp.Fingerprint(bytes.fromhex(share.transfer_fingerprint))) as resp:
            raw = await resp.read()
            status = resp.status
    except aiohttp.ServerFingerprintMismatch:
        raise BadPeer("agent_mismatch", f"{who} answered at {share.transfer_url} with "
                      "another certificate than it enrolled with: nothing was done") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.warning("agent unreachable for a file operation", share=share.name,
                    agent=share.code, error=str(exc) or type(exc).__name__)
        raise Unreachable("agent_unreachable", f"{who} does not answer at "
                          f"{share.transfer_url} (offline?): try again when it is back") from None
    if status == 200:
        try:
            return msgspec.json.decode(raw, type=FileOpAnswer)
        except msgspec.DecodeError:
            raise BadPeer("agent_error", f"{who} sent an answer that is not one") \
                from None
    raise _refusal(who, status, raw)


def _refusal(who: str, status: int, raw: bytes) -> Refusal:
    """The agent's refusal as the caller's: its reason as it said it, with the field."""
    try:
        detail = msgspec.json.decode(raw)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        code, message = "agent_error", raw[:300].decode("utf-8", "replace")
    field = "to" if message.startswith("to:") else "path"
    if status == 400:
        return Invalid(code, message if message.startswith(("path:", "to:")) else
                       f"path: {message}", field=field)
    if status == 404:
        return NotFound(code, message)
    if status == 409:
        return Conflict(code, message)
    if status == 429:
        return Unreachable("agent_busy", f"{who} is busy: {message}")
    return BadPeer("agent_refused", f"{who} refused the hub's request ({status} {code}: "
                   f"{message})")


async def _record(ctx: Ctx, share: Any, request: FileOpRequest, answer: FileOpAnswer,
                  username: str) -> None:
    log.info("file changed", user=ctx.principal.id, username=username,
             organization=ctx.caller.organization, share=share.name, op=request.op,
             path=request.path, to=request.to or None, result=answer.path,
             recursive=request.recursive, changed=answer.changed)
    if not answer.changed:
        return
    async with ctx.db.write() as conn:
        await conn.execute(insert(FileChange).values(
            id=new_id(), created=ctx.now, user_id=ctx.principal.id, username=username,
            organization_id=ctx.caller.organization, share_id=share.id, share=share.name,
            op=request.op, path=request.path,
            result="" if request.op == "delete" else answer.path,
            recursive=request.recursive))


def _entry(share: str, entry: Entry) -> Entry:
    return msgspec.structs.replace(entry, path=f"share={share}/{entry.path}")


def _shaped(share: str, op: FileOp, request: FileOpRequest, answer: FileOpAnswer
            ) -> Listing | Entry | Changed:
    if op == "ls":
        return Listing(result=[_entry(share, e) for e in answer.entries],
                       next=answer.next or None)
    if op == "stat":
        if len(answer.entries) != 1:
            raise BadPeer("agent_error", "the agent's answer has no entry")
        return _entry(share, answer.entries[0])
    return Changed(op=op, path=f"share={share}/{request.path}", changed=answer.changed,
                   result="" if op == "delete" else f"share={share}/{answer.path}")
