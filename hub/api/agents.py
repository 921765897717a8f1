"""What agents call: enroll with a node key, check in, say goodbye."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from msgspec import to_builtins
from sqlalchemy import delete, insert, or_, select, update

from core.errors import ApiError
from hub.api.common import RUNTIME, Route, client_ip, json_response, principal, read_body, runtime
from hub.checkins import CheckinWriter
from hub.dashboard.history import HISTORY
from hub.entities.sites import DEFAULT_SITE
from hub.keys import match_key
from hub.security import Principal
from hub.storage.models import (
    Bucket,
    Client,
    Collaboration,
    Node,
    Organization,
    Site,
    iso,
    new_id,
    utcnow,
)
from protocol import (
    CheckinRequest,
    CheckinResponse,
    ClientStatus,
    ClientType,
    EnrollRequest,
    EnrollResponse,
    OrganizationKeyRequest,
    routes,
    sealing,
    tickets,
)

log = structlog.get_logger("hub.agents")

WRITER: web.AppKey[CheckinWriter] = web.AppKey("checkin_writer", CheckinWriter)


def agent_principal(request: web.Request) -> Principal:
    who = principal(request)
    if who.kind != "client":
        raise ApiError(403, "forbidden", "only agents call this endpoint (use a client token)")
    return who


async def enroll(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await read_body(request, EnrollRequest)
    source = client_ip(request)
    rt.logins.check(source)
    key = await match_key(rt, body.api_key)
    if key is None or key.node_id is None:
        rt.logins.failed(source)
        raise ApiError(401, "enroll_refused", "the hub does not know this node API key")
    now = utcnow()
    async with rt.db.write() as conn:
        node = (await conn.execute(select(Node).where(Node.id == key.node_id))).first()
        if node is None:  # deleted since its key was checked
            raise ApiError(401, "enroll_refused", "the hub does not know this node API key")
        site_name = body.site or DEFAULT_SITE
        site_id = (await conn.execute(select(Site.id).where(
            or_(Site.name == site_name, Site.id == site_name)))).scalar()
        if site_id is None:
            raise ApiError(422, "unknown_site", f"the hub has no site '{site_name}'",
                           {"field": "site"})
        current = (await conn.execute(select(Client).where(
            Client.node_id == node.id, Client.parent_id.is_(None)))).first()
        fields = dict(code=body.code, type=body.type, os=body.os, username=body.username,
                      version=body.version, host_id=body.host_id, wan_ip=client_ip(request),
                      last_checkin=now, gone=False, modified=now,
                      transfer_url=body.transfer.url if body.transfer else "",
                      transfer_fingerprint=body.transfer.fingerprint if body.transfer else "",
                      transfer_pin=body.transfer.pin if body.transfer else "")
        if current is not None and current.machine_id != body.machine_id:
            raise ApiError(409, "node_taken", f"node '{node.name}' is enrolled by another machine "
                           f"(client {current.id}, host {current.code}); delete that client once "
                           "it is offline, or create a node for this machine")
        if current is None:
            client_id = new_id()
            await conn.execute(insert(Client).values(
                id=client_id, node_id=node.id, user_id=node.user_id, site_id=site_id,
                machine_id=body.machine_id, description="", disabled=False, meta={},
                created=now, **fields))
            disabled = False
        else:
            client_id = current.id
            if body.site is not None:
                fields["site_id"] = site_id
            await conn.execute(update(Client).where(Client.id == client_id).values(**fields))
            disabled = current.disabled
        lanes = await ensure_lanes(conn, client_id, body.lanes, body.code, now)
        federation = await _federation(conn, node)
    issued = rt.tokens.issue("client", client_id)
    return json_response(EnrollResponse(**federation,
        client_id=client_id, token=issued.token,
        expires=iso(issued.expires.replace(tzinfo=None)) or "",
        checkin_interval=rt.config.checkin_interval,
        status=ClientStatus.DISABLED if disabled else ClientStatus.ONLINE, lanes=lanes,
        ticket_key=tickets.public_key_text(rt.ticket_key),
        shares=await rt.shares.for_client(client_id)))


async def _federation(conn: Any, node: Any) -> dict[str, Any]:
    """The node's organization, collaboration and the organization's published key."""
    if node.organization_id is None:
        return {}
    key = (await conn.execute(select(Organization.public_key).where(
        Organization.id == node.organization_id))).scalar()
    encrypted = node.collaboration_id is not None and bool((await conn.execute(
        select(Collaboration.encrypted).where(Collaboration.id == node.collaboration_id)
    )).scalar())
    return {"organization": node.organization_id, "collaboration": node.collaboration_id,
            "encrypted": encrypted, "organization_key": key or ""}


async def organization_key(request: web.Request) -> web.Response:
    """An agent publishes its organization's public key: once, when none is published. A
    different key is refused: an organization's key is never replaced this way (the
    runs sealed for it would open for nobody)."""
    who = agent_principal(request)
    body = await read_body(request, OrganizationKeyRequest)
    try:
        sealing.parse_public_key(body.public_key)
    except sealing.SealError as exc:
        raise ApiError(422, "invalid_value", f"field 'public_key': {exc}",
                       {"field": "public_key"}) from None
    rt = runtime(request)
    async with rt.db.write() as conn:
        org = (await conn.execute(select(Node.organization_id).join(
            Client, Client.node_id == Node.id).where(Client.id == who.id))).scalar()
        if org is None:
            raise ApiError(409, "no_organization", "this agent's node belongs to no "
                           "organization")
        current = (await conn.execute(select(Organization.public_key).where(
            Organization.id == org).with_for_update())).scalar()
        if current and current != body.public_key:
            raise ApiError(409, "key_mismatch", "the organization has another public key "
                           "already; it is never replaced by an agent (copy the organization's "
                           "key file from the node that published it, or an administrator "
                           "changes the key)")
        if not current:
            await conn.execute(update(Organization).where(Organization.id == org).values(
                public_key=body.public_key, modified=utcnow(), modifier=who.id))
            log.info("organization key published", organization=org, client=who.id)
    return json_response({"success": True, "organization": org})


async def ensure_lanes(conn: Any, client_id: str, count: int, code: str, now: Any) -> list[str]:
    """The agent's compute lanes (clients of type 5 whose parent is the agent), ``count`` of
    them in order; extra ones go unless they still hold work."""
    agent = (await conn.execute(select(Client).where(Client.id == client_id))).one()
    lanes = [r.id for r in (await conn.execute(select(Client.id).where(
        Client.parent_id == client_id).order_by(Client.id))).all()]
    extra = lanes[count:]
    if extra:
        busy = {r.lane_id for r in (await conn.execute(select(Bucket.lane_id).where(
            Bucket.lane_id.in_(extra), Bucket.status == "leased"))).all()}
        await conn.execute(delete(Client).where(Client.id.in_([x for x in extra
                                                                if x not in busy])))
    for n in range(len(lanes), count):
        lane_id = new_id()
        await conn.execute(insert(Client).values(
            id=lane_id, code=f"{code}:{n + 1}", type=int(ClientType.COMPUTE_LANE),
            parent_id=client_id, user_id=agent.user_id, site_id=agent.site_id,
            node_id=None, description=f"compute lane {n + 1} of {code}",
            host_id=agent.host_id, machine_id=agent.machine_id, disabled=False, gone=False,
            os=agent.os, username=agent.username, version=agent.version, wan_ip=agent.wan_ip,
            last_checkin=now, meta={}, tags=[], created=now, modified=now))
        lanes.append(lane_id)
    await conn.execute(update(Client).where(Client.parent_id == client_id).values(
        last_checkin=now, gone=False, site_id=agent.site_id, version=agent.version))
    return lanes[:count]


async def checkin(request: web.Request) -> web.Response:
    who = agent_principal(request)
    body = await read_body(request, CheckinRequest)
    rt = runtime(request)
    metrics = to_builtins(body.metrics)
    disabled = await request.app[WRITER].record(
        who.id, utcnow(), metrics, body.host_id, client_ip(request),
        body.code, body.os, body.username, body.version, body.status_reason)
    if disabled is None:
        raise ApiError(401, "client_unknown", "this client no longer exists at the hub; "
                       "enroll again")
    request.app[HISTORY].add(who.id, metrics)  # the dashboard's sparklines: the last hour
    return json_response(CheckinResponse(
        client_id=who.id, status=ClientStatus.DISABLED if disabled else ClientStatus.ONLINE,
        checkin_interval=rt.config.checkin_interval, server_time=iso(utcnow()) or "",
        shares=await rt.shares.for_client(who.id)))


async def goodbye(request: web.Request) -> web.Response:
    """A stopping agent goes offline at once instead of after the grace period."""
    who = agent_principal(request)
    rt = request.app[RUNTIME]
    async with rt.db.write() as conn:
        await conn.execute(update(Client).where(
            or_(Client.id == who.id, Client.parent_id == who.id)).values(
                gone=True, status_reason=None))  # offline says enough
    return json_response({"client_id": who.id, "status": "offline"})


ROUTES = [
    Route.serving(routes.ENROLL, enroll, "Enroll an agent with its node API key"),
    Route.serving(routes.CHECKIN, checkin, "Check in with live metrics"),
    Route.serving(routes.GOODBYE, goodbye, "Go offline now (agent is stopping)"),
    Route.serving(routes.ORGANIZATION_KEY, organization_key, "Publish the organization's "
                  "public key (once; a different one is refused)"),
]
