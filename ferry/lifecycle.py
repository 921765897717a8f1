"""The shape of every long-running Ferry process: startup, main loop, shutdown.

Signal handlers only set flags: the first SIGINT/SIGTERM asks for a graceful
stop (drain), the second forces it. ``handle_signals=False`` lets a test or
the demo embed a service in its own event loop and stop it with
``request_stop()``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

log = structlog.get_logger("ferry.lifecycle")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Service:
    """Base class: subclasses fill in ``startup``, ``main_loop`` and ``shutdown``."""

    def __init__(self, *, handle_signals: bool = True) -> None:
        self.handle_signals = handle_signals
        self._should_exit: asyncio.Event | None = None
        self.force_exit = False
        self.started = False

    @property
    def should_exit(self) -> asyncio.Event:
        if self._should_exit is None:
            self._should_exit = asyncio.Event()
        return self._should_exit

    def request_stop(self, force: bool = False) -> None:
        if self.should_exit.is_set() or force:
            self.force_exit = True
        self.should_exit.set()

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
