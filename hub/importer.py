"""``ferry hub import FILE``: organizations, users, collaborations and nodes from YAML.

The file is the reference's batch import (server-cli.rst), which imports as it
stands. Unlike the reference:

* users get the roles the file names (``role: researcher`` or ``roles: [...]``),
  by default the least-privilege role, never superuser;
* a participant's ``api_key`` becomes the key of that organization's node in that
  collaboration;
* the import is declarative and idempotent: what exists and matches is left
  alone, so running the same file twice changes nothing;
* it runs in one transaction, through the API's validation: an invalid file
  changes nothing, and the error names the entry (``organizations[1].users[0]
  (stan)``);
* a password the API would refuse as weak (the example's ``password``) is
  imported, but must be changed before its user can log in.

A collaboration's ``tasks`` (algorithm images) become docker jobs for all its
participants, started by its first one, with no input (each once: the job's code
names the collaboration and the task's place in the list). In an encrypted
collaboration they are noted and not started: inputs there are sealed by a user
of the initiating organization.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, select, update

from core.errors import FerryError
from hub import permissions
from hub.admin import AdminSession
from hub.entities import entity
from hub.entities.nodes import given_key
from hub.errors import Invalid, Refusal
from hub.jobs import docker
from hub.keys import new_key
from hub.runtime import Ctx
from hub.security import (
    check_password_strength,
    hash_secret_async,
    new_password,
    verify_secret_async,
)
from hub.storage.models import ApiKey, Collaboration, Job, Node, Organization, Role, User
from protocol import BucketKind

ORG_FIELDS = ("name", "domain", "address1", "address2", "zipcode", "country", "public_key")
USER_FIELDS = ("username", "firstname", "lastname", "email", "password", "role", "roles")
COLLAB_FIELDS = ("name", "participants", "tasks", "encrypted")
PARTICIPANT_FIELDS = ("name", "api_key")
TEXT_FIELDS = {"name", "domain", "address1", "address2", "zipcode", "country", "username",
               "firstname", "lastname", "email", "password", "api_key"}


class ImportFailed(FerryError):
    """The file cannot be imported; nothing was changed."""


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created {len(self.created)}, updated {len(self.updated)}, unchanged "
               f"{self.unchanged}"]
        out += [f"  created {what}" for what in self.created]
        out += [f"  updated {what}" for what in self.updated]
        out += [f"  note: {note}" for note in self.notes]
        if not self.created and not self.updated:
            out.append("nothing changed")
        return out


@contextmanager
def entry(label: str) -> Iterator[None]:
    """Name the entry in whatever goes wrong inside."""
    try:
        yield
    except Refusal as exc:
        raise ImportFailed(f"{label}: {exc.message}") from None
    except ImportFailed as exc:
        raise ImportFailed(f"{label}: {exc}") from None


def read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFailed(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ImportFailed("it is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ImportFailed(f"it is not valid YAML{at}: "
                           f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ImportFailed("expected a mapping with 'organizations' and 'collaborations'")
    unknown = set(data) - {"organizations", "collaborations"}
    if unknown:
        raise ImportFailed(f"unknown key '{sorted(unknown)[0]}' (expected "
                           "'organizations' and 'collaborations')")
    for key in ("organizations", "collaborations"):
        if not isinstance(data.get(key, []), list):
            raise ImportFailed(f"'{key}' must be a list")
    return data


def _text(value: Any) -> Any:
    """YAML reads ``zipcode: 54331`` as a number; in a text field it is that text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _fields(item: Any, allowed: tuple[str, ...], label: str, required: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ImportFailed(f"{label}: expected a mapping")
    fields: dict[str, Any] = {k: (_text(v) if k in TEXT_FIELDS else v) for k, v in item.items()}
    unknown = set(fields) - set(allowed) - ({"users"} if "domain" in allowed else set())
    if unknown:
        raise ImportFailed(f"{label}: unknown field '{sorted(unknown)[0]}' (known: "
                           f"{', '.join(allowed)})")
    if not isinstance(fields.get(required), str) or not fields[required].strip():
        raise ImportFailed(f"{label}: '{required}' is required")
    return fields


class Importer:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.report = Report()

    async def run(self, data: dict[str, Any]) -> Report:
        for i, given in enumerate(data.get("organizations") or []):
            label = f"organizations[{i}]"
            org = _fields(given, ORG_FIELDS, label, "name")
            label = f"{label} ({org['name']})"
            with entry(label):
                org_id = await self.organization(org)
            users = org.get("users") or []
            if not isinstance(users, list):
                raise ImportFailed(f"{label}: 'users' must be a list")
            for j, item in enumerate(users):
                user_label = f"{label}.users[{j}]"
                user = _fields(item, USER_FIELDS, user_label, "username")
                with entry(f"{user_label} ({user['username']})"):
                    await self.user(user, org_id)
        for i, item in enumerate(data.get("collaborations") or []):
            label = f"collaborations[{i}]"
            collab = _fields(item, COLLAB_FIELDS, label, "name")
            label = f"{label} ({collab['name']})"
            with entry(label):
                await self.collaboration(collab, label)
        return self.report

    async def _find(self, model: Any, column: Any, value: str) -> Any:
        async with self.ctx.db.read() as conn:
            return (await conn.execute(select(model).where(column == value))).first()

    async def _apply(self, kind: str, label: str, existing: Any, wanted: dict[str, Any]
                     ) -> str:
        """Create the record, or update the fields that differ; its id."""
        if existing is None:
            record = await entity(kind).create(self.ctx, wanted)
            self.report.created.append(label)
            return str(record["id"])
        current = await entity(kind).get(self.ctx, existing.id)
        changed = {k: v for k, v in wanted.items() if current.get(k) != v}
        if changed:
            await entity(kind).update(self.ctx, existing.id, changed)
            self.report.updated.append(f"{label} ({', '.join(sorted(changed))})")
        else:
            self.report.unchanged += 1
        return str(existing.id)

    async def organization(self, org: dict[str, Any]) -> str:
        wanted = {k: (org[k] if org[k] is not None else "") for k in ORG_FIELDS if k in org}
        existing = await self._find(Organization, Organization.name, org["name"].strip())
        return await self._apply("organization", f"organization {org['name']}", existing,
                                 wanted)

    async def user(self, user: dict[str, Any], org_id: str) -> None:
        if "role" in user and "roles" in user:
            raise ImportFailed("give 'role' or 'roles', not both")
        names = user.get("roles", [user["role"]] if "role" in user else [permissions.LEAST])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ImportFailed("'roles' must be a list of role names")
        password = user.get("password")
        if not isinstance(password, str) or not password:
            raise ImportFailed("'password' is required")
        async with self.ctx.db.read() as conn:
            roles = sorted((await conn.execute(select(Role.id).where(
                Role.name.in_(names)))).scalars())
        if len(roles) != len(set(names)):
            raise Invalid("unknown_role", f"unknown role in {names} (default roles: "
                          f"{', '.join(permissions.DEFAULT_ROLES)})")
        wanted: dict[str, Any] = {"username": user["username"].strip(), "organization": org_id,
                                  "roles": roles}
        for key in ("firstname", "lastname", "email"):
            if key in user:
                wanted[key] = user[key] if user[key] is not None or key == "email" else ""
        existing = await self._find(User, User.username, wanted["username"])
        label = f"user {wanted['username']}"
        try:
            check_password_strength(password)
            weak = False
        except Invalid:
            weak = True
        if existing is None:
            # the API's checks for everything; a weak password is set below, to be changed
            body = {**wanted, "password": new_password() if weak else password}
            user_id = await self._apply("user", label, None, body)
            if weak:
                await self._set_password(user_id, password, must_change=True)
                self.report.notes.append(f"{label}: the password is weak; it must be changed "
                                         "before this user can log in")
            return
        await self._apply("user", label, existing, wanted)
        if not await verify_secret_async(existing.password_hash, password):
            if weak:
                await self._set_password(existing.id, password, must_change=True)
            else:
                await entity("user").update(self.ctx, existing.id, {"password": password})
            self.report.updated.append(f"{label} (password)")

    async def _set_password(self, user_id: str, password: str, *, must_change: bool) -> None:
        hashed = await hash_secret_async(password)
        async with self.ctx.db.write() as conn:
            await conn.execute(update(User).where(User.id == user_id).values(
                password_hash=hashed, password_change_required=must_change))

    async def collaboration(self, collab: dict[str, Any], label: str) -> None:
        participants = collab.get("participants") or []
        if not isinstance(participants, list):
            raise ImportFailed("'participants' must be a list")
        checked = []
        for j, part in enumerate(participants):
            checked.append(_fields(part, PARTICIPANT_FIELDS, f"participants[{j}]", "name"))
        tasks = collab.get("tasks") or []
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ImportFailed("'tasks' must be a list of image names")
        wanted: dict[str, Any] = {"name": collab["name"].strip()}
        if "encrypted" in collab:
            wanted["encrypted"] = collab["encrypted"]
        async with self.ctx.db.read() as conn:
            orgs = []
            for j, part in enumerate(checked):
                found = (await conn.execute(select(Organization.id).where(
                    Organization.name == part["name"]))).scalar()
                if found is None:
                    raise ImportFailed(f"participants[{j}]: no organization "
                                       f"'{part['name']}' (neither in this file nor on the hub)")
                orgs.append(str(found))
        wanted["organizations"] = sorted(set(orgs))
        existing = await self._find(Collaboration, Collaboration.name, wanted["name"])
        collab_id = await self._apply("collaboration", f"collaboration {wanted['name']}",
                                      existing, wanted)
        for j, (part, org_id) in enumerate(zip(checked, orgs, strict=True)):
            with entry(f"participants[{j}] ({part['name']})"):
                await self.node(part, org_id, collab_id, wanted["name"])
        for j, image in enumerate(tasks):
            with entry(f"tasks[{j}] ({image})"):
                await self.task(image, j, wanted["name"], collab_id, orgs, label)

    async def task(self, image: str, index: int, collab: str, collab_id: str, orgs: list[str],
                   label: str) -> None:
        code = f"{image} ({collab} task {index + 1})"
        async with self.ctx.db.read() as conn:
            encrypted, exists = (await conn.execute(select(
                Collaboration.encrypted,
                select(Job.id).where(Job.kind == BucketKind.DOCKER,
                                     Job.collaboration_id == collab_id,
                                     Job.code == code).exists()).where(
                Collaboration.id == collab_id))).one()
        if exists:
            self.report.unchanged += 1
        elif encrypted:
            self.report.notes.append(f"{label}: task {image!r} not started: the collaboration "
                                     "is encrypted, and its inputs are sealed by a user of "
                                     "the initiating organization")
        elif orgs:
            await docker.create(self.ctx, {"collaboration": collab_id, "code": code,
                                           "docker": {"image": image, "organizations": [
                                               {"organization": o} for o in orgs]}},
                                initiator=orgs[0])
            self.report.created.append(f"docker job {code}")

    async def node(self, part: dict[str, Any], org_id: str, collab_id: str, collab: str
                   ) -> None:
        key = given_key(part) if "api_key" in part else None
        async with self.ctx.db.read() as conn:
            existing = (await conn.execute(select(Node.id).where(
                Node.organization_id == org_id, Node.collaboration_id == collab_id))).first()
        label = f"node of {part['name']} in {collab}"
        if existing is None:
            body: dict[str, Any] = {"name": f"{part['name']} - {collab}",
                                    "organization": org_id, "collaboration": collab_id}
            if key is not None:
                body["api_key"] = key
            await entity("node").create(self.ctx, body)
            self.report.created.append(label)
            return
        if key is None:
            self.report.unchanged += 1
            return
        async with self.ctx.db.read() as conn:
            hashes = (await conn.execute(select(ApiKey.hash).where(
                ApiKey.node_id == existing.id))).scalars().all()
        for hashed in hashes:
            if await verify_secret_async(hashed, key):
                self.report.unchanged += 1
                return
        fresh = await new_key(self.ctx.rt, key)
        async with self.ctx.db.write() as conn:
            await conn.execute(delete(ApiKey).where(ApiKey.node_id == existing.id))
            await conn.execute(fresh.insert(node_id=existing.id, description="node key"))
        self.report.updated.append(f"{label} (api_key)")


async def import_file(session: AdminSession, path: Path) -> Report:
    """Import the file in one transaction: all of it, or (on any error) nothing."""
    data = read(path)
    async with session.transaction() as ctx:
        return await Importer(ctx).run(data)

