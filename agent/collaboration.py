"""A node of a collaboration, at each enrollment: the hub's word on the collaboration
is pinned, and the organization's key is settled (agent/orgkey.py says how).

Each enrollment answer's word on the collaboration (is it encrypted?) is pinned first,
when the node runs docker work (``Pins``, agent/pins.py): runs are held to it from
then on. Loaded by the agent on the first answer that names a collaboration: it
brings cryptography.
"""

from __future__ import annotations

import asyncio

import structlog

from agent.hubclient import HubClient, Retryable
from agent.orgkey import OrgKey
from agent.pins import Pins
from core.errors import ApiError
from protocol import EnrollResponse, OrganizationKeyRequest, routes, sealing

log = structlog.get_logger("agent.orgkey")

PUBLISH_ATTEMPTS = 5


async def settle(key: OrgKey, hub: HubClient, answer: EnrollResponse, pins: Pins | None
                 ) -> None:
    """Compare the key here with the one the hub publishes; publish one when the hub has
    none. Problems are kept in ``key.problem`` and logged as errors."""
    key.organization = answer.organization
    if answer.organization is None or answer.collaboration is None:
        return  # not a node of a collaboration: no key needed
    if pins is not None:  # first: runs are held to it from now on
        try:
            warning = await asyncio.to_thread(pins.enrolled, answer.collaboration,
                                              answer.encrypted)
        except OSError as exc:  # not pinned: runs are refused until it is
            warning = f"cannot write {pins.path}: {exc.strerror or exc}"
        if warning:
            log.warning("the hub's word on the collaboration differs from the pin",
                        problem=warning)
    try:
        local = await asyncio.to_thread(key.read)
    except OSError as exc:
        key.fail(f"cannot read the organization key file {key.path}: {exc.strerror or exc}")
        return
    published = answer.organization_key
    if local is None and published:
        key.fail(f"organization {answer.organization} has a published key, but this node "
                 f"has no private key at {key.path}: copy the organization key file from "
                 "the node that published it (Ferry never replaces an organization's key)")
        return
    if local is None:
        local = await asyncio.to_thread(sealing.new_private_key)
        try:
            await asyncio.to_thread(key.write, local)
        except FileExistsError:  # another agent of this data folder was quicker
            local = await asyncio.to_thread(key.path.read_bytes)
        log.info("made the organization's key pair", organization=answer.organization,
                 file=str(key.path))
    try:
        mine = sealing.public_key(local)
    except sealing.SealError as exc:
        key.fail(f"{key.path}: {exc}")
        return
    if published and not sealing.same_key(local, published):
        key.fail(f"key mismatch: the private key at {key.path} is not the one whose "
                 f"public half organization {answer.organization} published; this node "
                 "runs no sealed work until the right key file is in place (Ferry never "
                 "replaces an organization's key)")
        return
    if not published:
        try:
            await hub.call(routes.ORGANIZATION_KEY, OrganizationKeyRequest(public_key=mine),
                           attempts=PUBLISH_ATTEMPTS)
        except (ApiError, Retryable) as exc:  # another node published first, or no hub
            key.fail(f"could not publish the organization's public key: {exc}")
            return
        log.info("published the organization's public key", organization=answer.organization)
    key.settled(local, mine)
