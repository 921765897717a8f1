"""Where a transfer job's files come from and where they land.

Sources and destinations are share paths (``share=projects/thefilm/a.mov``) or, for a
destination, a party that receives them (a user or a site) until a path is set. Each
file lands where it *mirrors* its source: its path below the job's source folder is kept
below the job's destination folder (``landing``). Moving files is a right of its own: a
caller must ``read`` the source share and ``write`` the destination share, whatever it
may see of their records (``may_use``, ``may_move``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select

from hub.access import SHARES
from hub.errors import Invalid
from hub.runtime import Ctx
from hub.storage.models import Client, Share, Site, User
from protocol.paths import PathRefused, join, share_parts, split_share_path


def share_party(text: str, field: str) -> tuple[str, tuple[str, ...], bool]:
    """``share=<name>/<path>`` as (share name, path parts, names a folder: ends in '/' or is
    the share's root)."""
    if not isinstance(text, str) or not text.startswith("share="):
        raise Invalid("invalid_path", f"{field}: write a share path, "
                      "share=<share>/<path>", field=field)
    try:
        name, parts = split_share_path(text)
    except PathRefused as exc:
        raise Invalid("invalid_path", f"{field}: {exc}", field=field) from None
    return name, parts, text.endswith("/") or not parts


async def find_party(conn: Any, text: str, field: str) -> tuple[str, str]:
    """A receiving user or site as (scope, id): ``lars@edit.com``, ``hq``, ``user:lars``,
    ``site:stockholm``. A bare name is a site if one has it, else a user."""
    scope, sep, value = text.partition(":")
    if not sep or scope not in ("user", "site"):
        scope, value = "", text
    value = value.strip()
    if not value:
        raise Invalid("unknown_party", f"{field}: names no user or site", field=field)
    if scope in ("", "site"):
        site = (await conn.execute(select(Site.id).where(
            or_(Site.id == value, Site.name == value)))).scalar()
        if site is not None:
            return "site", site
    if scope in ("", "user"):
        user = (await conn.execute(select(User.id).where(or_(
            User.id == value, User.username == value,
            func.lower(User.email) == value.lower())))).scalar()
        if user is not None:
            return "user", user
    what = {"": "no site or user", "site": "no site", "user": "no user"}[scope]
    raise Invalid("unknown_party", f"{field}: {what} named '{value}' (a destination is a "
                  "user, a site or a share path share=<share>/<path>)", field=field)


def landing(transfer: dict[str, Any], item: str) -> str:
    """Where ``item`` lands when it mirrors the job's paths. The job's own source lands
    inside the destination folder (``into_folder``) or at the destination path itself;
    what is below the source's folder keeps its place below the destination's; anything
    else lands by its name beside the job's own source. A frame sequence as the job's
    source lands *in* the destination folder: its frames keep their names there."""
    src, dst = share_parts(transfer["source_path"]), share_parts(transfer["destination_path"])
    if transfer.get("sequence") and item == transfer["source_path"]:
        return join(dst)
    parts = share_parts(item)
    into = transfer["into_folder"]
    origin, target = (src[:-1], dst) if into else (src, dst)
    if parts[:len(origin)] == origin:
        return join(target + parts[len(origin):])
    if not into and src and parts[:len(src) - 1] == src[:-1]:
        return join(dst[:-1] + parts[len(src) - 1:])
    return join((dst if into else dst[:-1]) + parts[-1:])


def relanding(previous: dict[str, Any] | None, transfer: dict[str, Any], item: str,
              old: str) -> str:
    """Where a task lands under the job's new destination path. A task that landed
    somewhere before a resend keeps its place relative to the job's landing (below the
    job's source, or beside it); one named elsewhere on the share keeps its path; a new
    one mirrors."""
    if not old or previous is None or item == transfer["source_path"]:
        return landing(transfer, item)
    before = {**transfer, **previous}
    was = share_parts(old)
    for old_base, new_base in (
            (share_parts(landing(before, transfer["source_path"])),
             share_parts(landing(transfer, transfer["source_path"]))),
            (_beside(before), _beside(transfer))):
        if old_base and was[:len(old_base)] == old_base:
            return join(new_base + was[len(old_base):])
    return old


def _beside(transfer: dict[str, Any]) -> tuple[str, ...]:
    """The folder the job's source lands in."""
    dst = share_parts(transfer["destination_path"])
    return dst if transfer["into_folder"] else dst[:-1]


async def share_rows(conn: Any, names: list[str]) -> dict[str, Any]:
    return {r.name: r for r in (await conn.execute(
        select(Share.id, Share.name, Share.path, Share.client_id, Client.transfer_url,
               Client.user_id, Client.site_id)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.name.in_(names)))).all()}


def served(shares: dict[str, Any], name: str, field: str) -> Any:
    if name not in shares:
        raise Invalid("unknown_share", f"{field}: no share named '{name}'", field=field)
    if shares[name].client_id is None:
        raise Invalid("unknown_share", f"{field}: share '{name}' has no agent to serve "
                      "it", field=field)
    return shares[name]


def runner(source: Any, dest: Any, direction: str) -> str:
    """The agent that runs the job's tasks (the destination's when pulling, the source's
    when pushing). Both must run a transfer endpoint: one is called, the other moves."""
    for side, field in ((source, "source"), (dest, "destination")):
        if not side.transfer_url:  # it can neither serve a peer nor run transfers itself
            raise Invalid("not_served", f"{field}: the agent of share '{side.name}' runs "
                          "no transfer endpoint", field=field)
    return str((dest if direction == "pull" else source).client_id)


async def may_use(conn: Any, ctx: Ctx, shares: dict[str, Any], name: str, field: str,
                  operation: str) -> Any:
    """The share called ``name``, served by an agent, once the caller may ``read`` its
    files (to move them out) or ``write`` them (to move files in): ``Forbidden`` naming
    the rule otherwise. Seeing the share's record is neither. A share the caller cannot
    even see answers as one that does not exist: a job cannot probe other organizations'
    shares."""
    visible = SHARES.allowed(ctx, "view")  # Forbidden naming the rule: it sees no share
    share = shares.get(name)
    if share is not None and visible is not None and (await conn.execute(
            select(Share.id).where(Share.id == share.id, visible))).first() is None:
        share = None
    if share is None:
        raise Invalid("unknown_share", f"{field}: no share named '{name}'", field=field)
    await SHARES.check(conn, ctx, operation, share.id)
    return served(shares, name, field)


async def may_move(conn: Any, ctx: Ctx, transfer: dict[str, Any]) -> None:
    """A caller who adds files to a transfer job moves them on its own account: it must
    read the job's source share and write its destination share (``Forbidden`` naming the
    rule)."""
    await SHARES.check(conn, ctx, "read", transfer["source_share"])
    if transfer.get("destination_share") is not None:
        await SHARES.check(conn, ctx, "write", transfer["destination_share"])


def has_path(spec: dict[str, Any]) -> bool:
    """The job knows where its files land (a pending job does not)."""
    return spec.get("transfer", {}).get("destination_share") is not None
