"""Refusals: every request, report, ticket or run turned away at a trust boundary is
logged with who asked and counted, in the process that refused it.

Call :func:`refused` where the refusal is decided (the hub's error middleware, a report
item refused, the transfer endpoint turning down a ticket, an agent refusing a run the
hub sent). The counts are per process, by ``what`` (a short, stable name of the boundary,
e.g. ``"forbidden"``, ``"report"``, ``"ticket"``, ``"sealing"``) and are shown by the hub
(``GET /api/v1/refusals``, root only) and by an agent (``status.json``'s ``refusals``).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger("ferry.refusals")

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def refused(what: str, who: str, why: str, **details: Any) -> None:
    """Log one refusal (a warning naming ``who`` asked and ``why`` it was refused) and
    count it under ``what``."""
    with _lock:
        _counts[what] += 1
    log.warning("refused", what=what, who=who, why=why, **details)


def counts() -> dict[str, int]:
    """Refusals so far in this process, by kind."""
    with _lock:
        return dict(sorted(_counts.items()))


def reset() -> None:
    """Forget the counts (tests that run a hub or an agent in process)."""
    with _lock:
        _counts.clear()
