"""``ferry job …``, ``ferry task …`` and ``ferry cp`` (``ferry/transfers.py``): submit, list,
follow and steer jobs, read their tasks and logs, and copy between shares, with the rules
of the logged-in user (jobs.rst: pause is ``paused``, resume ``waiting``, abort ``aborted``)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

from ferry.login import FAILED, OK, Usage, add_hub, add_json, connect, dump, operate
from ferry.tables import table
from ferry.transfers import add_cp, add_set
from ferry.views import (
    bucket_rows,
    found,
    job_rows,
    percent,
    quoted,
    speed,
    task_rows,
    watch,
)
from protocol.rates import rate_text

if TYPE_CHECKING:
    from hub.session import Session

FOLLOW_POLL = 1.0  # seconds between looks at a followed task's log
SHOWN_TASKS = 5_000  # ``job show`` lists the buckets of jobs up to this many tasks


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _lanes(session: Session, tasks: list[dict[str, Any]]) -> dict[str, str]:
    """Lane id -> code, for the lanes these tasks ran on."""
    ids = sorted({str(lane) for t in tasks if (lane := (t.get("source") or {}).get("lane"))})
    out: dict[str, str] = {}
    for start in range(0, len(ids), 100):
        query = " OR ".join(f"id={quoted(i)}" for i in ids[start:start + 100])
        out.update((c["id"], c["code"]) for c in found(session, "Client", query))
    return out


def _job(session: Session, job_id: str) -> dict[str, Any]:
    return session.get("Job", job_id)


def _after(job: dict[str, Any]) -> str:
    """The jobs it waits for, each with its status ("?" when you cannot see it), and what
    it does if one fails; "" when it waits for none."""
    statuses = job.get("after_status") or {}
    said = [f"{j} ({statuses.get(j) or '?'})" for j in job.get("after") or []]
    if job.get("after_items"):
        j = job["after_items"]
        said.append(f"items of {j} ({statuses.get(j) or '?'})")
    if not said:
        return ""
    return f"{', '.join(said)}; if one fails: {job.get('after_failed') or 'fail'}"


def _ended(job: dict[str, Any]) -> int:
    """``job watch``'s exit code: 0 when the job is done, 1 when it failed or was aborted."""
    return OK if job["status"] == "done" else FAILED


# -- job

def cmd_submit(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.engine and command:
        raise Usage("give an engine (--engine) or a command (after --), not both")
    if not args.engine and not command:
        raise Usage("no command: give it after --, e.g. ferry job submit --items 1-10 -- "
                    "render -f {item}; or an engine: --engine blender --arg scene=a.blend")
    if args.arg and not args.engine:
        raise Usage("--arg gives an argument of an engine: name it with --engine")
    compute: dict[str, Any] = {"items": args.items}
    body: dict[str, Any] = {"compute": compute}
    if args.engine:  # the engine's bucket size, env and targets, unless given here
        body.update(engine=args.engine, args=dict(args.arg or []))
    else:
        compute["command"] = command
    if args.bucket is not None:
        compute["bucket_size"] = args.bucket
    if args.env:
        compute["env"] = dict(args.env)
    if args.target:
        compute["clients"] = list(args.target)
    if args.name:
        body["code"] = args.name
    if args.priority is not None:
        body["priority"] = args.priority
    if args.queue:
        body["queue"] = args.queue
    if args.limit:
        body["limits"] = list(args.limit)
    if args.max_lanes is not None:
        body["max_lanes"] = args.max_lanes
    if args.paused:
        body["status"] = "paused"
    if args.after:
        body["after"] = list(args.after)
    if args.after_items:
        body["after_items"] = args.after_items
    if args.after_failed:
        body["after_failed"] = args.after_failed
    session = connect(args)
    job = session.create("Job", body)
    print(job["id"], flush=True)
    if args.watch:
        return _ended(watch(session, job["id"]))
    return OK


def cmd_ls(args: argparse.Namespace) -> int:
    session = connect(args)
    jobs = found(session, "Job", args.query, finished=args.finished, archived=args.archived)
    if args.json:
        dump(jobs)
    else:
        print(table(job_rows(jobs)))
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    session = connect(args)
    job = _job(session, args.job)
    total = sum(job["counts"].values())
    # a big job's buckets are its tasks' pages: shown up to a size a terminal can use
    tasks = found(session, "Task", f"job.id={quoted(job['id'])}") if total <= SHOWN_TASKS \
        else []
    lanes = _lanes(session, tasks)
    if args.json:
        dump({**job, "buckets": bucket_rows(tasks, lanes)})
        return OK
    fields = [("id", job["id"]), ("code", job["code"]), ("kind", job.get("kind") or "-"),
              ("status", job["status"]), ("progress", f"{job['progress']}%"),
              ("speed", speed(job)), ("etr", job.get("etr") or "-"),
              ("priority", job.get("priority", "-")), ("queue", job.get("uri") or "-"),
              ("limits", ", ".join(job.get("limits") or []) or "-"),
              ("max lanes", job.get("max_lanes") or "-"),
              ("user", job.get("user_hr") or "-"),
              ("created", job.get("created") or "-"), ("started", job.get("started") or "-"),
              ("finished", job.get("finished") or "-"),
              ("tasks", ", ".join(f"{n} {status}" for status, n in job["counts"].items())
               or "none")]
    if job.get("hook_of"):  # a hook of another job (hub/jobs/hooks.py)
        fields.insert(4, ("hook of", job["hook_of"]))
    for when, hook in (job.get("hooks") or {}).items():  # what runs when it ends
        fields.append((f"on {when}", f"{hook['client']}: {' '.join(hook['command'])}"))
    if job.get("status_reason"):  # why it waits: jobs it waits for, no agent matches, a limit
        fields.insert(4, ("waiting", job["status_reason"]))
    after = _after(job)
    if after:
        fields.insert(4, ("after", after))
    if job.get("engine"):  # made from an engine: which, with what arguments
        given = " ".join(f"{k}={v}" for k, v in (job.get("args") or {}).items())
        fields.insert(3, ("engine", f"{job['engine']} {given}".strip()))
    if job.get("kind") == "transfer":
        fields[5:5] = [("source", job.get("source_hr") or "-"),
                       ("destination", job.get("destination_hr") or "-"),
                       ("size", f"{max(job.get('size') or 0, 0) / 1e6:.1f} MB"),
                       ("speed limit", rate_text(job.get("speed_limit")))]
        if job.get("frames_missing") is not None:  # a frame sequence, listed
            fields.insert(8, ("missing frames", job["frames_missing"] or "none"))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    buckets = bucket_rows(tasks, lanes)
    if buckets:
        print(f"\nbuckets ({len(buckets)})")
        print(table(buckets))
    elif total > SHOWN_TASKS:
        print(f"\nbuckets: not listed for a job of {total} tasks (ferry task ls "
              f"{job['id']} --json has each task, with its bucket and lane)")
    return OK


def cmd_watch(args: argparse.Namespace) -> int:
    session = connect(args)
    return _ended(watch(session, _job(session, args.job)["id"]))


def _set(status: str, verb: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        session = connect(args)
        job = session.update("job", args.job, {"status": status})
        print(f"{verb} job {job['id']} ({job['code']}): now {job['status']}")
        return OK

    return cmd


# -- task

def cmd_task_ls(args: argparse.Namespace) -> int:
    session = connect(args)
    job = _job(session, args.job)  # an unknown job is said as such, not as no tasks
    tasks = found(session, "Task", f"job.id={quoted(job['id'])}")
    if args.json:
        dump(tasks)
    else:
        print(table(task_rows(tasks, _lanes(session, tasks))))
    return OK


def cmd_task_show(args: argparse.Namespace) -> int:
    session = connect(args)
    task = session.get("Task", args.task)
    if args.json:
        dump(task)
        return OK
    fields = [("id", task["id"]), ("job", task["job"]), ("item", task.get("item") or "-"),
              ("status", task["status"]), ("progress", percent(task.get("progress"))),
              ("stage", task.get("stage") or "-"), ("attempts", task.get("attempts", 0)),
              ("started", task.get("started") or "-"),
              ("finished", task.get("finished") or "-"),
              ("exit", "-" if task.get("exit_code") is None else task["exit_code"]),
              ("message", task.get("message") or "-")]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    outputs = task.get("outputs") or []
    if outputs:  # what its {"output": ...} lines named
        print(f"\noutputs ({len(outputs)})")
        for path in outputs:
            print(f"  {path}")
    return OK


def cmd_task_log(args: argparse.Namespace) -> int:
    session = connect(args)
    task = session.get("Task", args.task)
    if not args.follow:
        sys.stdout.write(session.task_log(task["id"]))
        return OK
    shown = ""
    while True:
        ended = task["status"] in ("done", "failed", "aborted", "excluded")
        text = session.task_log(task["id"])
        sys.stdout.write(_new_part(shown, text))
        sys.stdout.flush()
        shown = text
        if ended:
            return OK
        time.sleep(FOLLOW_POLL)
        task = session.get("Task", task["id"])


def _new_part(shown: str, text: str) -> str:
    """What ``text`` (a log, or the tail of one) adds to what was ``shown`` of it."""
    if text.startswith(shown):
        return text[len(shown):]
    # a tail that moved on: the longest end of what was shown that it starts with
    for size in range(min(len(shown), len(text)), 0, -1):
        if shown.endswith(text[:size]):
            return text[size:]
    return ("\n[…]\n" if shown else "") + text


SUBMIT = """\
examples:
  ferry job submit --items 1-100 --bucket 10 -- render -f {item} -o /out/{item}.exr
  ferry job submit --name "shot010 lighting" --items 1-200x5 --target tag:gpu \\
      --env OCIO=/studio/ocio.config --priority 700 --watch -- render -f {item}
  ferry job submit --engine blender --arg scene=shot010.blend --items 1-240

{item}, {task} and {job} in the command are replaced per task. With --engine, the
command is the engine's (ferry engine ls), its {placeholders} given with --arg; its
bucket size, env and targets are used unless given here. Prints the job's id.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "submit, list, follow and steer jobs"
    parser = sub.add_parser("job", help=text, description=text + ".")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    submit = verbs.add_parser(
        "submit", help="submit a compute job: a command run once per item",
        description="Submit a compute job: COMMAND (or an engine's) runs once per item on "
        "the agents' lanes.",
        epilog=SUBMIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    submit.add_argument("--name", metavar="N", help="the job's name (default: from the command)")
    submit.add_argument("--items", default="1", metavar="ITEMS",
                        help="1-100, 1-100x5 (a step), 1,5,9-12 (default: 1, one task)")
    submit.add_argument("--engine", metavar="E", help="run this engine of your "
                        "organization's (ferry engine ls) instead of a command")
    submit.add_argument("--arg", action="append", type=_pair, metavar="K=V",
                        help="an argument of the engine: K=V fills {K} in its argv (repeat)")
    submit.add_argument("--bucket", type=int, metavar="N",
                        help="tasks a lane takes at once, run in turn (default 1, or the "
                        "engine's)")
    submit.add_argument("--target", action="append", metavar="T",
                        help="where it may run: site:NAME, tag:NAME, code:PATTERN, a client "
                        "id, ram:>60GB, cores:>=12, gpus:>=1, os:linux|macos|windows, "
                        "hostname:PATTERN; ! before any negates it (repeat: one kind's "
                        "entries are OR-ed, kinds AND-ed; default: any agent of yours)")
    submit.add_argument("--env", action="append", type=_pair, metavar="K=V",
                        help="an environment variable of every task (repeat)")
    submit.add_argument("--priority", type=int, metavar="P", help="1-1000, higher runs first")
    submit.add_argument("--queue", metavar="Q", help="the queue it waits in, one of your "
                        "organization's (default: default)")
    submit.add_argument("--limit", action="append", metavar="NAME",
                        help="a limit of your organization it holds while a task runs "
                        "(repeat; ferry limit ls)")
    submit.add_argument("--max-lanes", type=int, metavar="N",
                        help="at most this many of its tasks run at once")
    submit.add_argument("--paused", action="store_true", help="hold it until resumed")
    submit.add_argument("--after", action="append", metavar="JOB",
                        help="start once job JOB is done (repeat: once all are)")
    submit.add_argument("--after-items", metavar="JOB",
                        help="run item N once item N of job JOB is done (an item JOB has "
                        "not: once all of JOB is)")
    submit.add_argument("--after-failed", choices=("fail", "wait"),
                        help="when a job it waits for fails or is aborted: fail too "
                        "(default), or wait until that job is retried and done")
    submit.add_argument("--watch", action="store_true",
                        help="then show its progress until it ends (exit 0 when done)")
    submit.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARG...")
    submit.set_defaults(func=operate(cmd_submit))

    ls = verbs.add_parser("ls", help="list jobs", description=textwrap.fill(
        "List jobs: id, name, kind, queue, status, progress, speed, etr, user, created. QUERY is the "
        "query language's where part, e.g. \"status=running\" or \"user=lars@edit.com\"."))
    ls.add_argument("query", metavar="QUERY", nargs="?", help="which jobs (default: active)")
    ls.add_argument("--finished", action="store_true",
                    help="also jobs that ended over an hour ago")
    ls.add_argument("--archived", action="store_true", help="also archived jobs")
    ls.set_defaults(func=operate(cmd_ls))
    show = verbs.add_parser("show", help="one job: status, progress, tasks and buckets")
    show.add_argument("job", metavar="ID")
    show.set_defaults(func=operate(cmd_show))
    for p in (ls, show):
        add_json(p)
    follow = verbs.add_parser("watch", help="a live progress bar until the job ends "
                              "(exit 0 when done, 1 when failed or aborted)")
    follow.add_argument("job", metavar="ID")
    follow.set_defaults(func=operate(cmd_watch))
    steer = [submit, ls, show, follow, add_set(verbs, operate)]
    for verb, status, done, help_text in (
            ("pause", "paused", "paused", "hold a job: running tasks finish, nothing starts"),
            ("resume", "waiting", "resumed", "let a paused job run again (or re-run what "
             "failed)"),
            ("abort", "aborted", "aborted", "abort a job: its running tasks are killed")):
        p = verbs.add_parser(verb, help=help_text, description=help_text + ".")
        p.add_argument("job", metavar="ID")
        p.set_defaults(func=operate(_set(status, done)))
        steer.append(p)
    for p in steer:
        add_hub(p)

    text = "a job's tasks and their logs"
    task = sub.add_parser("task", help=text, description=text + ".")
    verbs = task.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    tls = verbs.add_parser("ls", help="a job's tasks: item, status, attempts, lane, times, "
                           "progress and stage")
    tls.add_argument("job", metavar="JOB")
    add_json(tls)
    tls.set_defaults(func=operate(cmd_task_ls))
    tshow = verbs.add_parser("show", help="one task: status, progress, stage and the outputs "
                             "its progress lines named")
    tshow.add_argument("task", metavar="TASK")
    add_json(tshow)
    tshow.set_defaults(func=operate(cmd_task_show))
    log = verbs.add_parser("log", help="a task's whole log")
    log.add_argument("task", metavar="TASK")
    log.add_argument("--follow", action="store_true",
                     help="go on printing it while the task runs")
    log.set_defaults(func=operate(cmd_task_log))
    for p in (tls, tshow, log):
        add_hub(p)

    add_cp(sub, operate)

