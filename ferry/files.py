"""``ferry ls|mkdir|mv|rm``: the files of a share, through the agent that serves it
(``Session.ls`` and the rest; docs/TRANSFERS.md), with your rights on that share: read to
list, write to change. Paths are share paths: ``share=projects/film/`` or
``projects/film/``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ferry.login import OK, Usage, add_hub, add_json, connect, operate


def _shown(entry: dict[str, Any], listed: str) -> str:
    """An entry's path below the folder listed (a folder's with a '/' after it)."""
    path = str(entry["path"])
    shown = path[len(listed):] if path.startswith(listed) and path != listed.rstrip("/") \
        else str(entry["name"]) or path
    return shown + "/" if entry["type"] == "dir" else shown


def line(entry: dict[str, Any], listed: str) -> str:
    """One line of ``ferry ls``: type, size, modified (UTC, to the second), path."""
    kind = {"dir": "d", "link": "l"}.get(entry["type"], "-")
    size = "-" if entry["type"] != "file" else str(entry["size"])
    when = entry["mtime"][:19].replace("T", " ")
    return f"{kind} {size:>14}  {when}  {_shown(entry, listed)}"


def cmd_ls(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise Usage(f"--limit must be 1 or more, not {args.limit}")
    session = connect(args)
    entries = session.iter_ls(args.path, recursive=args.recursive, limit=args.limit)
    if args.json:
        print(json.dumps(list(entries), indent=2))
        return OK
    text = args.path if args.path.startswith("share=") else f"share={args.path}"
    listed = text.rstrip("/") + "/"
    for entry in entries:  # a page at a time: a huge folder prints as it comes
        print(line(entry, listed))
    return OK


def cmd_mkdir(args: argparse.Namespace) -> int:
    done = connect(args).mkdir(args.path)
    print(f"{done['path']}: {'made' if done['changed'] else 'a folder there already'}")
    return OK


def cmd_mv(args: argparse.Namespace) -> int:
    done = connect(args).mv(args.source, args.dest)
    print(f"{done['path']} -> {done['result']}")
    return OK


def cmd_rm(args: argparse.Namespace) -> int:
    done = connect(args).delete(args.path, recursive=args.recursive)
    print(f"{done['path']}: deleted")
    return OK


EXAMPLES = """\
examples:
  ferry ls share=projects/film/                 a folder: type, size, modified, name
  ferry ls share=projects/film/ --recursive     and everything below it
  ferry mkdir share=projects/film/shot020/plates
  ferry mv share=projects/film/a.mov share=projects/film/old/     into a folder
  ferry rm share=projects/film/old --recursive  a folder with what it holds
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ferry ls``, ``mkdir``, ``mv`` and ``rm`` to the ``ferry`` command's groups."""
    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=text, description=text + " (through the agent "
                                "that serves the share, with your rights on it).",
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        add_hub(parser)
        return parser

    ls = command("ls", "list a folder of a share (read share)")
    ls.add_argument("path", metavar="PATH", help="e.g. share=projects/film/")
    ls.add_argument("--recursive", "-R", action="store_true",
                    help="list below its folders too")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N entries")
    add_json(ls)
    ls.set_defaults(func=operate(cmd_ls))
    mkdir = command("mkdir", "make a folder of a share, and those above it (write share)")
    mkdir.add_argument("path", metavar="PATH")
    mkdir.set_defaults(func=operate(cmd_mkdir))
    mv = command("mv", "move or rename a file or folder within its share (write share)")
    mv.add_argument("source", metavar="SRC")
    mv.add_argument("dest", metavar="DST", help="the new path, or a folder to move it into")
    mv.set_defaults(func=operate(cmd_mv))
    rm = command("rm", "delete a file or an empty folder of a share (write share)")
    rm.add_argument("path", metavar="PATH")
    rm.add_argument("--recursive", "-r", action="store_true",
                    help="delete a folder with everything it holds")
    rm.set_defaults(func=operate(cmd_rm))
