"""Engines (issue 18): a compute job names a program and its arguments instead of a
command, and the hub makes the command when the job is created.

An engine (``Engine``, one organization's) holds what its jobs share::

    {"name": "blender",
     "argv": ["blender", "-b", "{scene}", "-o", "/renders/{scene}/####", "-f", "{item}"],
     "env": {"BLENDER_USER_SCRIPTS": "/studio/blender"},
     "bucket_size": 5,
     "clients": ["tag:gpu", "ram:>32GB"]}

and a job says::

    {"engine": "blender", "args": {"scene": "shot010.blend"},
     "compute": {"items": "1-240"}}

Each ``{NAME}`` in ``argv`` (NAME a letter or ``_``, then letters, digits or ``_``) is an
argument the job must give, except ``{item}``, ``{task}`` and ``{job}``, which are
replaced per task as in any command (``compute.render_argv``). Values are strings or
numbers; each replaces its placeholder inside the one argument it stands in, in one pass
(a value that holds ``{x}`` is not looked at again for arguments), and the command runs
without a shell: a value never becomes more arguments, whatever it holds. ``{item}``,
``{task}`` and ``{job}`` in a value are replaced per task like everywhere in the command
(``"out": "/renders/{item}.exr"``).

The job's ``compute`` section gives the rest (``items``, ``timeout``, …) and may give its
own ``bucket_size`` and ``clients`` (then the engine's are not used) and ``env`` (added to
the engine's, its names winning). What is stored is the job's whole compute spec, so
agents run it as any compute job, and a later change to the engine changes no job made
before.

A job names an engine of its own organization only: another organization's engine is
answered as one that does not exist (``422 unknown_engine`` naming ``engine``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bodies import invalid
from hub.errors import Invalid
from hub.jobs.filters import parse_target
from hub.runtime import Ctx
from hub.storage.models import Engine

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PER_TASK = ("item", "task", "job")  # replaced for each task, never an argument
MAX_VALUE = 4096  # characters of one argument's value

Text = Annotated[str, msgspec.Meta(max_length=4096)]


class EngineSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What an engine holds beside its name, checked whole on every write."""

    argv: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=1024)]
    env: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}
    bucket_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    clients: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=255)]],
                       msgspec.Meta(max_length=256)] = []


def arguments(argv: list[str]) -> list[str]:
    """The arguments a job of this engine must give, in the order ``argv`` names them."""
    names = (m.group(1) for arg in argv for m in PLACEHOLDER.finditer(arg))
    return list(dict.fromkeys(n for n in names if n not in PER_TASK))


def check_spec(values: dict[str, Any]) -> EngineSpec:
    """An engine's ``argv``, ``env``, ``bucket_size`` and ``clients``; ``Invalid`` naming
    the field (``argv[2]``, ``env.PATH``, ``clients[0]``) otherwise."""
    try:
        spec = msgspec.convert(values, EngineSpec)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "invalid_value") from None
    if not spec.argv[0].strip():
        raise Invalid("invalid_value", "argv: the program (first element) is empty",
                      field="argv[0]")
    for n, arg in enumerate(spec.argv):
        if "\0" in arg:
            raise Invalid("invalid_value", f"argv[{n}]: a NUL character cannot be passed "
                          "to a program", field=f"argv[{n}]")
    for name, value in spec.env.items():
        if "\0" in value:
            raise Invalid("invalid_value", f"env.{name}: a NUL character cannot be put in "
                          "the environment", field=f"env.{name}")
    for n, entry in enumerate(spec.clients):
        try:
            parse_target(entry, n)
        except Invalid as exc:  # the same words, naming the engine's field
            raise Invalid(exc.code, exc.message.replace("compute.clients", "clients"),
                          field=f"clients[{n}]") from None
    return spec


def render(argv: list[str], args: dict[str, str]) -> list[str]:
    """``argv`` with each argument's value in place of its placeholder, in one pass;
    ``{item}``, ``{task}`` and ``{job}`` are left for each task."""
    def value(match: re.Match[str]) -> str:
        return args.get(match.group(1), match.group(0))

    return [PLACEHOLDER.sub(value, arg) for arg in argv]


def _arg_values(given: Any, wanted: list[str]) -> dict[str, str]:
    """The job's ``args`` as strings; ``Invalid`` naming ``args`` or ``args.NAME``."""
    if not isinstance(given, dict):
        raise Invalid("invalid_spec", "args: an object of the engine's arguments, like "
                      '{"scene": "shot010.blend"}', field="args")
    out: dict[str, str] = {}
    for name, value in given.items():
        field = f"args.{name}"
        if name not in wanted:
            raise Invalid("unknown_argument", f"{field}: the engine takes no argument "
                          f"'{name}' (it takes: {', '.join(wanted) or 'none'})", field=field)
        if isinstance(value, bool) or not isinstance(value, str | int | float) \
                or (isinstance(value, float) and not math.isfinite(value)):
            raise Invalid("invalid_spec", f"{field}: a string or a number", field=field)
        text = str(value)
        if len(text) > MAX_VALUE or "\0" in text:
            raise Invalid("invalid_spec", f"{field}: at most {MAX_VALUE} characters, no NUL",
                          field=field)
        out[name] = text
    for name in wanted:
        if name not in out:
            raise Invalid("missing_argument", f"args.{name}: the engine needs it",
                          field=f"args.{name}")
    return out


async def _engine(conn: AsyncConnection, ctx: Ctx, given: Any) -> Any:
    """The caller's organization's engine named ``given`` (by name or id); one of another
    organization, or one the caller may not see, is one that does not exist."""
    if not isinstance(given, str) or not given.strip() or len(given) > 255:
        raise Invalid("invalid_spec", "engine: the name of one of your organization's "
                      "engines", field="engine")
    found = None
    if ctx.caller.organization is not None and ctx.caller.widest("engine", "view"):
        found = (await conn.execute(select(Engine).where(
            Engine.organization_id == ctx.caller.organization,
            or_(Engine.name == given, Engine.id == given)))).first()
    if found is None:
        raise Invalid("unknown_engine", f"your organization has no engine '{given}'",
                      field="engine")
    return found


async def expand(conn: AsyncConnection, ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """A creation body that names an engine, as the compute job it stands for: its
    ``compute`` section with the command made from the engine, and the engine's defaults
    where the job gives none. ``engine`` and ``args`` stay beside it, to be shown."""
    engine = await _engine(conn, ctx, body["engine"])
    args = _arg_values(body.get("args", {}), arguments(engine.argv))
    compute = body.get("compute", {})
    if not isinstance(compute, dict):
        raise Invalid("invalid_spec", "compute: an object (items, and what else the job "
                      "gives of its own)", field="compute")
    if "command" in compute:
        raise Invalid("invalid_spec", "compute.command: an engine job's command is made "
                      f"from engine '{engine.name}'; give its args instead",
                      field="compute.command")
    env = compute.get("env", {})
    expanded = {**compute, "command": render(engine.argv, args),
                "bucket_size": compute.get("bucket_size", engine.bucket_size),
                "clients": compute.get("clients", engine.clients),
                "env": {**engine.env, **env} if isinstance(env, dict) else env}
    return {**body, "compute": expanded, "engine": engine.name, "args": args}
