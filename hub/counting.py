"""What one hub process counts for ``/metrics`` (hub/metrics.py): its counters and
histograms, in a registry of its own, and the tally of what one request did to tasks.

Counters count events this process saw since it started (Prometheus sums them over the
hub processes of one database, and turns them into rates). Figures of the whole database
(clients, jobs and tasks by status) are not counted here: they are read at scrape time.

Task ends are decided inside transaction functions (``hub/jobs/reports.py``,
``hub/jobs/leases.py``) that run on a connection alone, called from API handlers that
neither know nor pass a counter. So they note them in the ``Tally`` of the work that is
running (``noted()``): a request's, opened by the metrics middleware (``hub/app.py``), or
a lease sweep's, opened by the dispatcher; its owner adds it to the counters once that
work has returned, so a request that failed counts nothing. ``Database.run`` carries the
tally into the thread a SQLite transaction runs on.

Label values are bounded names (a status, an outcome), never an organization's, a job's,
a user's or a client's: the figures are the hub's, aggregated over every organization.
"""

from __future__ import annotations

import contextvars
from collections import Counter as Tallies
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# seconds: a check-in is a write queued for the next group commit; a claim's transaction
# reads the queue and leases (its long-poll wait is not in it)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# what happened to a task in a report or at the end of a lease
TASK_ENDS = ("finished", "failed", "requeued")
REPORT_OUTCOMES = ("applied", "duplicate", "refused")


@dataclass
class Tally:
    """What one request (or one sweep) did to tasks, noted inside its transactions."""

    ends: Tallies[str] = field(default_factory=Tallies)  # TASK_ENDS
    report_items: Tallies[str] = field(default_factory=Tallies)  # REPORT_OUTCOMES
    leases_expired: int = 0


_current: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("ferry_tally",
                                                                        default=None)


def noted() -> Tally:
    """The tally of the work running now; a throwaway one when nobody counts it (a test
    that calls job logic directly)."""
    return _current.get() or Tally()


class HubCounters:
    """The counters and histograms of one hub process, in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # no `_created` series beside each counter: Prometheus does not need them, and
        # they would double the page (the setting is the library's, for the process)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks_leased = Counter("ferry_hub_tasks_leased", "Tasks leased to agents in "
                                    "buckets", registry=r)
        self.tasks_finished = Counter("ferry_hub_tasks_finished", "Tasks an agent reported "
                                      "done", registry=r)
        self.tasks_failed = Counter("ferry_hub_tasks_failed", "Tasks that failed for good "
                                    "(their retries used up), by the run's report or a "
                                    "lost lease", registry=r)
        self.tasks_requeued = Counter("ferry_hub_tasks_requeued", "Tasks put back in the "
                                      "queue: a failed run with retries left, a lost lease, "
                                      "work handed back", registry=r)
        self.leases_expired = Counter("ferry_hub_leases_expired", "Buckets whose lease ran "
                                      "out without a heartbeat (their tasks queued again "
                                      "or failed)", registry=r)
        self.report_batches = Counter("ferry_hub_report_batches", "Report requests (batches "
                                      "of an agent's outbox) answered", registry=r)
        self.report_items = Counter("ferry_hub_report_items", "Report items, by what the hub "
                                    "did with them", ["outcome"], registry=r)
        self.checkin_seconds = Histogram("ferry_hub_checkin_seconds", "Time to answer a "
                                         "check-in (written by group commit)",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.claim_seconds = Histogram("ferry_hub_claim_seconds", "Time of one claim's "
                                       "transaction: picking jobs and leasing (the long-poll "
                                       "wait excluded)", buckets=LATENCY_BUCKETS, registry=r)
        for outcome in REPORT_OUTCOMES:  # present at 0 from the start: rates need a base
            self.report_items.labels(outcome)

    @contextmanager
    def counting(self) -> Iterator[Tally]:
        """Open a tally for the work inside; add it to the counters if that work returns
        (an exception, and what it did was rolled back or never answered, counts nothing)."""
        tally = Tally()
        token = _current.set(tally)
        try:
            yield tally
        finally:
            _current.reset(token)
        self.add(tally)

    def add(self, tally: Tally) -> None:
        self.tasks_finished.inc(tally.ends["finished"])
        self.tasks_failed.inc(tally.ends["failed"])
        self.tasks_requeued.inc(tally.ends["requeued"])
        self.leases_expired.inc(tally.leases_expired)
        for outcome, n in tally.report_items.items():
            self.report_items.labels(outcome).inc(n)
