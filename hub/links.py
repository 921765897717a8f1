"""Download links (``protocol.links``): a URL on the serving agent's transfer endpoint
that gives one file of a share to whoever holds it, until it expires.

A link is a transfer ticket the hub signs, no more: nothing is stored, and a link cannot
be taken back before it expires (hence the limit on ``expires``, a week). So the rule to
make one is the rule to take the file out through a transfer job: the caller must
``read`` the share (``may_use``, as a job's source is checked); a share it cannot even see
answers as one that does not exist. Each link made is logged with who made it.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy import select

from hub.bodies import invalid
from hub.errors import Forbidden, Invalid
from hub.jobs.transfer_paths import may_use, share_party
from hub.runtime import Ctx
from hub.storage.models import Client, Share, iso, new_id
from protocol import tickets
from protocol.links import LINK, Link, LinkRequest, link_url
from protocol.paths import join

log = structlog.get_logger("hub.links")


async def make_link(ctx: Ctx, body: Any) -> Link:
    """A link to the file ``body.path`` names, valid ``body.expires`` seconds."""
    try:
        spec = msgspec.convert(body, LinkRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    if ctx.principal.kind != "user" or ctx.principal.run is not None:
        raise Forbidden("forbidden", "download links are made by users, not by agents or "
                        "a run's token")
    name, parts, folder = share_party(spec.path, "path")
    if folder:
        raise Invalid("invalid_path", "path: a link is for one file: name it "
                      "(share=<share>/<path to the file>, not a folder ending in '/' or a "
                      "share's root)", field="path")
    async with ctx.db.read() as conn:
        rows = {r.name: r for r in (await conn.execute(
            select(Share.id, Share.name, Share.client_id, Client.transfer_url,
                   Client.transfer_fingerprint, Client.transfer_pin)
            .outerjoin(Client, Client.id == Share.client_id)
            .where(Share.name == name))).all()}
        share = await may_use(conn, ctx, rows, name, "path", "read")
    if not share.transfer_url:
        raise Invalid("not_served", f"path: the agent of share '{name}' runs no transfer "
                      "endpoint: nothing would answer the link", field="path")
    path = join(parts)
    link_id = new_id()
    ticket = tickets.issue(ctx.rt.ticket_key, tickets.TicketScope(
        server=share.client_id, share=share.id, path=path, op="read", job=LINK,
        task=link_id), ttl=spec.expires, now=ctx.now.replace(tzinfo=UTC).timestamp())
    log.info("download link made", link=link_id, share=name, path=path, user=ctx.principal.id,
             expires_in=spec.expires)
    return Link(url=link_url(share.transfer_url, share.id, path, ticket), name=parts[-1],
                share=name, path=path,
                expires=iso(ctx.now + timedelta(seconds=spec.expires)) or "",
                expires_in=spec.expires, pinnedpubkey=share.transfer_pin or "",
                fingerprint=share.transfer_fingerprint or "")
