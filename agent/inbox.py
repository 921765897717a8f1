"""Calls from threads, handed to the event loop in batches."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("agent.work")


class LoopInbox:
    """Calls from the lanes' threads, run on the event loop in batches.

    Waking the loop costs a pipe write and a fight for the GIL with the lanes;
    with short tasks, one wake-up per task ended costs a quarter of a lane's
    speed. So the first call of a batch wakes the loop ``window`` seconds later
    and the calls that come meanwhile ride along. ``flush`` (on the loop) runs
    whatever is waiting now, for code that must come after those calls.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float = 0.01) -> None:
        self._loop = loop
        self._window = window
        self._calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._armed = False
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        """From any thread."""
        self._calls.append((fn, args))
        with self._lock:
            if self._armed:
                return
            self._armed = True
        self._loop.call_soon_threadsafe(self._loop.call_later, self._window, self.flush)

    def flush(self) -> None:
        """On the loop: run every call that is waiting."""
        with self._lock:
            self._armed = False
        while self._calls:
            fn, args = self._calls.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("a lane's event could not be handled")
