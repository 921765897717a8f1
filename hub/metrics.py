"""``GET /metrics``: the hub's figures in the Prometheus text format (docs/METRICS.md).

Two kinds of figure. What this process saw happen (tasks leased and ended, expired
leases, report batches, check-in and claim times) is counted as it happens
(``hub/counting.py``). What the database holds (clients by type and status, jobs and
tasks by status) is read when a scraper asks, with one ``GROUP BY`` each, and kept for
``CACHE_SECONDS``: scrapes from several Prometheus servers, or a dashboard refreshing
often, cost a hub of 100,000 tasks three indexed counts every few seconds at most.

Who may read it: with ``metrics_token`` in the hub's config, a caller that sends it as
``Authorization: Bearer <token>`` (compared in constant time; a user's or agent's API
token is not it, nor is a token in the query string). Without one, callers on this
machine only, the way the agent's status page is served: a request from elsewhere, or
relayed by a proxy (it carries ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``), is
refused with the key to set. The figures are the hub's, aggregated over every
organization; no label value names an organization, job, path, user or client.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import and_, case, func, not_, select

from core import refusals
from core.exposition import NotAcceptable, acceptable, render
from core.version import VERSION
from hub.api.common import RUNTIME, Handler, error_response
from hub.jobs.status import JobStatus, TaskStatus
from hub.runtime import Runtime
from hub.storage.models import Client, Job, Task, utcnow
from protocol import ClientStatus, ClientType, routes

PATH = "/metrics"  # at the root, where Prometheus looks; not under the API prefix
CACHE_SECONDS = 5.0
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def type_label(value: int) -> str:
    """A client type as a label value: the reference's name, ``compute_lane`` for 5."""
    try:
        return ClientType(value).hr.replace(" ", "_")
    except ValueError:
        return "other"


def _status(disabled: bool, fresh: bool) -> ClientStatus:
    if disabled:
        return ClientStatus.DISABLED if fresh else ClientStatus.DISABLED_OFFLINE
    return ClientStatus.ONLINE if fresh else ClientStatus.OFFLINE


@dataclass
class Figures:
    """What the database holds, as counted at ``read_at`` (monotonic)."""

    clients: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, status)
    jobs: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    read_at: float = float("-inf")


class DatabaseFigures:
    """Clients, jobs and tasks by status, read at scrape time (cached), and the use of the
    database's connection pool; a prometheus_client collector."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.figures = Figures()
        self._lock = asyncio.Lock()  # scrapes at once share one read

    async def refresh(self) -> None:
        """Read the figures again, unless the ones held are fresh enough."""
        async with self._lock:
            if time.monotonic() - self.figures.read_at < CACHE_SECONDS:
                return
            self.figures = await self._read()

    async def _read(self) -> Figures:
        cutoff = utcnow() - self.rt.offline_grace
        fresh = case((and_(not_(Client.gone), Client.last_checkin >= cutoff), True),
                     else_=False)
        figures = Figures(read_at=time.monotonic())
        async with self.rt.db.read() as conn:
            rows = await conn.execute(select(Client.type, Client.disabled, fresh, func.count())
                                      .group_by(Client.type, Client.disabled, fresh))
            for kind, disabled, is_fresh, n in rows:
                key = (type_label(kind), str(_status(bool(disabled), bool(is_fresh))))
                figures.clients[key] = figures.clients.get(key, 0) + n
            # deleted jobs (inactive, kept for audit) and their tasks are no work
            figures.jobs = {str(s): n for s, n in await conn.execute(
                select(Job.status, func.count()).where(Job.deleted.is_(None))
                .group_by(Job.status))}
            figures.tasks = {str(s): n for s, n in await conn.execute(
                select(Task.status, func.count()).join(Job, Job.id == Task.job_id)
                .where(Job.deleted.is_(None)).group_by(Task.status))}
        return figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        clients = GaugeMetricFamily("ferry_hub_clients", "Clients by type and status "
                                    "(clients.rst)", labels=["type", "status"])
        types = [type_label(t) for t in ClientType]
        for kind in types + sorted({k for k, _ in f.clients} - set(types)):
            for status in ClientStatus:
                clients.add_metric([kind, str(status)], f.clients.get((kind, str(status)), 0))
        yield clients
        yield _by_status("ferry_hub_jobs", "Jobs by status (jobs.rst)", JobStatus, f.jobs)
        yield _by_status("ferry_hub_tasks", "Tasks by status (jobs.rst)", TaskStatus, f.tasks)
        age = GaugeMetricFamily("ferry_hub_figures_age_seconds", "How old the figures of "
                                "clients, jobs and tasks are (they are read at most every "
                                f"{CACHE_SECONDS:g} s)")
        age.add_metric([], max(0.0, time.monotonic() - f.read_at))
        yield age
        yield from self._pool()

    def _pool(self) -> Iterator[Metric]:
        """The async engine's pool (the one every read and PostgreSQL write uses)."""
        pool = self.rt.db.engine.pool
        for name, what, method in (
                ("ferry_hub_db_pool_size", "Connections the database pool keeps", "size"),
                ("ferry_hub_db_pool_checked_out", "Pool connections in use now", "checkedout")):
            read = getattr(pool, method, None)
            if callable(read):  # SQLite in memory has a static pool: no size
                family = GaugeMetricFamily(name, what)
                family.add_metric([], float(read()))
                yield family


def _by_status(name: str, what: str, statuses: type[JobStatus] | type[TaskStatus],
               counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, what, labels=["status"])
    for status in statuses:
        family.add_metric([str(status)], counts.get(str(status), 0))
    return family


class Info:
    """``ferry_hub_info``: the version, as a label of a gauge that is always 1."""

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("ferry_hub_info", "This hub process's version",
                                 labels=["version"])
        info.add_metric([VERSION], 1)
        yield info


class Page:
    """Everything ``/metrics`` shows: the counters, the database's figures, the process."""

    def __init__(self, rt: Runtime) -> None:
        self.figures = DatabaseFigures(rt)
        # a registry of its own: several hubs in one test process never share a series
        self.process = ProcessCollector(registry=CollectorRegistry())
        self.parts: list[Collector] = [Info(), rt.counters.registry, self.figures, self.process]

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


PAGE: web.AppKey[Page] = web.AppKey("metrics_page", Page)


def local_caller(request: web.Request) -> bool:
    """A caller on this machine, asking directly (not through a proxy)."""
    if any(h in request.headers for h in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _refused(request: web.Request, status: int, code: str, message: str) -> web.Response:
    refusals.refused(code, f"anonymous at {request.remote}", message, path=request.path)
    response = error_response(status, code, message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ferry metrics"'
    return response


def refusal(request: web.Request, token: str | None) -> web.Response | None:
    """The answer to a caller that may not read the metrics; None for one that may."""
    if token is None:
        if local_caller(request):
            return None
        return _refused(request, 403, "metrics_local_only", "this hub serves /metrics to "
                        "callers on its own machine only; set metrics_token in its config "
                        "to serve it to a scraper elsewhere (docs/METRICS.md)")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header:
        return _refused(request, 401, "no_credentials", "missing credentials: send "
                        "'Authorization: Bearer <metrics_token>' (the hub's metrics_token)")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        return _refused(request, 401, "bad_metrics_token", "the bearer token is not this "
                        "hub's metrics_token")
    return None


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    refused = refusal(request, rt.config.metrics_token)
    if refused is not None:
        return refused
    page = request.app[PAGE]
    accept = request.headers.get("Accept", "")
    if not acceptable(accept):  # before the database is asked anything
        return error_response(406, "not_acceptable", str(NotAcceptable(accept)))
    await page.figures.refresh()
    body, content_type = render(page, accept)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_routes(app: web.Application, rt: Runtime) -> None:
    """``GET /metrics`` and the middleware that counts what requests do."""
    app[PAGE] = Page(rt)
    app.router.add_get(PATH, metrics, allow_head=False)


def counting_middleware(rt: Runtime) -> Middleware:
    """A middleware: each request's tally (``hub/counting.py``) goes to the counters once
    it is answered; check-ins are timed and report batches counted."""
    prefix = rt.config.api_prefix
    checkin, report = prefix + routes.CHECKIN.path, prefix + routes.REPORT.path
    counters = rt.counters

    @web.middleware
    async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        with counters.counting():
            response = await handler(request)
        if response.status < 400:
            if request.path == checkin:
                counters.checkin_seconds.observe(time.perf_counter() - began)
            elif request.path == report:
                counters.report_batches.inc()
        return response

    return counted
