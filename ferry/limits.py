"""``ferry limit ls|set``: counted resources across the farm (issue 18), such as a
renderer's licences. At most a limit's max of the buckets of the jobs that name it run at
once; ``ls`` shows how many do now. Only those with the rule for limits change them."""

from __future__ import annotations

import argparse
import textwrap

from ferry.login import OK, Usage, add_hub, add_json, connect, dump, operate
from ferry.tables import table
from ferry.views import found, limit_rows, quoted


def cmd_ls(args: argparse.Namespace) -> int:
    session = connect(args)
    limits = found(session, "Limit", args.query)
    if args.json:
        dump(limits)
    else:
        print(table(limit_rows(limits)))
    return OK


def cmd_set(args: argparse.Namespace) -> int:
    """Make the limit, or change its max: the one of that name the caller sees (its
    organization's; the hub makes a new one in the caller's organization)."""
    if args.max < 0:
        raise Usage(f"MAX must be 0 or more, not {args.max}")
    session = connect(args)
    named = found(session, "Limit", f"name={quoted(args.name)}")
    if len(named) > 1:  # one seen in several organizations (root sees every one)
        raise Usage(f"{len(named)} organizations have a limit {args.name!r}; change it by "
                    f"id through the API ({', '.join(x['id'] for x in named[:5])})")
    if named:
        limit = session.update("limit", named[0]["id"], {"max": args.max})
        print(f"{limit['name']}: max {limit['max']} ({limit['in_use']} in use)")
    else:
        limit = session.create("Limit", {"name": args.name, "max": args.max})
        print(f"{limit['name']}: max {limit['max']} (new)")
    return OK


EXAMPLES = """\
examples:
  ferry limit ls                        every limit you can see, with how many are in use
  ferry limit set nuke 10               at most 10 tasks of jobs holding 'nuke' at once
  ferry job submit --limit nuke --items 1-100 -- nuke -x comp.nk -F {item}
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "limits: counted resources (licences) that jobs hold while their tasks run"
    parser = sub.add_parser("limit", help=text, description=text + ".", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    ls = verbs.add_parser("ls", help="list limits: name, in use, max", description=textwrap.fill(
        "List limits as a table: name, how many are in use now, max. QUERY is the query "
        "language's where part, e.g. \"name=nuke\"."))
    ls.add_argument("query", metavar="QUERY", nargs="?", help="which limits (default: all)")
    add_json(ls)
    ls.set_defaults(func=operate(cmd_ls))
    set_ = verbs.add_parser("set", help="make a limit, or change its max",
                            description="Make your organization's limit NAME with MAX, or "
                            "change its MAX (0 holds every job that names it).")
    set_.add_argument("name", metavar="NAME")
    set_.add_argument("max", metavar="MAX", type=int)
    set_.set_defaults(func=operate(cmd_set))
    for p in (ls, set_):
        add_hub(p)
