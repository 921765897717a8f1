"""``ferry hub shell``: a Python shell on a hub's database, with the ``db.`` models of
server-shell-v4.rst.

::

    >>> org = db.Organization(name="IKNL", domain="iknl.nl", country="Netherlands")
    >>> org.save()
    >>> db.Organization.get_by_name("IKNL").users
    >>> user = db.User.get_by_username("frank@iknl.nl"); user.firstname = "Frank"; user.save()
    >>> db.Rule.get_by_("node", "organization", "view")
    >>> task = db.Task(name="avg", image="studio/avg:2", collaboration=collab,
    ...                initiator=org, organizations=collab.organizations).save()
    >>> org.runs, db.Run.get(), db.Organization.help()

Unlike the reference's shell, every ``save()`` goes through the API's validation
and is one transaction: a refused save changes nothing and raises ``ApiError``
with the API's message. Records are fetched fresh on every ``get``. Ids are strings
(``get(1)`` says how to find one). The reference's tasks and runs are Ferry's docker
jobs and their runs (``hub/shell_work.py``); ``db.Job`` is any of Ferry's jobs.
"""

from __future__ import annotations

import code
from typing import Any

from core.errors import ApiError, FerryError
from hub.admin import AdminSession
from hub.shell_records import Model, Runner, Spec
from hub.shell_work import RUN, TASK, RunModel, TaskModel, relations
from hub.storage.models import Base

_OWN = relations()
SPECS: dict[str, Spec] = {
    "Organization": Spec(
        "organization", writable=("name", "domain", "address1", "address2", "zipcode",
                                  "country", "public_key"),
        lists={"collaborations": "Collaboration"},
        relations={"users": "User", "nodes": "Node", "collaborations": "Collaboration",
                   "jobs": "Job", "roles": "Role"},
        own=_OWN["Organization"], finder='db.Organization.get_by_name("IKNL")'),
    "Collaboration": Spec(
        "collaboration", writable=("name", "encrypted", "organizations"),
        lists={"organizations": "Organization"},
        relations={"organizations": "Organization", "nodes": "Node", "jobs": "Job"},
        own=_OWN["Collaboration"], finder='db.Collaboration.get_by_name("collaboration-name")'),
    "User": Spec(
        "user", writable=("username", "password", "email", "firstname", "lastname",
                          "organization", "roles", "rules"),
        links={"organization": "Organization"}, lists={"roles": "Role", "rules": "Rule"},
        relations={"jobs": "Job"}, finder='db.User.get_by_username("root")'),
    "Role": Spec(
        "role", writable=("name", "description", "organization", "rules"),
        links={"organization": "Organization"}, lists={"rules": "Rule"},
        relations={"users": "User"}, finder='db.Role.get_by_name("researcher")'),
    "Rule": Spec("rule", finder='db.Rule.get_by_("node", "organization", "view")'),
    "Node": Spec(
        "node", writable=("name", "description", "organization", "collaboration", "api_key"),
        links={"organization": "Organization", "collaboration": "Collaboration"},
        finder='db.Node.get_by_name("IKNL Node - Collaboration collaboration-name")'),
    "Client": Spec(
        "client", writable=("status", "description", "site", "benchmark", "metadata", "tags"),
        links={"node": "Node"}),
    "Job": Spec(
        "job", writable=("code", "priority", "status", "metadata", "compute", "source",
                         "destination", "collaboration", "queue"),
        links={"organization": "Organization"}),
    "Task": TASK,
    "Run": RUN,
    "Site": Spec("site", writable=("name", "description"), finder='db.Site.get_by_name("hq")'),
}
MODEL_TYPES: dict[str, type[Model]] = {"Task": TaskModel, "Run": RunModel}


class Db:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        for name, spec in SPECS.items():
            setattr(self, name, MODEL_TYPES.get(name, Model)(self, name, spec))

    def drop_all(self) -> None:
        """Delete every record: only when the config says ``allow_drop_all: true``."""
        session = self.runner.session
        if not session.config.allow_drop_all:
            raise FerryError("drop_all is refused: this hub's config has allow_drop_all: false "
                             "(set it to true on test hubs only)")
        self.runner.call(_drop_all(session))
        print("all records deleted; the next start of the hub makes root and hq again")


async def _drop_all(session: AdminSession) -> None:
    assert session.db is not None
    async with session.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in {"rules", "roles", "role_rules"}:
                await conn.execute(table.delete())
        await conn.execute(Base.metadata.tables["roles"].delete().where(
            Base.metadata.tables["roles"].c.is_default.is_(False)))


BANNER = """Ferry hub shell: the root user on {uri}
db.Organization, db.User, db.Role, db.Rule, db.Collaboration, db.Node, db.Client, db.Job,
db.Task (docker jobs), db.Run (their runs), db.Site: get(), get(id), get_by_name(…),
get_by_username(…), .save(), .help(). Ids are strings. Every save is checked as the API
checks it. Ctrl-D leaves."""


def run_shell(session: AdminSession, *, script: str | None = None) -> int:
    runner = Runner(session)
    for line in session.made.lines():
        print(line, flush=True)
    db = Db(runner)
    namespace: dict[str, Any] = {"db": db, "ApiError": ApiError}
    try:
        if script is not None:  # ``ferry hub shell -c "..."``: one command, no prompt
            exec(compile(script, "<ferry hub shell -c>", "exec"), namespace)
            return 0
        uri = session.db.url.split("@")[-1] if session.db else ""
        code.interact(banner=BANNER.format(uri=uri), local=namespace, exitmsg="")
        return 0
    finally:
        runner.close()
