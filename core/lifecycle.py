"""The shape of every long-running Ferry process: startup, main loop, shutdown.

Signal handlers only set flags: the first SIGINT/SIGTERM asks for a graceful
stop (drain), the second forces it. ``handle_signals=False`` lets a test or
the demo embed a service in its own event loop and stop it with
``request_stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

T = TypeVar("T")

log = structlog.get_logger("ferry.lifecycle")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Service:
    """Base class: subclasses fill in ``startup``, ``main_loop`` and ``shutdown``."""

    def __init__(self, *, handle_signals: bool = True) -> None:
        self.handle_signals = handle_signals
        self._should_exit: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
        self.started = False

    @property
    def should_exit(self) -> asyncio.Event:
        if self._should_exit is None:
            self._should_exit = asyncio.Event()
        return self._should_exit

    @property
    def forced(self) -> asyncio.Event:
        if self._forced is None:
            self._forced = asyncio.Event()
        return self._forced

    @property
    def force_exit(self) -> bool:
        return self.forced.is_set()

    def request_stop(self, force: bool = False) -> None:
        """First call: drain. A second call (or ``force``): stop waiting for the drain."""
        if self.should_exit.is_set() or force:
            self.forced.set()
        self.should_exit.set()

    async def drain(self, tasks: list[asyncio.Task[None]], deadline_s: float, reason: str) -> None:
        """Let ``tasks`` finish within ``deadline_s``; cancel what is left then, or when forced."""
        pending: set[asyncio.Future[Any]] = {t for t in tasks if not t.done()}
        forced = asyncio.ensure_future(self.forced.wait())
        deadline = asyncio.get_running_loop().time() + deadline_s
        try:
            while pending and not self.forced.is_set():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                _, pending = await asyncio.wait(pending | {forced}, timeout=left,
                                                return_when=asyncio.FIRST_COMPLETED)
                pending.discard(forced)
        finally:
            forced.cancel()
        for task in pending:
            task.cancel(msg="forced stop" if self.forced.is_set() else reason)
        if pending:
            await asyncio.wait(pending, timeout=5)

    def _on_signal(self, signum: int) -> None:
        first = not self.should_exit.is_set()
        log.warning("stop requested" if first else "forced stop requested",
                    signal=signal.Signals(signum).name)
        self.request_stop()

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            if sys.platform == "win32":
                signal.signal(sig, lambda s, _f: loop.call_soon_threadsafe(self._on_signal, s))
            else:
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        if not self.handle_signals or sys.platform == "win32":
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    async def startup(self) -> None:
        raise NotImplementedError

    async def main_loop(self) -> None:
        await self.should_exit.wait()

    async def shutdown(self) -> None:
        raise NotImplementedError

    async def serve(self) -> None:
        """Run until stopped; shutdown runs even when startup failed half-way."""
        self._install_signal_handlers()
        try:
            try:
                await self.startup()
                self.started = True
                await self.main_loop()
            finally:
                await self.shutdown()
        finally:
            self._remove_signal_handlers()


async def until_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """Await ``awaitable`` unless ``stop`` comes first (then None)."""
    step: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({step, stopping},  # type: ignore[type-var]
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if step in done:
        return step.result()
    step.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await step
    return None
