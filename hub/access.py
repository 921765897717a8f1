"""Which records a caller may reach: the scopes of ``hub/permissions.py`` as SQL.

An :class:`Access` says, for the rows of one table, whose they are (``owner``), which
organization and collaboration they belong to, and what a narrowed token (a docker
run's) is confined to. From that it answers the two questions every read and write asks:
which rows may this caller view, edit, …  (``allowed``, a condition to add to a query),
and may it do so to this one record (``check``: ``NotFound`` when there is no such
record or it is another organization's that the caller may not see, ``Forbidden`` naming
the narrowest missing rule when it is out of reach).

The entities of the API (``hub/entities``) are accesses with a query schema and a
record shape; job logic (``hub/jobs``) checks jobs and shares through the accesses
defined here, so the same rules hold whether a request or a job's creation asks.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from hub import permissions
from hub.errors import Forbidden, NotFound
from hub.runtime import Ctx
from hub.storage.models import Client, Job, Node, Share, Task
from protocol import BucketKind


def scope_of_organization(ctx: Ctx, organization: str | None) -> str:
    """The scope a record of ``organization`` falls in, for this caller."""
    if organization is not None and organization == ctx.caller.organization:
        return "organization"
    if organization is not None and organization in ctx.caller.partners:
        return "collaboration"
    return "global"


def client_collaboration(client_id: Any) -> Any:
    """The collaboration of a client: the one its node was made for (or none)."""
    inner = aliased(Client)
    return (select(Node.collaboration_id).join(inner, inner.node_id == Node.id)
            .where(inner.id == client_id).scalar_subquery())


def client_organization(client_id: Any) -> Any:
    """The organization of a client: that of the node it enrolled with."""
    inner = aliased(Client)  # never correlated with a Client of the outer query
    return (select(Node.organization_id).join(inner, inner.node_id == Node.id)
            .where(inner.id == client_id).scalar_subquery())


def in_group(group: str) -> ColumnElement[bool]:
    """The docker jobs of a job group (the reference's ``job_id``): its first job and
    every child job that carries its id."""
    return and_(Job.kind == BucketKind.DOCKER, or_(Job.id == group,
                                                   Job.spec["job_id"].as_string() == group))


class Access:
    """Who may reach the rows of one table, and how."""

    name: ClassVar[str]  # what a record is called in answers ("no Job with id …")
    resource: ClassVar[str]  # its name in rules (hub/permissions.py)
    model: ClassVar[Any]  # the mapped class of the rows

    def id_column(self) -> Any:
        return self.model.id

    def owner(self, ctx: Ctx) -> Any:
        """The column naming the user (or, for an agent's token, the agent) a row is
        ``own`` to; None: no row is anybody's own."""
        return None

    def organization(self) -> Any:
        """An expression giving the organization a row belongs to; None: no organization."""
        return None

    def collaboration(self) -> Any:
        """An expression giving the collaboration a row belongs to (None in a row: none),
        for records that can belong to one (jobs, tasks, nodes, agents, shares). Then the
        ``collaboration`` scope reaches the rows of the caller's organization and those
        that belong to one of its collaborations, never a partner's other records. None:
        the scope reaches every record of a partner organization (users, organizations)."""
        return None

    def live(self) -> ColumnElement[bool] | None:
        """Rows that are there for a check: the others (a deleted job) are answered as
        records that never were; None: every row."""
        return None

    def confine(self, ctx: Ctx) -> ColumnElement[bool] | None:
        """Rows a narrowed token (a docker run's) is confined to, whatever its rules say;
        None: no confinement. Only jobs and tasks are reachable by a run's token at all."""
        return None if ctx.caller.group is None else false()

    def in_scope(self, ctx: Ctx, scope: str) -> ColumnElement[bool] | None:
        """Rows within ``scope`` of this caller (None: all of them)."""
        caller = ctx.caller
        if scope == "global":
            return None
        if scope == "own":
            owner = self.owner(ctx)
            return false() if owner is None else owner == caller.id
        organization = self.organization()
        if organization is None:
            return false()
        mine = false() if caller.organization is None else organization == caller.organization
        if scope == "organization":
            return mine
        collaboration = self.collaboration()
        if collaboration is not None:
            return or_(mine, collaboration.in_(sorted(caller.collaborations)))
        within: ColumnElement[bool] = organization.in_(sorted(caller.partners))
        return within

    def allowed(self, ctx: Ctx, operation: str = "view", resource: str | None = None
                ) -> ColumnElement[bool] | None:
        """Rows the caller may ``operation``: ``Forbidden`` naming the rule when it may do
        it to none. ``resource``: the rules of another resource that lives in these rows
        (a job's tasks)."""
        resource = resource or self.resource
        widest = ctx.caller.widest(resource, operation)
        if widest is None:
            ctx.caller.need(resource, operation, permissions.RESOURCES[resource][0])
        where = self.in_scope(ctx, widest or "global")
        confined = self.confine(ctx)
        if confined is None:
            return where
        return confined if where is None else and_(where, confined)

    async def check(self, conn: AsyncConnection, ctx: Ctx, operation: str,
                    entity_id: str, resource: str | None = None) -> None:
        """May the caller ``operation`` this record? ``NotFound`` when there is no such
        record, or when it is another organization's and out of the caller's sight;
        ``Forbidden`` naming the narrowest missing rule when it is otherwise out of the
        caller's reach."""
        resource = resource or self.resource
        allowed = self.allowed(ctx, operation, resource)
        exists = select(self.id_column()).where(self.id_column() == entity_id)
        live = self.live()
        if live is not None:
            exists = exists.where(live)
        if allowed is not None and (await conn.execute(exists.where(allowed))).first():
            return
        if (await conn.execute(exists)).first() is None:
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        if allowed is None:  # global: any record that exists
            return
        if ctx.caller.group is not None:  # a run's token, outside its job group
            raise Forbidden("forbidden", f"a run's token reaches only the jobs and tasks "
                            f"of its own job group; this {self.name.lower()} is not one of them")
        scope = "global"  # the narrowest scope the record is in
        for narrower in permissions.RESOURCES[resource]:
            where = self.in_scope(ctx, narrower)
            if where is not None and (await conn.execute(exists.where(where))).first():
                scope = narrower
                break
        if scope == "global" and await self._hidden(conn, ctx, entity_id, resource):
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        ctx.caller.need(resource, operation, scope)
        ctx.caller.need(resource, operation, "global")

    async def _hidden(self, conn: AsyncConnection, ctx: Ctx, entity_id: str,
                      resource: str) -> bool:
        """Is this record another organization's, one the caller may not even see? Then
        it is answered as one that does not exist, so that nobody learns which ids another
        organization has by the answer's 403. A record within a narrower scope (the
        caller's organization, or a collaboration it shares) is answered with the missing
        rule (403): its existence is no secret there."""
        organization = self.organization()
        if organization is None or ctx.caller.widest(resource, "view") == "global":
            return False
        owner = select(organization).where(self.id_column() == entity_id)
        return (await conn.execute(owner)).scalar() is not None

    def visible(self, ctx: Ctx) -> ColumnElement[bool] | None:
        """Rows this caller may see."""
        return self.allowed(ctx, "view")


class JobAccess(Access):
    """Jobs: a user's own are those it started; a run's token reaches its job group only."""

    name = "Job"
    model = Job
    resource = "job"

    def owner(self, ctx: Ctx) -> Any:
        return Job.user_id if ctx.principal.kind == "user" else None

    def organization(self) -> Any:
        return Job.organization_id

    def collaboration(self) -> Any:
        return Job.collaboration_id

    def live(self) -> ColumnElement[bool] | None:
        return Job.deleted.is_(None)  # delete_one made it inactive: as a job that never was

    def confine(self, ctx: Ctx) -> ColumnElement[bool] | None:
        return None if ctx.caller.group is None else in_group(ctx.caller.group)


class TaskAccess(Access):
    """Tasks belong where their job does; an agent's own are those leased to it."""

    name = "Task"
    model = Task
    resource = "task"

    def owner(self, ctx: Ctx) -> Any:
        if ctx.principal.kind == "client":  # an agent: the tasks leased to it
            return Task.client_id
        return select(Job.user_id).where(Job.id == Task.job_id).scalar_subquery()

    def organization(self) -> Any:
        return select(Job.organization_id).where(Job.id == Task.job_id).scalar_subquery()

    def collaboration(self) -> Any:
        return select(Job.collaboration_id).where(Job.id == Task.job_id).scalar_subquery()

    def confine(self, ctx: Ctx) -> ColumnElement[bool] | None:
        if ctx.caller.group is None:
            return None
        return Task.job_id.in_(select(Job.id).where(in_group(ctx.caller.group)))


class ShareAccess(Access):
    """Shares belong to the organization (and collaboration) of the agent serving them;
    an agent's own are those it serves."""

    name = "Share"
    model = Share
    resource = "share"

    def owner(self, ctx: Ctx) -> Any:
        return Share.client_id if ctx.principal.kind == "client" else None

    def organization(self) -> Any:
        return client_organization(Share.client_id)

    def collaboration(self) -> Any:
        """A share belongs to the collaboration its agent's node was made for."""
        return client_collaboration(Share.client_id)


JOBS = JobAccess()
TASKS = TaskAccess()
SHARES = ShareAccess()
