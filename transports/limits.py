"""How much a transfer peer may make this agent hold, and for how long.

A peer is an agent the hub vouches for, but not one trusted with this agent's memory or
its transfer slots. A serving agent whose answers are larger than asked, never end, or
drip a byte at a time; a puller or pusher that asks for much at once: each must fail its
transfer (or its request), never exhaust the process. So on both sides of a transfer

- every body is read against the size expected (the client's ``peer._read``, the
  endpoint's ``connection``): never more than that plus one byte is held;
- every request ends within a deadline that grows with its size (``Limits.deadline``):
  ``grace`` seconds, plus the bytes at ``min_rate``;
- the chunk bytes held at once are bounded: a pull runs fewer streams for large chunks
  (``PULL_MEMORY``), an endpoint makes requests wait their turn (``Budget``).

``Limits`` comes from the agent's config (``transfer_max_file_size``, ``transfer_max_files``,
``transfer_min_rate``, ``transfer_grace``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.errors import FerryError

PULL_MEMORY = 256 << 20  # chunk bytes one file's pull holds at once, whatever its streams
SERVE_MEMORY = 512 << 20  # chunk and batch bytes an endpoint holds at once, all requests
POOL = 32 << 20  # of which idle buffers kept for the next requests, at most
ANSWER_BYTES = 64 << 10  # a small JSON answer (a file's stat, an error, a push's answers)
LISTED_BYTES = 512  # a folder listing's JSON per file, at most on average
HEADER_BYTES = 10 << 10  # one file's header line in a batch (a path of 4,096 bytes, an error)
MAX_FILE_SIZE = 1 << 40  # the protocol's own limit: 4,096 chunks of 256 MiB


@dataclass(frozen=True)
class Limits:
    """The quotas and pace a peer must keep to."""

    max_file_size: int = MAX_FILE_SIZE  # bytes of one file a peer may make us receive
    max_files: int = 100_000  # files of a folder listing
    min_rate: int = 32 << 10  # bytes/s a request's bytes must average, past ``grace``
    grace: float = 60.0  # seconds any request may take, whatever its size

    def deadline(self, size: int) -> float:
        """Seconds a request that moves ``size`` bytes may take, in all."""
        return self.grace + max(0, size) / self.min_rate

    @property
    def listing_bytes(self) -> int:
        """A stat answer's JSON at most: a folder of ``max_files`` files."""
        return ANSWER_BYTES + self.max_files * LISTED_BYTES


class Overrun(FerryError):
    """A body longer than its limit (``seen`` bytes, or announced, by then)."""

    def __init__(self, seen: int, limit: int) -> None:
        self.seen, self.limit = seen, limit
        super().__init__(f"more than {limit} bytes")


@dataclass
class Budget:
    """Bytes that requests hold in memory at once, at most ``total``: a request waits until
    its bytes fit (one larger than ``total`` waits until it is alone). ``peak`` is the most
    held so far. Requests run on threads of their own (``transports.server``): they wait
    their turn on a condition, in the order the system wakes them.

    ``buffer`` lends the bytes themselves: buffers come back to a pool, so that a stream
    asking for chunk after chunk reuses one instead of making (and zeroing) a new one each
    time. Idle buffers count against ``total`` too (they go first when a request needs the
    room), at most ``POOL`` bytes of them are kept, and ``trim`` lets go of those nobody
    used for a while."""

    total: int
    used: int = 0
    peak: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False,
                                       compare=False)
    _idle: list[tuple[float, bytearray]] = field(default_factory=list, repr=False,
                                                 compare=False)  # (since, buffer), oldest first

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self.used or self.used + size <= self.total)
            self.used += size
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= size
                self._cond.notify_all()  # each waiter looks again whether it fits now

    @contextlib.contextmanager
    def buffer(self, size: int) -> Iterator[memoryview]:
        """``size`` bytes to fill, held against the budget while inside."""
        with self.hold(size):
            block = self._take(size)
            try:
                yield memoryview(block)[:size]
            finally:
                self._give(block)

    @property
    def idle(self) -> int:
        """Bytes of the buffers in the pool."""
        with self._cond:
            return sum(len(b) for _, b in self._idle)

    def trim(self, before: float) -> int:
        """Let go of the pool's buffers idle since ``before`` (monotonic); returns how many."""
        with self._cond:
            kept = [(since, b) for since, b in self._idle if since >= before]
            gone = len(self._idle) - len(kept)
            self._idle = kept
        return gone

    def _take(self, size: int) -> bytearray:
        want = _capacity(size)
        with self._cond:
            for n, (_, block) in enumerate(self._idle):
                if len(block) == want:
                    del self._idle[n]
                    return block
            idle = sum(len(b) for _, b in self._idle)
            while self._idle and self.used + idle > self.total:  # make room: oldest first
                idle -= len(self._idle.pop(0)[1])
        return bytearray(want)

    def _give(self, block: bytearray) -> None:
        with self._cond:
            idle = sum(len(b) for _, b in self._idle)
            if idle + len(block) <= min(POOL, self.total):
                self._idle.append((time.monotonic(), block))


def _capacity(size: int) -> int:
    """The size of the buffer lent for ``size`` bytes: a whole number of 64 KiB, or of
    1 MiB from 1 MiB up, so that requests of nearly the same size share buffers."""
    grain = 1 << 20 if size >= 1 << 20 else 64 << 10
    return max(grain, -(-size // grain) * grain)
