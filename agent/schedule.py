"""When a workstation agent takes work: windows by weekday and time of day.

A window is written ``DAYS HH:MM-HH:MM`` (``mon-fri 19:00-07:00``, ``sat,sun
00:00-24:00``, or ``19:00-07:00`` for every day). Days are ``mon`` … ``sun``, in
ranges (``fri-mon`` wraps round the week) and lists. A window whose end is not after
its start crosses midnight: it opens on each of its days and closes the next
morning (``mon-fri 19:00-07:00`` runs from Monday 19:00 to Saturday 07:00, with
days off from 07:00 to 19:00). Times are wall-clock times in the schedule's time
zone, so a window keeps its hours across a change to or from summer time.

Everything here is pure: ``Schedule.open_at`` and ``next_opening`` take the time
they judge, which the agent reads from its clock (or the test clock file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 24 * 60  # minutes
WEEK = 7 * DAY

_WINDOW = re.compile(r"(?:(?P<days>[a-z,\-]+)\s+)?(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})")


@dataclass(frozen=True)
class Window:
    """Open from ``start`` for ``length`` minutes on each of ``days`` (0 is Monday)."""

    days: frozenset[int]
    start: int  # minutes after midnight
    length: int  # minutes, at most a day

    def spans(self) -> list[tuple[int, int]]:
        """Its stretches of the week, as [start, end) in minutes after Monday 00:00 (an end
        past the week's end carries into the next Monday)."""
        return sorted((day * DAY + self.start, day * DAY + self.start + self.length)
                      for day in self.days)


def parse_window(text: str) -> Window:
    """One window; a ``ValueError`` that quotes it and says what is wrong."""
    found = _WINDOW.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"window {text!r}: expected DAYS HH:MM-HH:MM, e.g. "
                         f"'mon-fri 19:00-07:00' or 'sat,sun 00:00-24:00'")
    start, end = _minutes(text, found["start"]), _minutes(text, found["end"])
    if start == DAY:
        raise ValueError(f"window {text!r}: a window starts at 23:59 at the latest")
    if start == end:
        raise ValueError(f"window {text!r}: it opens and closes at once; write 00:00-24:00 "
                         f"for a whole day")
    days = _days(text, found["days"]) if found["days"] else frozenset(range(7))
    return Window(days, start, end - start if end > start else DAY - start + end)


def _minutes(window: str, hhmm: str) -> int:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"window {window!r}: {hhmm!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _days(window: str, text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            raise ValueError(f"window {window!r}: {part!r} is not a day or a range of days "
                             f"({', '.join(DAYS)}; e.g. mon-fri)")
        a, b = DAYS.index(first), DAYS.index(last) if dash else DAYS.index(first)
        days.update((a + n) % 7 for n in range((b - a) % 7 + 1))
    return frozenset(days)


def _minute_of_week(now: datetime) -> int:
    return now.weekday() * DAY + now.hour * 60 + now.minute


@dataclass(frozen=True)
class Schedule:
    """Windows when work is taken; outside every one, none is."""

    windows: tuple[Window, ...]

    @classmethod
    def parse(cls, texts: list[str]) -> Schedule:
        return cls(tuple(parse_window(text) for text in texts))

    def open_at(self, now: datetime) -> bool:
        """Is ``now`` (a wall-clock time in the schedule's zone) inside a window?"""
        t = _minute_of_week(now)
        return any(start <= m < end for window in self.windows
                   for start, end in window.spans() for m in (t, t + WEEK))

    def next_opening(self, now: datetime) -> datetime:
        """When the next window opens after ``now``, to the minute."""
        t = _minute_of_week(now)
        wait = min((start - t) % WEEK or WEEK for window in self.windows
                   for start, _ in window.spans())
        return now.replace(second=0, microsecond=0) + timedelta(minutes=wait)


def describe(when: datetime) -> str:
    """``mon 19:00``, as a reason names the next window."""
    return f"{DAYS[when.weekday()]} {when:%H:%M}"
