"""The agent's ``/metrics`` page: one ``Reading`` (agent/readings.py) as Prometheus
families (docs/METRICS.md lists them).

Loaded by the status server on the first scrape: prometheus_client stays out of an agent
that nobody scrapes. Every family is built afresh from the reading, in a collector of the
page's own: nothing goes to prometheus_client's global registry, and several agents in
one test process never share a series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from agent.readings import Reading
from core.exposition import render
from core.version import VERSION
from protocol import BucketKind

_process = ProcessCollector(registry=CollectorRegistry())  # this process's memory and CPU


def _gauge(name: str, what: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, what, value=value)


def _counter(name: str, what: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, what, value=value)


def families(r: Reading) -> Iterator[Metric]:
    info = GaugeMetricFamily("ferry_agent_info", "This agent's version", labels=["version"])
    info.add_metric([VERSION], 1)
    yield info
    yield _gauge("ferry_agent_lanes", "Compute lanes (buckets of compute tasks at once)", r.lanes)
    yield _gauge("ferry_agent_lanes_busy", "Compute lanes holding a bucket", r.lanes_busy)
    held = GaugeMetricFamily("ferry_agent_buckets_held", "Buckets held, by kind (compute in "
                             "lanes; transfer and docker in slots beside them)",
                             labels=["kind"])
    for kind in BucketKind:
        held.add_metric([str(kind)], r.held.get(str(kind), 0))
    yield held
    yield _counter("ferry_agent_tasks_run", "Task runs that ended (done, failed or aborted)",
                   sum(r.runs.values()))
    yield _counter("ferry_agent_tasks_failed", "Task runs that failed", r.runs.get("failed", 0))
    if r.received_bytes is not None and r.sent_bytes is not None:
        yield _counter("ferry_agent_transfer_received_bytes", "Bytes this agent's transfers "
                       "took in: pulled by it, or pushed to its endpoint", r.received_bytes)
        yield _counter("ferry_agent_transfer_sent_bytes", "Bytes this agent's transfers sent: "
                       "served by its endpoint, or pushed by it", r.sent_bytes)
        speed = GaugeMetricFamily("ferry_agent_transfer_speed_bytes_per_second", "Transfer "
                                  "bytes per second since the previous scrape",
                                  labels=["direction"])
        speed.add_metric(["receive"], r.receive_speed)
        speed.add_metric(["send"], r.send_speed)
        yield speed
    yield _gauge("ferry_agent_outbox_items", "Reports and logs the hub has not acknowledged",
                 r.outbox_items)
    yield _gauge("ferry_agent_outbox_oldest_age_seconds", "Age of the oldest of them (0 when "
                 "the outbox is empty)", r.outbox_oldest_age or 0.0)
    yield _gauge("ferry_agent_last_checkin_age_seconds", "Seconds since the last check-in the "
                 "hub answered (since the start, before the first)",
                 r.last_checkin_age if r.last_checkin_age is not None else r.uptime)
    yield _counter("ferry_agent_checkins", "Check-ins the hub answered", r.checkins)
    yield _counter("ferry_agent_hub_failovers", "Times another hub took over: a failover to "
                   "the next hub, or the return to the first", r.hub_switches)


class _Page:
    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Metric]:
        yield from families(self.reading)
        yield from _process.collect()


def page(reading: Reading, accept: str) -> tuple[bytes, str]:
    """The page and its content type; ``core.exposition.NotAcceptable`` for an ``Accept``
    of no format served."""
    return render(_Page(reading), accept)
