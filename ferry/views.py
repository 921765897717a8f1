"""What the operator's commands and ``ferry demo`` print: rows of clients, jobs, tasks
and buckets, progress bars, and the queries they are found by."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import ApiError
from ferry.login import Usage

if TYPE_CHECKING:
    from hub.session import Session

ENDED = ("done", "failed", "aborted")
LANE = 5  # a compute lane's client type


def where(entity: str, text: str | None) -> str:
    """``entity WHERE text`` (``text``: the query language's where part)."""
    return f"{entity} WHERE {text}" if text and text.strip() else entity


def found(session: Session, entity: str, text: str | None, **options: Any
          ) -> list[dict[str, Any]]:
    """Every record of ``entity`` that the where part ``text`` matches; a bad query is
    a usage error pointing into ``text`` itself."""
    query = where(entity, text)
    try:
        return session.find(query, **options)
    except ApiError as exc:
        if exc.code != "query_error":
            raise
        position = exc.details.get("position")
        detail = re.sub(r" at position \d+$", "", exc.message.splitlines()[0])
        if isinstance(position, int) and text:
            at = position - (len(query) - len(text.strip()))
            raise Usage(f"bad query: {detail} at position {max(at, 0)}\n  {text.strip()}\n  "
                        f"{' ' * max(at, 0)}^") from None
        raise Usage(f"bad query: {detail}") from None


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ago(iso: str | None, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', … of a hub time; '-' when there is none."""
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0.0, (now or time.time()) - then.timestamp())
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f} GiB" if isinstance(value, int | float) else "-"


def client_rows(clients: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The demo's view of its agent: identity and host metrics."""
    rows = []
    for c in clients:
        m = c.get("metrics") or {}
        rows.append({
            "code": str(c["code"]), "type": str(c["type_hr"]), "status": str(c["status"]),
            "os": str(c["os"]), "cores": str(m.get("c", "-")),
            "cpu": f"{m['l']:.0f}%" if "l" in m else "-",
            "memory": f"{m['m']:.0f}% of {_gib(m.get('mpt'))}" if "m" in m else "-",
            "load": " ".join(f"{x:.2f}" for x in m.get("la") or []) or "-",
            "host_id": str(c["host_id"] or "-"), "wan_ip": str(c["wan_ip"]),
        })
    return rows


def farm_rows(clients: list[dict[str, Any]], lanes: list[dict[str, Any]], busy: set[str]
              ) -> list[dict[str, str]]:
    """``ferry client ls``: each client with its host metrics and its lanes busy/total; and
    why it takes no work, when any listed one says so (its schedule or NIMBY)."""
    by_parent: dict[str, list[str]] = {}
    for lane in lanes:
        by_parent.setdefault(lane["parent"], []).append(lane["id"])
    rows = []
    for c in clients:
        m = c.get("metrics") or {}
        own = by_parent.get(c["id"], [])
        if c["type"] == LANE:
            lanes_text = "busy" if c["id"] in busy else "idle"
        else:
            lanes_text = f"{sum(1 for lane in own if lane in busy)}/{len(own)}"
        rows.append({
            "code": str(c["code"]), "type": str(c["type_hr"]), "status": str(c["status"]),
            "cpu": f"{m['l']:.0f}%" if "l" in m else "-",
            "memory": f"{m['m']:.0f}%" if "m" in m else "-",
            "load": f"{m['la'][0]:.2f}" if m.get("la") else "-",
            "lanes": lanes_text, "checkin": ago(c.get("last_checkin")),
            "version": str(c.get("version") or "-"),
        })
    if any(c.get("status_reason") for c in clients):
        for row, c in zip(rows, clients, strict=True):
            row["reason"] = str(c.get("status_reason") or "-")
    return rows


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"id": j["id"], "code": str(j["code"])[:40], "kind": str(j.get("kind") or "-"),
             "queue": str(j.get("uri") or "-"),
             "status": j["status"], "progress": f"{j['progress']}%", "speed": speed(j),
             "etr": j.get("etr") or "-", "user": str(j.get("user_hr") or "-"),
             "created": ago(j.get("created"))} for j in jobs]


def limit_rows(limits: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": str(x["name"]), "in use": str(x.get("in_use", "-")), "max": str(x["max"]),
             "modified": ago(x.get("modified"))} for x in limits]


def speed(job: dict[str, Any]) -> str:
    unit = "MB/s" if job.get("kind") == "transfer" else "tasks/s"
    return f"{job.get('speed') or 0:.1f} {unit}"


def task_rows(tasks: list[dict[str, Any]], lanes: dict[str, str]) -> list[dict[str, str]]:
    rows = []
    for t in tasks:
        lane = str((t.get("source") or {}).get("lane") or "-")
        rows.append({"id": t["id"], "item": str(t.get("item") or "-")[:40],
                     "status": t["status"], "attempts": str(t.get("attempts", 0)),
                     "lane": lanes.get(lane, lane),
                     "started": ago(t.get("started")),
                     "time": f"{t['time'] / 1000:.2f} s" if t.get("time") else "-",
                     "progress": percent(t.get("progress")),
                     "stage": str(t.get("stage") or "-")[:20],
                     "exit": "-" if t.get("exit_code") is None else str(t["exit_code"]),
                     "message": str(t.get("message") or "")[:60]})
    return rows


def percent(value: float | None) -> str:
    """A task's progress as its progress lines said it ("-": they said none)."""
    return "-" if value is None else f"{value:g}%"


def bucket_rows(tasks: list[dict[str, Any]], lanes: dict[str, str]) -> list[dict[str, str]]:
    """A job's buckets: which lane ran which items, when, for how long."""
    buckets: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.get("bucket"):
            buckets.setdefault(task["bucket"], []).append(task)
    rows = []
    for members in sorted(buckets.values(), key=lambda m: min(t["started"] or "" for t in m)):
        items = [str(t["item"]) for t in members]
        try:
            numbers = sorted(int(i) for i in items)
            span = f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
        except ValueError:
            span = ",".join(items)[:30]
        lane = str((members[0].get("source") or {}).get("lane"))
        rows.append({"bucket": members[0]["bucket"][-8:], "lane": lanes.get(lane, "?"),
                     "items": span, "tasks": str(len(members)),
                     "time": f"{(members[0]['time'] or 0) / 1000:.2f} s",
                     "status": ",".join(sorted({t["status"] for t in members}))})
    return rows


def progress_bar(job: dict[str, Any], width: int = 30) -> str:
    """A compute job's progress, by tasks (running ones as far as they said they are)."""
    counts = job["counts"]
    total = sum(counts.values())
    done = counts.get("done", 0)
    filled = int(width * job["progress"] / 100)
    return (f"[{'#' * filled}{'-' * (width - filled)}] {job['progress']:3d}%  {done}/{total} done"
            f"  executing {counts.get('executing', 0)}"
            f"  {job['speed']:.1f} tasks/s  etr {job['etr'] or '-'}")


def bytes_bar(job: dict[str, Any], width: int = 30) -> str:
    """A transfer job's progress, by bytes."""
    filled = int(width * job["progress"] / 100)
    size = max(job["size"], 0) / 1e6
    return (f"[{'#' * filled}{'-' * (width - filled)}] {job['progress']:3d}%  "
            f"{size * job['progress'] / 100:.0f}/{size:.0f} MB  {job['speed']:.1f} MB/s  "
            f"etr {job['etr'] or '-'}")


def bar_of(job: dict[str, Any]) -> Callable[[dict[str, Any]], str]:
    return bytes_bar if job.get("kind") == "transfer" else progress_bar


def watch(session: Session, job_id: str, interval: float = 0.5) -> dict[str, Any]:
    """Show the job's progress bar until it ends (redrawn in place on a terminal, else a
    line whenever it moves on by a quarter or changes status); returns the job as it ended."""
    tty = sys.stdout.isatty()
    shown: tuple[int, str] | None = None
    while True:
        job = session.get("Job", job_id)
        bar = bar_of(job)(job)
        if tty:
            print(f"\r{bar}  {job['status']}\033[K", end="", flush=True)
        elif shown is None or job["progress"] >= shown[0] + 25 or job["status"] != shown[1]:
            shown = (job["progress"], job["status"])
            print(f"{bar}  {job['status']}", flush=True)
        if job["status"] in ENDED:
            break
        time.sleep(interval)
    if tty:
        print()
    return job
