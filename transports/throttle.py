"""Speed limits where the bytes move: token buckets the stream threads take from.

A ``Rate`` is one limit in bytes a second, shared by every stream it governs: the
streams of one job on this agent share the job's, and every transfer of the agent shares
the agent's own (``transfer_speed_limit``). A ``Throttle`` is what one transfer takes
from: its job's rate and the agent's, so the lowest one applies. A rate is changed in
place (``Rate.set``), from the event loop, while threads take from it: the hub's word on
a job's new limit reaches running streams at once, even one waiting for its turn.

The bucket runs in debt: a stream books what it is about to move (a chunk, a batch) and
then waits until the rate has paid for it. Bookings are made in order under the lock,
and waits are slept outside it, a slice at a time, each slice worked out at the rate in
force then: streams queue in order and together move at the rate, a chunk is never
split, and a changed rate is followed within a slice. A rate of 0 is no limit: booking
takes no lock and waits for nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

BURST = 0.05  # seconds of the rate a bucket holds when idle: a short burst, no more
SLICE = 0.2  # seconds a wait sleeps before it looks at the rate again


class Rate:
    """One limit (bytes a second; 0: none) and its bucket, safe to use from any thread.

    The bucket is two counters: bytes booked (``_debit``) and bytes the rate has paid
    for (``_credit``, at most a burst ahead of what is booked). A booking is due once the
    credit reaches the debit it left."""

    def __init__(self, rate: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._debit = 0.0
        self._credit = 0.0
        self._stamp = clock()
        self._lock = threading.Lock()
        self.taken = 0  # bytes taken in all, for whoever wants to check the accounting

    def set(self, rate: int) -> None:
        """A new limit, from now on: bookings waiting are paid at it from now."""
        with self._lock:
            self._refill()
            if not (self.rate and rate):  # to or from no limit: no debt carried over
                self._credit = self._debit
            self.rate = rate
            self._credit = min(self._credit, self._debit + rate * BURST)

    def _refill(self) -> None:
        now = self._clock()
        if self.rate:
            self._credit = min(self._debit + self.rate * BURST,
                               self._credit + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, count: int) -> float:
        """Book ``count`` bytes; the mark they are due at (``due``)."""
        if not self.rate:
            self.taken += count  # unlocked: a figure, not a decision
            return 0.0
        with self._lock:
            self._refill()
            self._debit += count
            self.taken += count
            return self._debit

    def due(self, mark: float) -> float:
        """Seconds until the booking that left ``mark`` is paid for, at the rate now."""
        if not self.rate:
            return 0.0
        with self._lock:
            self._refill()
            short = mark - self._credit
            return short / self.rate if short > 0 else 0.0

    def book(self, count: int) -> float:
        """Book ``count`` bytes; the seconds to wait, at the rate now (0: at once)."""
        return self.due(self.reserve(count))


class Throttle:
    """What one transfer takes from: the rates that govern it (its job's, the agent's)."""

    def __init__(self, rates: Sequence[Rate]) -> None:
        self.rates = tuple(rates)

    def reserve(self, count: int) -> list[float]:
        """Book ``count`` bytes from every rate; the marks, for ``due``."""
        return [rate.reserve(count) for rate in self.rates]

    def due(self, marks: list[float]) -> float:
        """Seconds until every rate has paid for its booking (the longest)."""
        return max((r.due(m) for r, m in zip(self.rates, marks, strict=True)), default=0.0)

    def book(self, count: int) -> float:
        return self.due(self.reserve(count))

    def take(self, count: int, stop: threading.Event | None = None) -> None:
        """Book ``count`` bytes and wait on this thread until they are paid for, looking at
        the rates again every ``SLICE``; a ``stop`` set ends the wait."""
        marks = self.reserve(count)
        while (wait := self.due(marks)) > 0:
            if stop is None:
                time.sleep(min(wait, SLICE))
            elif stop.wait(min(wait, SLICE)):
                return

    @property
    def limit(self) -> int:
        """The limit in force now: the lowest of the rates (0: none)."""
        return min((r.rate for r in self.rates if r.rate), default=0)


async def waited(throttle: Throttle | None, count: int) -> None:
    """``Throttle.take`` on the event loop (a batch of small files: its bytes are in one
    request's body or answer; a chunk's stream waits on its own thread instead)."""
    if throttle is None:
        return
    marks = throttle.reserve(count)
    # a rate, not an event, says when: it is looked at again each slice
    while (wait := throttle.due(marks)) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(wait, SLICE))
