"""The reference's tasks and runs in the hub shell (server-shell-v4.rst, "Tasks, Runs").

The reference's *task* is Ferry's docker job (one image run in a collaboration), and its
*runs* are the job's tasks, one per organization (``hub/jobs/docker.py``)::

    job_id = db.Task.next_job_id()
    task = db.Task(name="some-name", image="docker-registry.org/image-name",
                   collaboration=collaboration, job_id=job_id, database="default",
                   initiator=iknl)
    task.save()                        # held (paused) until its first run
    for org in collaboration.organizations:
        db.Run(input=input_, organization=org, task=task,
               assigned_at=datetime.datetime.now()).save()   # the first starts the task
    db.Task(..., organizations=collaboration.organizations).save()   # or all in one

The reference warns that tasks made in its shell never reach nodes already running. Here
they do: agents ask for work again at least every ``claim_wait_max`` seconds, and take
the runs saved here then (the shell is no hub process, so it cannot wake a waiting
claim). The first run of a task made without any starts it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, or_, select

from hub.entities import entity
from hub.jobs import actions, docker
from hub.jobs import status as st
from hub.runtime import Ctx
from hub.shell_records import Model, Record, ShellError, Spec
from hub.storage.models import Job, Organization, Task, new_id
from protocol import BucketKind

IS_DOCKER = Job.kind == BucketKind.DOCKER
# what a saved task may be given: the reference's fields, and Ferry's runs and command
TASK_FIELDS = ("name", "description", "image", "collaboration", "job_id", "database",
               "initiator", "init_org", "parent", "organizations", "input", "command")
CHANGEABLE = {"name": "code", "status": "status"}  # and description, database (metadata)


def _parent(task: Record) -> Any:
    data = task._data
    if not str(data.get("parent_hr") or "").startswith("job:"):
        return None  # a job's queue, not a parent task
    return task._model.get(data["parent"])


TASK = Spec(
    entity="job", only=IS_DOCKER, writable=(*TASK_FIELDS, "status"),
    links={"collaboration": "Collaboration", "organization": "Organization"},
    own={"runs": ("Run", lambda i: Task.job_id == i),
         "children": ("Task", lambda i: Job.parent_id == i)},
    aliases={"name": lambda r: r._data["code"],
             "image": lambda r: (r._data["docker"] or {}).get("image"),
             "initiator": lambda r: r._model.db.Organization.get(r._data["organization"]),
             "init_org": lambda r: r._model.db.Organization.get(r._data["organization"]),
             "description": lambda r: r._data["metadata"].get("description", ""),
             "database": lambda r: r._data["metadata"].get("database"),
             "parent": _parent,
             "complete": lambda r: r._data["status"] == st.JobStatus.DONE},
    finder='db.Task.get_by_name("some-name")')

RUN = Spec(
    entity="task", only=Task.job_id.in_(select(Job.id).where(IS_DOCKER)),
    writable=("input", "organization", "task", "assigned_at"),
    links={"organization": "Organization"},
    aliases={"task": lambda r: r._model.db.Task.get(r._data["job"]),
             "complete": lambda r: r._data["status"] == st.TaskStatus.DONE,
             "assigned_at": lambda r: r._data["created"],
             "started_at": lambda r: r._data["started"],
             "finished_at": lambda r: r._data["finished"],
             "log": lambda r: r._data.get("log_tail")},
    finder='db.Task.get_by_name("some-name").runs')


def as_text(given: Any) -> str:
    """A run's input is text (the image reads it from ``/ferry/input/input``); the
    reference's ``input_ = {...}`` is stored as its JSON."""
    if given is None:
        return ""
    return given if isinstance(given, str) else json.dumps(given)


class TaskModel(Model):
    """``db.Task``: a docker job, as the reference's task."""

    @staticmethod
    def next_job_id() -> str:
        """An id for the next task (its ``job_id``): Ferry's ids are strings. A task saved
        with it has it as its id; its child tasks (``parent=``) share it."""
        return new_id()

    def get_by_name(self, name: str) -> Record:
        return self._one(Job.code, name, "name")

    def write(self, ident: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if ident is not None:
            return self._change(ident, body)
        missing = [f for f in ("name", "image") if not body.get(f)]
        if missing:
            raise ShellError(f"db.Task needs {' and '.join(missing)}")
        unknown = set(body) - set(TASK_FIELDS)
        if unknown:
            raise ShellError(f"db.Task({sorted(unknown)[0]}=…) is set once the task runs, "
                             "not when it is made")
        orgs = body.get("organizations") or []
        spec: dict[str, Any] = {"image": body["image"], "organizations": [
            {"organization": o, "input": as_text(body.get("input"))} for o in orgs]}
        if body.get("command"):
            spec["command"] = body["command"]
        job: dict[str, Any] = {
            "code": body["name"], "docker": spec, "status": "waiting" if orgs else "paused",
            "metadata": {k: body[k] for k in ("description", "database") if k in body}}
        for key in ("collaboration", "parent"):
            if body.get(key):
                job[key] = body[key]
        initiator = body.get("initiator") or body.get("init_org")
        made: dict[str, Any] = self.db.runner.act(_create, job, initiator, body.get("job_id"))
        if not orgs:
            print(f"task '{body['name']}' is held (paused) until its first run: save a "
                  "db.Run(organization=…, task=task) for each organization (Ferry keeps a "
                  "task's runs with it; the first run starts it)")
        return made

    def _change(self, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        change: dict[str, Any] = {}
        meta = {k: body.pop(k) for k in ("description", "database") if k in body}
        for key, value in body.items():
            if key not in CHANGEABLE:
                raise ShellError(f"Task.{key} cannot be changed once the task is saved "
                                 "(what runs is fixed when it is made)")
            change[CHANGEABLE[key]] = value
        if meta:
            change["metadata"] = {**self.get(ident)._data["metadata"], **meta}
        changed: dict[str, Any] = self.db.runner.act(entity("job").update, ident, change)
        return changed


class RunModel(Model):
    """``db.Run``: one organization's run of a task (a docker job's task)."""

    def write(self, ident: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if ident is not None:
            raise ShellError("a run changes through its task's job: session.update_many("
                             "'task', task.id, [{'id': run.id, 'status': …}])")
        if not body.get("task") or not body.get("organization"):
            raise ShellError("db.Run needs task= and organization=")
        # assigned_at: Ferry stamps a run when it is made (and started_at when a node
        # takes it); the time given is not stored
        made: dict[str, Any] = self.db.runner.act(
            _add_run, body["task"], body["organization"], as_text(body.get("input")))
        return made


async def _organization(ctx: Ctx, given: Any) -> str | None:
    """An organization's id, from its id or name (None: none given)."""
    if given is None:
        return None
    async with ctx.db.read() as conn:
        found = (await conn.execute(select(Organization.id).where(
            or_(Organization.id == given, Organization.name == given)))).scalar()
    return str(found) if found else str(given)  # unknown: the job's checks say so


async def _create(ctx: Ctx, body: dict[str, Any], initiator: Any, ident: str | None
                  ) -> dict[str, Any]:
    parent = body.get("parent")
    if ident is not None and parent is not None:
        group = (await entity("job").get(ctx, parent)).get("job_id")
        if ident != group:
            raise ShellError(f"job_id '{ident}' is not the parent's ('{group}'): a child task "
                             "shares its parent's job_id")
        ident = None
    job_id = await docker.create(ctx, body, initiator=await _organization(ctx, initiator),
                                 ident=ident)
    return await entity("job").get(ctx, job_id)


async def _add_run(ctx: Ctx, task: str, organization: str, text: str) -> dict[str, Any]:
    """A run for ``organization``; the first run of a task made without any starts it."""
    async with ctx.db.read() as conn:
        status, runs = (await conn.execute(
            select(Job.status, select(Task.id).where(Task.job_id == Job.id).exists())
            .where(Job.id == task, IS_DOCKER))).one_or_none() or (None, None)
    if status is None:
        raise ShellError(f"no task '{task}' (save the db.Task first)")
    added = await actions.add_tasks(ctx, task, [{"organization": organization,
                                                 "input": text}], True)
    if not runs and status == st.JobStatus.PAUSED:
        await actions.change(ctx, task, {}, status=st.JobStatus.WAITING)
    return await entity("task").get(ctx, added["created"][0])


def relations() -> dict[str, dict[str, tuple[str, Any]]]:
    """The relations the reference gives organizations and collaborations to tasks and
    runs, by model (before the entities' own of the same name)."""
    return {
        "Organization": {
            "created_tasks": ("Task", lambda i: Job.organization_id == i),
            "runs": ("Run", lambda i: Task.organization_id == i)},
        "Collaboration": {
            "tasks": ("Task", lambda i: Job.collaboration_id == i),
            "runs": ("Run", lambda i: Task.job_id.in_(select(Job.id).where(
                and_(IS_DOCKER, Job.collaboration_id == i))))},
    }

