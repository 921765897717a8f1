"""``ferry engine ls|show|set|rm``: the programs a farm runs, that jobs name instead of a
command (``ferry job submit --engine blender --arg scene=shot010.blend``), as the hub's
rules let the logged-in user see and change them (organization admins change them)."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from ferry.login import OK, Usage, add_hub, add_json, connect, dump, operate
from ferry.tables import table
from ferry.views import found, quoted

if TYPE_CHECKING:
    from hub.session import Session


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _argv(text: str) -> list[str]:
    """``--argv`` as a shell would split it (quotes keep spaces), never run by one."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--argv: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("--argv is empty: give the program and its arguments")
    return argv


def one(session: Session, name: str) -> dict[str, Any] | None:
    """The engine named ``name`` (or with that id) of those the user sees."""
    matches = found(session, "Engine", f"name={quoted(name)} OR id={quoted(name)}")
    return matches[0] if matches else None


def _rows(engines: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": e["name"], "arguments": ", ".join(e["arguments"]) or "-",
             "bucket": str(e["bucket_size"]), "targets": ", ".join(e["clients"]) or "-",
             "argv": shlex.join(e["argv"])[:60], "id": e["id"]} for e in engines]


def cmd_ls(args: argparse.Namespace) -> int:
    engines = found(connect(args), "Engine", args.query)
    if args.json:
        dump(engines)
    else:
        print(table(_rows(engines)))
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    engine = one(connect(args), args.name)
    if engine is None:
        raise Usage(f"no engine {args.name!r} that you can see")
    if args.json:
        dump(engine)
        return OK
    fields = [("id", engine["id"]), ("name", engine["name"]),
              ("argv", shlex.join(engine["argv"])),
              ("arguments", ", ".join(engine["arguments"]) or "-"),
              ("bucket", engine["bucket_size"]),
              ("targets", ", ".join(engine["clients"]) or "-"),
              ("env", " ".join(f"{k}={v}" for k, v in engine["env"].items()) or "-"),
              ("modified", engine.get("modified") or "-")]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    return OK


def cmd_set(args: argparse.Namespace) -> int:
    """Make the engine, or change what is given of an existing one."""
    session = connect(args)
    values: dict[str, Any] = {}
    if args.argv is not None:
        values["argv"] = args.argv
    if args.env is not None:
        values["env"] = dict(args.env)
    if args.bucket is not None:
        values["bucket_size"] = args.bucket
    if args.target is not None:
        values["clients"] = list(args.target)
    engine = one(session, args.name)
    if engine is None:
        if "argv" not in values:
            raise Usage(f"no engine {args.name!r} yet: give its --argv to make it")
        engine = session.create("Engine", {"name": args.name, **values})
        print(f"made engine {engine['name']} ({engine['id']})")
    else:
        if not values:
            raise Usage("nothing to change: give --argv, --env, --bucket or --target")
        engine = session.update("Engine", engine["id"], values)
        print(f"changed engine {engine['name']} ({engine['id']})")
    print(f"arguments: {', '.join(engine['arguments']) or 'none'}")
    return OK


def cmd_rm(args: argparse.Namespace) -> int:
    session = connect(args)
    engine = one(session, args.name)
    if engine is None:
        raise Usage(f"no engine {args.name!r} that you can see")
    session.delete_one("Engine", engine["id"])
    print(f"removed engine {engine['name']} ({engine['id']}); jobs made from it keep their "
          "command")
    return OK


EXAMPLES = """\
examples:
  ferry engine set blender --argv 'blender -b {scene} -o /renders/{shot}/#### -f {item}' \\
      --env BLENDER_USER_SCRIPTS=/studio/py --bucket 5 --target tag:gpu
  ferry engine ls
  ferry job submit --engine blender --arg scene=shot010.blend --arg shot=010 --items 1-240

{NAME} in the argv is an argument each job gives (--arg NAME=VALUE); {item}, {task} and
{job} are replaced per task. The argv is split like a shell splits words, once, when the
engine is set; a job's values are each put inside the one argument they stand in, and no
shell ever runs the command.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "engines: programs jobs name instead of a command"
    parser = sub.add_parser("engine", help=text, description=text + ".", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    ls = verbs.add_parser("ls", help="list engines: name, arguments, bucket, targets, argv")
    ls.add_argument("query", metavar="QUERY", nargs="?", help="which engines (default: all "
                    "you can see), e.g. \"name=blender\"")
    show = verbs.add_parser("show", help="one engine")
    show.add_argument("name", metavar="NAME|ID")
    for p, func in ((ls, cmd_ls), (show, cmd_show)):
        add_json(p)
        add_hub(p)
        p.set_defaults(func=operate(func))
    put = verbs.add_parser("set", help="make an engine, or change one",
                           description="Make engine NAME (--argv needed), or change what is "
                           "given of it (each option replaces that field whole).",
                           epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    put.add_argument("name", metavar="NAME")
    put.add_argument("--argv", type=_argv, metavar="'PROGRAM ARG...'",
                     help="the command, with {placeholders}: one string, split like a "
                     "shell's words")
    put.add_argument("--env", action="append", type=_pair, metavar="K=V",
                     help="an environment variable of its tasks (repeat)")
    put.add_argument("--bucket", type=int, metavar="N",
                     help="tasks a lane takes at once, unless a job says (default 1)")
    put.add_argument("--target", action="append", metavar="T",
                     help="where its jobs run unless they say: as ferry job submit's "
                     "--target (repeat)")
    put.set_defaults(func=operate(cmd_set))
    rm = verbs.add_parser("rm", help="remove an engine (jobs made from it keep their command)")
    rm.add_argument("name", metavar="NAME|ID")
    rm.set_defaults(func=operate(cmd_rm))
    for p in (put, rm):
        add_hub(p)
