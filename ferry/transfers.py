"""``ferry cp`` (a transfer job: a file, a folder or a frame sequence, with an optional
speed limit) and ``ferry job set`` (change a running job's speed limit: its agents follow
within a heartbeat)."""

from __future__ import annotations

import argparse
from typing import Any

from ferry.login import FAILED, OK, add_hub, connect
from ferry.views import watch
from protocol.rates import rate_text

CP = """\
examples:
  ferry cp share=projects/thefilm/edit.mov share=backup/thefilm/
  ferry cp share=plates/shot010/shot010_####.exr share=backup/shot010/ --frames 1001-1100
  ferry cp share=plates/shot010/shot010_%04d.exr share=backup/ --missing-frames fail
  ferry cp share=projects/big/ share=backup/ --speed-limit 50MB/s --watch

A source whose file name has '####' or '%04d' is a frame sequence: the frames there
(within --frames) move, and the job lists the ones missing (ferry job show).
"""


def cmd_cp(args: argparse.Namespace) -> int:
    session = connect(args)
    body: dict[str, Any] = {"source": args.source, "destination": args.dest}
    for key, value in (("frames", args.frames), ("missing_frames", args.missing_frames),
                       ("speed_limit", args.speed_limit)):
        if value is not None:
            body[key] = value
    job = session.create("Job", body)
    print(job["id"], flush=True)
    if args.watch:
        return OK if watch(session, job["id"])["status"] == "done" else FAILED
    return OK


def cmd_set(args: argparse.Namespace) -> int:
    session = connect(args)
    limit = None if args.speed_limit.lower() in ("none", "off") else args.speed_limit
    job = session.update("job", args.job, {"speed_limit": limit})
    print(f"job {job['id']} ({job['code']}): speed limit {rate_text(job['speed_limit'])}")
    return OK


def add_cp(sub: argparse._SubParsersAction[argparse.ArgumentParser], operate: Any) -> None:
    text = "copy between share paths: a transfer job"
    cp = sub.add_parser("cp", help=text, description=text + " (share=projects/x/ "
                        "notation; a folder moves as one task, verified and resumable).",
                        epilog=CP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("source", metavar="SOURCE", help="e.g. share=projects/thefilm/edit.mov")
    cp.add_argument("dest", metavar="DEST", help="e.g. share=backup/thefilm/")
    cp.add_argument("--frames", metavar="RANGE",
                    help="a sequence's frames: 1001-1100, or 1001-1050,1060 (default: the "
                    "frames there)")
    cp.add_argument("--missing-frames", choices=("list", "fail"),
                    help="frames missing from the range: listed on the job (default), or "
                    "the job fails naming them")
    cp.add_argument("--speed-limit", metavar="RATE",
                    help="at most this fast: 50MB/s, 500KB/s, 1GB/s (the hub's and the "
                    "agent's own limits apply too: the lowest wins)")
    cp.add_argument("--watch", action="store_true",
                    help="then show its progress in MB/s until it ends (exit 0 when done)")
    add_hub(cp)
    cp.set_defaults(func=operate(cmd_cp))


def add_set(verbs: argparse._SubParsersAction[argparse.ArgumentParser], operate: Any
            ) -> argparse.ArgumentParser:
    text = "change a transfer job, running or not: its speed limit"
    p = verbs.add_parser("set", help=text, description=text + "; its agents follow within "
                         "a heartbeat.")
    p.add_argument("job", metavar="ID")
    p.add_argument("--speed-limit", metavar="RATE", required=True,
                   help="50MB/s, 500KB/s, 1GB/s, or none (the hub's default then)")
    p.set_defaults(func=operate(cmd_set))
    return p
