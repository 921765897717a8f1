"""The availability loop: does a workstation agent take work now, and if not, why?

Each second it judges the agent's ``schedule:`` and ``nimby:`` (agent/schedule.py,
agent/nimby.py) into a reason or none, kept in ``AgentState.status_reason``: the claim
loop claims nothing while there is one, the check-in carries it to the hub (one is
sent at once when it changes), and the status page shows it. The first rule that
holds names the reason: the schedule, then the user, then the CPU.

Running buckets follow the rule that stopped the work: ``running: finish`` lets them
run to their end; ``running: handback`` stops them once ``grace`` seconds have passed
with no work taken (the pool hands them back: their running tasks go back aborted and
the rest unstarted, and the hub spends no attempt on either).

The clock file (``schedule.clock``) and the activity file (``nimby.activity``) are read
on every round, so a test or an operator moves the agent's "now" or its user's presence
by writing a file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from agent.buckets.pool import BucketPool
from agent.config import AgentConfig, NimbyConfig, Running, ScheduleConfig
from agent.nimby import CpuSample, Logind, activity_file, others_busy, sample_cpu
from agent.schedule import Schedule, describe
from agent.state import AgentState
from core.lifecycle import until_stopped

log = structlog.get_logger("agent.availability")

ROUND = 1.0  # seconds between judgements


@dataclass(frozen=True)
class Verdict:
    """Why no work is taken, and what becomes of running buckets meanwhile."""

    reason: str
    running: Running
    grace: float


class Clock:
    """The schedule's "now": the clock file's time when it holds one, else the real one."""

    def __init__(self, config: ScheduleConfig) -> None:
        self.zone = config.zone
        self.file = Path(config.clock).expanduser() if config.clock else None
        self._bad = ""  # the clock file's last unreadable text, told once

    def now(self) -> datetime:
        """A wall-clock time in the schedule's zone. Blocks on the clock file."""
        text = ""
        if self.file is not None:
            try:
                text = self.file.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                text = ""
        if text:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                if text != self._bad:
                    self._bad = text
                    log.error("the clock file holds no ISO time; using the real one",
                              file=str(self.file), text=text[:80])
            else:
                return when.astimezone(self.zone) if when.tzinfo else when
        return datetime.now(self.zone)


class Judge:
    """Judges the agent's schedule and NIMBY sections. ``logind`` and ``cpu`` read the
    machine (each in its own way where a test gives its own); everything blocks: call
    ``verdict`` in a thread."""

    def __init__(self, schedule: ScheduleConfig | None, nimby: NimbyConfig | None, *,
                 logind: Logind | None = None,
                 cpu: Callable[[], CpuSample] = sample_cpu, cores: int = 1) -> None:
        self.schedule = schedule
        self.windows = Schedule.parse(schedule.windows) if schedule else None
        self.clock = Clock(schedule) if schedule else None
        self.nimby = nimby
        self.logind = logind or Logind()
        self.cpu = cpu
        self.cores = cores
        self._measured = -float("inf")  # monotonic time of the last NIMBY measurement
        self._user = False
        self._sample: CpuSample | None = None
        self._busy: float | None = None  # others' CPU percent between the last two samples

    def verdict(self) -> Verdict | None:
        """None: work is taken."""
        if self.schedule is not None and self.windows is not None and self.clock is not None:
            now = self.clock.now()
            if not self.windows.open_at(now):
                opening = describe(self.windows.next_opening(now))
                return Verdict(f"outside schedule (next window {opening})",
                               self.schedule.running, self.schedule.grace)
        nimby = self.nimby
        if nimby is None:
            return None
        self._measure(nimby)
        if nimby.user_active and self._user:
            return Verdict("user active (nimby)", nimby.running, nimby.grace)
        return cpu_verdict(self._busy, nimby)

    def _measure(self, nimby: NimbyConfig) -> None:
        """The activity file each round; logind and the CPU every ``nimby.interval``."""
        now = time.monotonic()
        due = now - self._measured >= nimby.interval
        if due:
            self._measured = now
        if nimby.user_active:
            if nimby.activity:
                self._user = activity_file(Path(nimby.activity).expanduser(),
                                           nimby.idle_after, time.time())
            elif due:
                self._user = bool(self.logind.user_active(nimby.idle_after))
        if nimby.cpu_above is not None and due:
            sample = self.cpu()
            if self._sample is not None:
                self._busy = others_busy(self._sample, sample, self.cores)
            self._sample = sample


def cpu_verdict(busy: float | None, nimby: NimbyConfig) -> Verdict | None:
    """Work waits while others keep the CPU busier than ``nimby.cpu_above`` percent (no
    measurement yet: it does not)."""
    if nimby.cpu_above is None or busy is None or busy <= nimby.cpu_above:
        return None
    return Verdict(f"cpu busy {busy:.0f}% > {nimby.cpu_above:g}% (nimby)", nimby.running,
                   nimby.grace)


class AvailabilityLoop:
    """Keeps ``state.status_reason`` as ``judge`` says; hands ``pool``'s buckets back when
    the rule says so; ``changed`` is told each time the reason changes."""

    def __init__(self, judge: Judge, state: AgentState, pool: BucketPool,
                 changed: Callable[[], None]) -> None:
        self.judge = judge
        self.state = state
        self.pool = pool
        self.changed = changed
        self._since: float | None = None  # monotonic: since when no work is taken

    @classmethod
    def build(cls, config: AgentConfig, state: AgentState, pool: BucketPool,
              changed: Callable[[], None], cores: int) -> AvailabilityLoop | None:
        """None when the config has neither a schedule nor NIMBY: work is always taken."""
        if config.schedule is None and config.nimby is None:
            return None
        return cls(Judge(config.schedule, config.nimby, cores=cores), state, pool, changed)

    async def check(self) -> None:
        """One judgement, and what follows from it."""
        verdict = await asyncio.to_thread(self.judge.verdict)
        reason = verdict.reason if verdict else None
        if reason != self.state.status_reason:
            if reason is None:
                log.info("taking work again")
            else:
                log.info("taking no work", reason=reason)
            self.state.status_reason = reason
            self.changed()
        if verdict is None:
            self._since = None
            return
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if verdict.running == "handback" and now - self._since >= verdict.grace:
            handed = self.pool.hand_back(verdict.reason)
            if handed:
                log.warning("handing running work back to the hub", buckets=handed,
                            reason=verdict.reason)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.check()
            await until_stopped(stop, asyncio.sleep(ROUND))
