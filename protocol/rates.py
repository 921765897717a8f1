"""Speed limits as people write them: ``50MB/s``, ``500KB/s``, ``1GB/s``, ``100MiB/s``, or
bytes a second as an integer. The hub (a job's ``speed_limit``, its default), the agent
(``transfer_speed_limit``) and the CLI read them here, so one text means one rate
everywhere (docs/TRANSFERS.md, "Speed limits").

Units are decimal, as network rates are quoted: ``MB/s`` is 1,000,000 bytes a second;
``KiB/s``, ``MiB/s``, ``GiB/s`` are binary. ``b``/``bit`` units are refused: a limit is in
bytes, and ``Mb/s`` next to ``MB/s`` is a typo waiting to happen.
"""

from __future__ import annotations

import re
from typing import Any

MAX_RATE = 1 << 40  # bytes/s: a terabyte a second is no limit at all
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:/\s*s)?")


def parse_rate(value: Any) -> int:
    """Bytes a second from a positive integer or text like ``50MB/s``; ``ValueError``
    saying what is expected otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 < value <= MAX_RATE:
            return value
        raise ValueError(f"expected a rate above 0 and at most {MAX_RATE} bytes/s, got {value}")
    match = _RATE.fullmatch(value.strip()) if isinstance(value, str) else None
    unit = match[2] if match else ""
    if match is None or unit.lower() not in _UNITS or (unit.endswith("b") and unit != "b"):
        raise ValueError(f"expected bytes a second (an integer) or a rate like '50MB/s', "
                         f"'500KB/s', '1GB/s', got {value!r:.80}")
    rate = int(float(match[1]) * _UNITS[unit.lower()])
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"expected a rate above 0 and at most {MAX_RATE} bytes/s, got "
                         f"{value!r:.80}")
    return rate


def rate_text(rate: int | None) -> str:
    """A rate as people read it (``50MB/s``); ``unlimited`` for none."""
    if not rate:
        return "unlimited"
    for unit, size in (("GB/s", 10**9), ("MB/s", 10**6), ("KB/s", 10**3)):
        if rate >= size:
            return f"{rate / size:.4g}{unit}"
    return f"{rate}B/s"


def lowest(*rates: int | None) -> int:
    """The limit in force of several (None or 0: no limit from that one); 0: none."""
    return min((r for r in rates if r), default=0)
