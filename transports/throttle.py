"""Speed limits where the bytes move: token buckets the stream threads take from.

A ``Rate`` is one limit in bytes a second, shared by every stream it governs: the
streams of one job on this agent share the job's, and every transfer of the agent shares
the agent's own (``transfer_speed_limit``). A ``Throttle`` is what one transfer takes
from: its job's rate and the agent's, so the lowest one applies. A rate is changed in
place (``Rate.set``), from the event loop, while threads take from it: the hub's word on
a job's new limit reaches running streams at their next chunk.

The bucket runs in debt: a stream takes what it is about to move (a chunk, a batch) and
then waits until the bucket is back above empty. Waits are booked under the lock but
slept outside it, so streams queue in order and together move at the rate, while a
chunk is never split. A rate of 0 is no limit: ``take`` returns at once, without the
lock, and a transfer with no limit anywhere takes no lock at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

BURST = 0.05  # seconds of the rate a bucket holds when idle: a short burst, no more


class Rate:
    """One limit (bytes a second; 0: none) and its bucket, safe to use from any thread."""

    def __init__(self, rate: int = 0) -> None:
        self.rate = rate
        self._tokens = 0.0  # may go below 0: the debt of what streams took
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.taken = 0  # bytes taken in all, for whoever wants to check the accounting

    def set(self, rate: int) -> None:
        """A new limit, from now on (what is booked already stays booked)."""
        with self._lock:
            self._refill(time.monotonic())
            self.rate = rate
            self._tokens = min(self._tokens, rate * BURST)

    def _refill(self, now: float) -> None:
        if self.rate:
            self._tokens = min(self.rate * BURST,
                               self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def book(self, count: int) -> float:
        """Take ``count`` bytes; the seconds to wait before moving them (0: at once)."""
        if not self.rate:
            self.taken += count  # unlocked: a figure, not a decision
            return 0.0
        with self._lock:
            self._refill(time.monotonic())
            self._tokens -= count
            self.taken += count
            return -self._tokens / self.rate if self._tokens < 0 else 0.0


class Throttle:
    """What one transfer takes from: the rates that govern it (its job's, the agent's)."""

    def __init__(self, rates: Sequence[Rate]) -> None:
        self.rates = tuple(rates)

    def book(self, count: int) -> float:
        """Take ``count`` bytes from every rate; the seconds to wait (the longest)."""
        wait = 0.0
        for rate in self.rates:
            wait = max(wait, rate.book(count))
        return wait

    def take(self, count: int, stop: threading.Event | None = None) -> None:
        """``book``, then wait on this thread (cut short when ``stop`` is set)."""
        wait = self.book(count)
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)

    @property
    def limit(self) -> int:
        """The limit in force now: the lowest of the rates (0: none)."""
        return min((r.rate for r in self.rates if r.rate), default=0)
