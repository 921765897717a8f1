"""The runs of a docker job: one per organization, each with its input.

A docker job is made with its runs (``docker.create``), or made paused with none and
given them one by one, as the reference's shell does (``db.Task(...).save()``, then a
``db.Run(organization=…, task=…)`` for each organization): ``add_runs``, also
``POST /job/<id>/tasks`` with ``{"tasks": [{"organization": …, "input": …}]}``.
A run goes only to an organization of the job's collaboration, once; in an encrypted
collaboration its input is an envelope sealed by the initiating organization for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from sqlalchemy import func, insert, or_, select, update

from hub.bodies import invalid
from hub.errors import Conflict, Invalid
from hub.jobs import status as st
from hub.runtime import Ctx
from hub.storage.models import Job, Organization, Task, members
from protocol import sealing

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
MAX_INPUT = 4 * 1024 * 1024  # characters of one run's input (sealed: ciphertext)
MAX_RUNS = 256  # runs of one job: one per organization of a collaboration


class RunFor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    organization: Name  # id or name
    input: Annotated[str, msgspec.Meta(max_length=MAX_INPUT)] = ""


def _bad(field: str, message: str, code: str = "invalid_spec") -> Invalid:
    return Invalid(code, f"{field}: {message}", field=field)


def check_input(text: str, field: str, encrypted: bool, org: str, initiator: str,
                keys: dict[str, str]) -> None:
    """A run's input as the run's organization may get it: sealed for it by the initiating
    organization in an encrypted collaboration."""
    if "\0" in text:
        raise _bad(field, "an input cannot hold a NUL character (seal binary data, or "
                   "encode it)")
    if not encrypted:
        return
    if not keys.get(org):
        raise Conflict("no_public_key", f"{field}: the run's organization has published "
                       "no public key yet, so nothing can be sealed for it (its node "
                       "publishes it when it first starts)", field=field)
    try:
        envelope = sealing.parse(text)
    except sealing.SealError as exc:
        raise _bad(field, f"the collaboration is encrypted, and this input is not a sealed "
                   f"envelope: {exc}", "not_sealed") from None
    if org not in envelope["to"]:
        raise _bad(field, f"the input is sealed for {', '.join(sorted(envelope['to']))}, not "
                   f"for the run's organization {org}", "not_sealed")
    if envelope["from"] != initiator:
        raise _bad(field, f"the input says it was sealed by {envelope['from']}; inputs are "
                   f"sealed by the initiating organization {initiator}", "not_sealed")


async def add_runs(conn: Any, ctx: Ctx, job: Any, tasks: list[Any]) -> dict[str, Any]:
    """Queue a run for each organization ``tasks`` names (checked as ``docker.create``
    checks them); ``{"created": [ids], "retried": []}``."""
    try:
        wanted = msgspec.convert(tasks, list[RunFor])
    except msgspec.ValidationError as exc:
        raise invalid(exc, "invalid_body", prefix="tasks") from None
    row = (await conn.execute(select(Job.collaboration_id, Job.spec).where(
        Job.id == job.id))).one()
    spec = dict(row.spec or {})
    partners = set((await conn.execute(select(members.c.organization_id).where(
        members.c.collaboration_id == row.collaboration_id))).scalars())
    keys = dict((await conn.execute(select(Organization.id, Organization.public_key).where(
        Organization.id.in_(sorted(partners))))).all())
    have = set((await conn.execute(select(Task.organization_id).where(
        Task.job_id == job.id))).scalars())
    seq = (await conn.execute(select(func.coalesce(func.max(Task.seq) + 1, 0)).where(
        Task.job_id == job.id))).scalar_one()
    if len(have) + len(wanted) > MAX_RUNS:
        raise Invalid("too_large", f"a job has at most {MAX_RUNS} runs", field="tasks")
    rows = []
    for n, run in enumerate(wanted):
        field = f"tasks[{n}].organization"
        org = (await conn.execute(select(Organization.id).where(
            or_(Organization.id == run.organization, Organization.name == run.organization),
            Organization.id.in_(sorted(partners))))).scalar()
        if org is None:  # the same for one that does not exist: nothing to probe
            raise _bad(field, f"organization '{run.organization}' is not in the job's "
                       "collaboration", "not_a_member")
        if org in have:
            raise Conflict("duplicate", f"{field}: organization '{run.organization}' has a "
                           "run in this job already (one run per organization)", field=field)
        check_input(run.input, f"tasks[{n}].input", bool(spec.get("encrypted")), org,
                    job.organization_id or "", keys)
        have.add(org)
        rows.append(st.new_task(job.id, seq + n, org, ctx.now, job.priority,
                                organization_id=org, input=run.input))
    await conn.execute(insert(Task), rows)
    spec["organizations"] = [*spec.get("organizations", []), *(r["organization_id"]
                                                               for r in rows)]
    await conn.execute(update(Job).where(Job.id == job.id).values(spec=spec, modified=ctx.now))
    return {"created": [r["id"] for r in rows], "retried": []}
