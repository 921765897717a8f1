"""The files an endpoint is receiving (pushes): each open part file, how many requests use
it now, and when the last one ended, so that a sender that went away does not hold it open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from transports.partial import PartialFile

Key = tuple[str, str]  # (share id, path in the share)


@dataclass
class Receiving:
    _parts: dict[Key, PartialFile] = field(default_factory=dict)
    _use: dict[Key, list[float]] = field(default_factory=dict)  # [requests now, last ended]

    def busy(self, key: Key) -> bool:
        return bool(self._use.get(key, (0, 0.0))[0])

    def replace(self, key: Key, part: PartialFile) -> None:
        """``part`` is now the file received at ``key`` (an older one is closed)."""
        old = self._parts.pop(key, None)
        if old is not None and old is not part:
            old.close()
        self._parts[key] = part
        self._use[key] = [0, time.monotonic()]

    def drop(self, key: Key) -> None:
        """Close an older file at ``key`` before a new one is opened there."""
        old = self._parts.pop(key, None)
        if old is not None:
            old.close()
        self._use.pop(key, None)

    def take(self, key: Key) -> PartialFile | None:
        """The file at ``key``, marked in use until ``release``; None if none is open."""
        part = self._parts.get(key)
        if part is not None:
            self._use.setdefault(key, [0, 0.0])[0] += 1
        return part

    def release(self, key: Key) -> None:
        use = self._use.get(key)
        if use is not None:
            use[0] -= 1
            use[1] = time.monotonic()

    def forget(self, key: Key) -> None:
        """The file was committed (or refused whole): nothing is received there now."""
        self._parts.pop(key, None)
        self._use.pop(key, None)

    def close_idle(self, before: float) -> int:
        """Close the files untouched since ``before`` (monotonic) that no request uses.
        They stay on disk, journal and all: a sender that comes back resumes."""
        closed = 0
        for key, part in list(self._parts.items()):
            busy, last = self._use.get(key, (0, 0.0))
            if not busy and last < before:
                part.close()
                self.forget(key)
                closed += 1
        return closed

    def close_all(self) -> None:
        for part in self._parts.values():
            part.close()  # kept on disk: the sender resumes
        self._parts.clear()
        self._use.clear()
