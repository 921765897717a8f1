"""The last hour of each agent's metrics, in memory, fed by its check-ins.

The database keeps only an agent's newest metrics; the dashboard's sparklines want the
hour before. Each agent gets a fixed ring of ``SLOTS`` samples (one per ``STEP`` seconds
at most: check-ins closer together overwrite the newest sample), so the whole history
costs about 3 KiB an agent, 3 MiB for 1,000, whatever the check-in interval.

It is lost when the hub process restarts, and each hub process of a scale-out keeps the
check-ins it answered (an agent checks in with either): a sparkline is a glance, not a
record. Agents deleted at the hub drop out once they are older than the hour.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

WINDOW = 3600.0  # seconds of history kept
STEP = 15.0  # seconds between samples at most one apart
SLOTS = int(WINDOW // STEP)
FIELDS = ("cpu", "mem", "load", "net_in", "net_out")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else float("nan")


def sample_of(metrics: Mapping[str, Any]) -> tuple[float, ...]:
    """CPU %, memory %, the 1-minute load average and network in/out (MB/s) of a metrics
    record (clients.rst); NaN where the record has none."""
    la = metrics.get("la")
    load = _number(la[0]) if isinstance(la, list) and la else float("nan")

    def rate(key: str) -> float:
        value = metrics.get(key)
        rate = _number(value.get("s")) if isinstance(value, dict) else float("nan")
        return rate if rate >= 0 else float("nan")  # -1.0: not measured yet

    return (_number(metrics.get("l")), _number(metrics.get("m")), load, rate("in"),
            rate("out"))


class _Ring:
    __slots__ = ("at", "next", "values")

    def __init__(self) -> None:
        self.at = array("d", [0.0] * SLOTS)
        self.values = [array("f", [0.0] * SLOTS) for _ in FIELDS]
        self.next = 0  # the slot the next sample takes

    def add(self, at: float, sample: tuple[float, ...]) -> None:
        newest = (self.next - 1) % SLOTS
        slot = newest if self.at[newest] and at - self.at[newest] < STEP else self.next
        if slot == self.next:
            self.next = (self.next + 1) % SLOTS
        else:  # keep the sample's slot time: one sample a STEP at most
            at = self.at[slot]
        self.at[slot] = at
        for column, value in zip(self.values, sample, strict=True):
            column[slot] = value

    def since(self, cutoff: float) -> dict[str, list[float | None]]:
        order = [(self.next + n) % SLOTS for n in range(SLOTS)]
        kept = [s for s in order if self.at[s] and self.at[s] >= cutoff]
        out: dict[str, list[float | None]] = {"t": [round(self.at[s], 1) for s in kept]}
        for name, column in zip(FIELDS, self.values, strict=True):
            out[name] = [None if math.isnan(column[s]) else round(column[s], 2) for s in kept]
        return out


class MetricsHistory:
    """Per agent, the samples of the last ``WINDOW`` seconds."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._rings: dict[str, _Ring] = {}
        self._last_sweep = 0.0

    def add(self, client_id: str, metrics: Mapping[str, Any]) -> None:
        now = self._clock()
        ring = self._rings.get(client_id)
        if ring is None:
            ring = self._rings[client_id] = _Ring()
        ring.add(now, sample_of(metrics))
        if now - self._last_sweep > WINDOW:
            self._sweep(now)

    def of(self, client_ids: Iterable[str]) -> dict[str, dict[str, list[float | None]]]:
        """The samples of each of ``client_ids`` that has any, oldest first, as columns:
        ``t`` (Unix seconds) and one per field of ``FIELDS`` (None where not measured)."""
        cutoff = self._clock() - WINDOW
        out = {}
        for client_id in client_ids:
            ring = self._rings.get(client_id)
            if ring is not None:
                samples = ring.since(cutoff)
                if samples["t"]:
                    out[client_id] = samples
        return out

    def __len__(self) -> int:
        return len(self._rings)

    def _sweep(self, now: float) -> None:
        """Forget agents that have not checked in for the whole window."""
        self._last_sweep = now
        for client_id in [c for c, r in self._rings.items()
                          if r.at[(r.next - 1) % SLOTS] < now - WINDOW]:
            del self._rings[client_id]


HISTORY: web.AppKey[MetricsHistory] = web.AppKey("metrics_history", MetricsHistory)
