"""Sends the outbox to the hub until the hub has answered for every item.

Reports go in batches; each comes back applied, duplicate or refused, and
all three leave the outbox (refused means the lease was lost: resending
cannot help). A report this agent cannot read (a kind an older agent wrote,
which no hub takes any more) is dropped with an error in the log. Logs are
streamed one by one. While the hub is unreachable the sender waits with
backoff and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
import structlog

from agent.hubclient import HubClient, Retryable
from agent.outbox import Item, Outbox
from core.errors import ApiError
from protocol import Report, ReportRequest, TaskReport, routes

log = structlog.get_logger("agent.sender")

BATCH = 500
MAX_BYTES = 512 * 1024  # per request, well under the hub's default body limit of 1 MiB
GATHER = 0.1  # seconds a send waits for more items to join it, while tasks are running
_decoder = msgspec.json.Decoder(Report)


class OutboxSender:
    def __init__(self, hub: HubClient, outbox: Outbox, idle: asyncio.Event | None = None
                 ) -> None:
        self.hub = hub
        self.outbox = outbox
        self.sent = 0
        # set while no task runs: then nothing is about to join a send, so it goes at once
        self.idle = idle if idle is not None else asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set (what is left stays on disk for the next start)."""
        while not stop.is_set():
            try:
                sent = await self.send_once()
            except ApiError as exc:  # about the whole request, not an item: keep them all
                log.error("hub refused the reports; keeping them to send again in 5 s",
                          error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=5.0)
                continue
            if sent == 0:
                self.outbox.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outbox.changed.wait(), timeout=1.0)
            if 0 <= sent < BATCH and not self.idle.is_set():
                await self._gather(stop)

    async def _gather(self, stop: asyncio.Event) -> None:
        """Let what the running tasks report next join the same request: wait ``GATHER``,
        less if the agent stops or its last task ends meanwhile."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.idle.wait())]
        try:
            await asyncio.wait(waits, timeout=GATHER, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def drain(self, seconds: float) -> bool:
        """Send everything now, for at most ``seconds``; True when the outbox is empty."""
        try:
            async with asyncio.timeout(seconds):
                while await self.send_once():
                    pass
        except (TimeoutError, Retryable, ApiError) as exc:
            log.warning("outbox not emptied before stopping; it is sent at the next start",
                        error=str(exc) or "time is up")
        return await self.outbox.count() == 0

    async def send_once(self) -> int:
        """Send one batch; returns how many items it held (0: nothing to send)."""
        items = await self.outbox.take(BATCH)
        if not items:
            return 0
        reports = [i for i in items if i.kind == "report"]
        if reports:
            await self._send_reports(reports)
        for item in items:
            if item.kind == "log":
                await self._send_log(item)
        return len(items)

    async def _send_reports(self, items: list[Item]) -> None:
        decoded: list[tuple[Item, Report]] = []
        skip: list[int] = []
        for item in items:
            try:
                decoded.append((item, _decoder.decode(item.body)))
            except msgspec.DecodeError as exc:  # e.g. a kind of report no hub takes any more
                log.error("a report in the outbox is not one this agent sends; dropping it",
                          key=item.key, error=str(exc))
                skip.append(item.id)
        # a task that ended within this batch needs no separate "started"
        ended = {r.task_id for _, r in decoded if isinstance(r, TaskReport) and r.event != "started"}
        skip += [i.id for i, r in decoded
                 if isinstance(r, TaskReport) and r.event == "started" and r.task_id in ended]
        skipped = set(skip)
        send = [(i, r) for i, r in decoded if i.id not in skipped]
        await self.outbox.ack(skip)
        chunk: list[tuple[Item, Report]] = []
        size = 0
        for pair in send:
            if chunk and size + len(pair[0].body) > MAX_BYTES:
                await self._post(chunk)
                chunk, size = [], 0
            chunk.append(pair)
            size += len(pair[0].body)
        if chunk:
            await self._post(chunk)

    async def _post(self, chunk: list[tuple[Item, Report]]) -> None:
        """Send reports. A 413 or 422 (the body or an item is wrong) is narrowed down to
        the items that cause it, which are dropped with an error in the log, so that the
        rest goes on; any other 4xx is about the request as a whole and is raised, and
        the reports stay in the outbox."""
        try:
            answer = await self.hub.call(routes.REPORT,
                                         ReportRequest(items=[r for _, r in chunk]))
        except ApiError as exc:
            if exc.status not in (413, 422):
                raise
            if len(chunk) > 1:
                half = len(chunk) // 2
                await self._post(chunk[:half])
                await self._post(chunk[half:])
                return
            log.error("hub refused a report; dropping it", key=chunk[0][1].key,
                      error=str(exc))
            await self.outbox.ack([chunk[0][0].id])
            return
        by_key = {r.key: r for r in answer.results}
        for _, report in chunk:
            result = by_key.get(report.key)
            if result is not None and result.outcome == "refused":
                log.warning("hub refused a report", key=report.key, reason=result.reason)
        await self.outbox.ack([i.id for i, r in chunk if r.key in by_key])
        self.sent += len(chunk)

    async def _send_log(self, item: Item) -> None:
        info = msgspec.json.decode(item.body)
        path = Path(info["path"])
        if await asyncio.to_thread(path.exists):
            try:
                await self.hub.upload(routes.UPLOAD_LOG, path, {"bucket": info["bucket_id"]},
                                      task=info["task_id"])
            except ApiError as exc:  # lease lost or task gone: nobody wants this log
                log.warning("hub refused a log", task=info["task_id"], error=exc.message)
        await self.outbox.ack([item.id])
        await asyncio.to_thread(_remove, path)


def _remove(path: Path) -> None:
    """A sent log, and its job's folder once that is empty."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
