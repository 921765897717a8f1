""""Not in my backyard": is the workstation's user at it, or its CPU busy with other work?

The user: logind's ``IdleHint`` of the machine's local sessions (``loginctl``; sessions
over ssh do not count: the machine's own user sits at its seat). A session not idle, or
idle for less than ``idle_after`` seconds, is a user at work. Where logind does not
answer (no systemd, macOS, Windows) the user is taken as away, and the agent says so
once in its log. An activity file (``nimby.activity``, for tests and for operators whose
screen locker or login hook knows better) replaces logind: it holds ``active`` or
``idle``, or anything else and is touched while the user works (its age then counts).

The CPU: the machine's busy time less the agent's own (its process and everything it
started: its lanes' tasks), as a percentage of all cores between two samples. A task
that left the agent's process tree counts as another's.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger("agent.nimby")

LOGINCTL_TIMEOUT = 5.0  # seconds one loginctl call may take
SHOW = ("Id", "Class", "Remote", "Active", "IdleHint", "IdleSinceHint")


# -- the user
def activity_file(path: Path, idle_after: float, now: float) -> bool:
    """Is the user active, by the activity file? ``active``/``idle`` say so; anything else
    counts by the file's age (touched within ``idle_after`` seconds: active). A missing
    file: nobody said the user is there."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().lower()
        age = now - path.stat().st_mtime
    except OSError:
        return False
    if text in ("active", "idle"):
        return text == "active"
    return age < idle_after


def sessions_active(shows: list[str], idle_after: float, now: float) -> bool:
    """Is a local user session active, given ``loginctl show-session -p …`` of each
    session (``Key=value`` lines)? ``now``: seconds since the epoch."""
    for text in shows:
        props = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        if props.get("Class") != "user" or props.get("Remote") == "yes" \
                or props.get("Active") == "no":
            continue
        if props.get("IdleHint") != "yes":
            return True
        since = int(props.get("IdleSinceHint") or 0) / 1e6  # microseconds since the epoch
        if since and now - since < idle_after:
            return True
    return False


class Logind:
    """Local sessions' idle hints through ``loginctl``; None where it does not answer."""

    def __init__(self) -> None:
        self._told = False

    def user_active(self, idle_after: float) -> bool | None:
        """Blocks on ``loginctl``: call it in a thread."""
        try:
            listed = self._run("list-sessions", "--no-legend")
            ids = [line.split()[0] for line in listed.splitlines() if line.strip()]
            shows = [self._run("show-session", sid, *(f"-p{key}" for key in SHOW))
                     for sid in ids]
        except (OSError, subprocess.SubprocessError) as exc:
            if not self._told:
                self._told = True
                log.warning("logind does not answer; the user counts as away (set "
                            "nimby.activity to say otherwise)", error=str(exc))
            return None
        return sessions_active(shows, idle_after, time.time())

    @staticmethod
    def _run(*args: str) -> str:
        return subprocess.run(["loginctl", *args], capture_output=True, text=True, check=True,
                              timeout=LOGINCTL_TIMEOUT).stdout


# -- the CPU
@dataclass(frozen=True)
class CpuSample:
    """Seconds of CPU time so far: the machine's busy time and the agent's own."""

    at: float  # monotonic
    busy: float  # all cores, not idle
    own: float  # the agent and what it started


def others_busy(before: CpuSample, after: CpuSample, cores: int) -> float:
    """Percent of the machine's cores that others kept busy between two samples."""
    wall = (after.at - before.at) * max(cores, 1)
    if wall <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return min(100.0, max(0.0, 100.0 * others / wall))


def sample_cpu() -> CpuSample:
    """The machine's and the agent's CPU time now (blocks briefly: call it in a thread)."""
    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    me = psutil.Process(os.getpid())
    mine = me.cpu_times()  # with the children it reaped (zero on Windows)
    own = mine.user + mine.system + mine.children_user + mine.children_system
    for child in me.children(recursive=True):
        try:
            theirs = child.cpu_times()
            own += theirs.user + theirs.system + theirs.children_user + theirs.children_system
        except psutil.Error:  # ended meanwhile: its time is in the next sample's rusage
            continue
    return CpuSample(time.monotonic(), busy, own)
