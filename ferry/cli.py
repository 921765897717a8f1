"""``ferry``: the one command. ``ferry hub …``, ``ferry agent …``, ``ferry link …``,
``ferry demo``, and the operator's ``ferry login``, ``client``, ``job``, ``task``, ``cp``,
``limit``, ``engine``, and ``ls``, ``mkdir``, ``mv``, ``rm`` on a share's files."""

from __future__ import annotations

import argparse
import sys

from ferry import __version__, engines, farm, files, jobs, limits, login
from ferry.commands import register, run
from ferry.link import register as register_link


def build_parser() -> argparse.ArgumentParser:
    from agent.cli import AgentKind
    from hub.cli import HubKind
    from servers.cli import register as register_servers
    from service.cli import register as register_service

    parser = argparse.ArgumentParser(
        prog="ferry", description="Ferry: the node agent and the hub it checks in with.")
    parser.add_argument("--version", action="version", version=f"ferry {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    register(sub, HubKind(), "run and manage hubs (the coordinator)")
    register(sub, AgentKind(), "run and manage agents (the node daemon)")
    register_servers(sub)
    register_service(sub)
    register_link(sub)
    login.register(sub)
    farm.register(sub)
    jobs.register(sub)
    limits.register(sub)
    engines.register(sub)
    files.register(sub)
    demo = sub.add_parser("demo", help="an embedded hub and an agent running a job, end to end",
                          description="Start an embedded hub (SQLite in a temporary folder) "
                          "and one agent, show it online with its metrics, run a 200-frame job "
                          "over its lanes with a progress bar, print the buckets' timings, "
                          "and exit.")
    demo.add_argument("--keep", action="store_true",
                      help="afterwards, keep the hub running (with the agent back online) "
                      "to look at with the dashboard and the ferry commands, until Ctrl-C; "
                      "the demo's folder is kept")
    demo.add_argument("--timeout", type=float, default=60.0,
                      help="give up if the agent is not online after this many seconds")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from ferry.demo import main as demo_main

    return demo_main(keep=args.keep, timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
