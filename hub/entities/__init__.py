"""The entities the API and the query language know, by name."""

from __future__ import annotations

from hub.entities.apikeys import ApiKeyEntity
from hub.entities.base import Entity
from hub.entities.clients import ClientEntity
from hub.entities.engines import EngineEntity
from hub.entities.jobs import JobEntity
from hub.entities.limits import LimitEntity
from hub.entities.nodes import NodeEntity
from hub.entities.organizations import CollaborationEntity, OrganizationEntity
from hub.entities.queues import QueueEntity
from hub.entities.roles import RoleEntity, RuleEntity
from hub.entities.shares import ShareEntity
from hub.entities.sites import SiteEntity
from hub.entities.tasks import TaskEntity
from hub.entities.users import UserEntity
from hub.entities.webhooks import DeliveryEntity, WebhookEntity
from hub.errors import NotFound

ENTITIES: dict[str, Entity] = {
    e.name.lower(): e
    for e in (ClientEntity(), NodeEntity(), UserEntity(), SiteEntity(), ApiKeyEntity(),
              JobEntity(), TaskEntity(), ShareEntity(), OrganizationEntity(),
              CollaborationEntity(), RoleEntity(), RuleEntity(), QueueEntity(), LimitEntity(),
              EngineEntity(), WebhookEntity(), DeliveryEntity())
}


def entity(name: str) -> Entity:
    """The entity called ``name`` (any case); ``NotFound`` naming the known ones otherwise."""
    found = ENTITIES.get(name.lower())
    if found is None:
        known = ", ".join(e.name for e in ENTITIES.values())
        raise NotFound("unknown_entity", f"unknown entity '{name}' (known: {known})")
    return found


__all__ = ["ENTITIES", "Entity", "entity"]
