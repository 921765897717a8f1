"""``ferry client ls|show|disable|enable``: the farm's agents and lanes, as the hub's
rules let the logged-in user see them (clients.rst: only ``disabled`` and ``online``
are written, by those allowed to)."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from ferry.login import OK, Usage, add_hub, add_json, connect, dump, operate
from ferry.tables import table
from ferry.views import LANE, ago, farm_rows, found, quoted

if TYPE_CHECKING:
    from hub.session import Session


def _lanes_and_busy(session: Session, clients: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], set[str]]:
    """The lanes of the agents listed, and which lanes run a task now."""
    agents = [c for c in clients if c["type"] != LANE]
    lanes = found(session, "Client", f"type={LANE}") if agents else \
        [c for c in clients if c["type"] == LANE]
    ids = {c["id"] for c in agents}
    lanes = [lane for lane in lanes if lane["parent"] in ids] if agents else lanes
    busy = {(t.get("source") or {}).get("lane") for t in
            found(session, "Task", "status=executing")} if lanes else set()
    return lanes, {b for b in busy if b}


def cmd_ls(args: argparse.Namespace) -> int:
    session = connect(args)
    clients = found(session, "Client", args.query)
    if args.json:
        dump(clients)
        return OK
    lanes, busy = _lanes_and_busy(session, clients)
    print(table(farm_rows(clients, lanes, busy)))
    return OK


def one(session: Session, ident: str) -> dict[str, Any]:
    """The client whose id or code is ``ident``."""
    matches = found(session, "Client", f"id={quoted(ident)} OR code={quoted(ident)}")
    if not matches:
        raise Usage(f"no client {ident!r} (by id or code) that you can see")
    exact = [c for c in matches if c["id"] == ident] or matches
    if len(exact) > 1:
        raise Usage(f"{len(exact)} clients have the code {ident!r}: give the id "
                    f"({', '.join(c['id'] for c in exact[:5])})")
    return exact[0]


def cmd_show(args: argparse.Namespace) -> int:
    session = connect(args)
    client = one(session, args.client)
    lanes = found(session, "Client", f"parent.id={quoted(client['id'])}") \
        if client["type"] != LANE else []
    if args.json:
        dump({**client, "lanes": lanes})
        return OK
    m = client.get("metrics") or {}
    fields = [
        ("id", client["id"]), ("code", client["code"]),
        ("type", f"{client['type_hr']} ({client['type']})"), ("status", client["status"]),
        ("status reason", client.get("status_reason") or "-"),
        ("last check-in", f"{client.get('last_checkin') or '-'} "
                          f"({ago(client.get('last_checkin'))})"),
        ("version", client.get("version") or "-"), ("os", client.get("os") or "-"),
        ("site", client.get("site_hr") or "-"),
        ("tags", ", ".join(client.get("tags") or []) or "-"),
        ("user", client.get("user_hr") or "-"), ("host id", client.get("host_id") or "-"),
        ("wan ip", client.get("wan_ip") or "-"),
        ("cpu", f"{m['l']:.0f}% of {m.get('c', '?')} cores" if "l" in m else "-"),
        ("memory", f"{m['m']:.0f}%" if "m" in m else "-"),
        ("load", " ".join(f"{x:.2f}" for x in m.get("la") or []) or "-"),
        ("transfers", (client.get("transfer") or {}).get("url") or "-"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    if lanes:
        print(f"\nlanes ({len(lanes)})")
        print(table([{"code": lane["code"], "status": lane["status"], "id": lane["id"]}
                     for lane in lanes]))
    return OK


def _status(status: str, verb: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        session = connect(args)
        client = one(session, args.client)
        changed = session.update("client", client["id"], {"status": status})
        print(f"{verb} {client['code']} ({client['id']}): now {changed.get('status', status)}")
        return OK

    cmd.__doc__ = f"Set a client {status}."
    return cmd


EXAMPLES = """\
examples:
  ferry client ls                       every agent and lane you can see
  ferry client ls "type=1 AND status=online"
  ferry client show render01
  ferry client disable render01         it takes no new work; running work finishes
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "the farm: agents (clients) and their compute lanes"
    parser = sub.add_parser("client", help=text, description=text + ".", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    ls = verbs.add_parser("ls", help="list clients", description=textwrap.fill(
        "List clients as a table: code, type, status, CPU, memory, load, lanes busy/total, "
        "last check-in and version; and the reason, when an agent takes no work (outside its "
        "schedule, its user at work). QUERY is the query language's where part (the README's queries), "
        "e.g. \"type=1\" or \"status=online AND site=hq\"."))
    ls.add_argument("query", metavar="QUERY", nargs="?", help="which clients (default: all)")
    show = verbs.add_parser("show", help="one client, with its lanes")
    show.add_argument("client", metavar="ID|CODE")
    for verb, status, done, help_text in (
            ("disable", "disabled", "disabled", "disable a client: it takes no new work"),
            ("enable", "online", "enabled", "enable a disabled client again")):
        p = verbs.add_parser(verb, help=help_text, description=help_text + ".")
        p.add_argument("client", metavar="ID|CODE")
        add_hub(p)
        p.set_defaults(func=operate(_status(status, done)))
    for p, func in ((ls, cmd_ls), (show, cmd_show)):
        add_hub(p)
        add_json(p)
        p.set_defaults(func=operate(func))
