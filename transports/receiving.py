"""The files an endpoint is receiving (pushes): each open part file, how many requests use
it now, and when the last one ended, so that a sender that went away does not hold it open.

Requests run on threads of their own (``transports.server``), the sweeper on the event
loop: every method holds one lock, and part files are closed outside it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from transports.partial import PartialFile

Key = tuple[str, str]  # (share id, path in the share)


@dataclass
class Receiving:
    _parts: dict[Key, PartialFile] = field(default_factory=dict)
    _use: dict[Key, list[float]] = field(default_factory=dict)  # [requests now, last ended]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def busy(self, key: Key) -> bool:
        with self._lock:
            return bool(self._use.get(key, (0, 0.0))[0])

    def replace(self, key: Key, part: PartialFile) -> None:
        """``part`` is now the file received at ``key`` (an older one is closed)."""
        with self._lock:
            old = self._parts.pop(key, None)
            self._parts[key] = part
            self._use[key] = [0, time.monotonic()]
        if old is not None and old is not part:
            old.close()

    def drop(self, key: Key) -> None:
        """Close an older file at ``key`` before a new one is opened there."""
        with self._lock:
            old = self._parts.pop(key, None)
            self._use.pop(key, None)
        if old is not None:
            old.close()

    def take(self, key: Key) -> PartialFile | None:
        """The file at ``key``, marked in use until ``release``; None if none is open."""
        with self._lock:
            part = self._parts.get(key)
            if part is not None:
                self._use.setdefault(key, [0, 0.0])[0] += 1
            return part

    def release(self, key: Key) -> None:
        with self._lock:
            use = self._use.get(key)
            if use is not None:
                use[0] -= 1
                use[1] = time.monotonic()

    def forget(self, key: Key) -> None:
        """The file was committed (or refused whole): nothing is received there now."""
        with self._lock:
            self._parts.pop(key, None)
            self._use.pop(key, None)

    def close_idle(self, before: float) -> int:
        """Close the files untouched since ``before`` (monotonic) that no request uses.
        They stay on disk, journal and all: a sender that comes back resumes."""
        with self._lock:
            idle = [key for key in self._parts
                    if not self._use.get(key, (0, 0.0))[0]
                    and self._use.get(key, (0, 0.0))[1] < before]
            parts = [self._parts.pop(key) for key in idle]
            for key in idle:
                self._use.pop(key, None)
        for part in parts:
            part.close()
        return len(parts)

    def close_all(self) -> None:
        with self._lock:
            parts = list(self._parts.values())
            self._parts.clear()
            self._use.clear()
        for part in parts:
            part.close()  # kept on disk: the sender resumes
