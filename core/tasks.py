"""One owner for background tasks: spawned by name, watched, closed within a deadline.

Every long-lived part (the agent, the hub's dispatcher and work channel, the transfer
endpoint, the outbox) keeps its background tasks in a :class:`Supervisor` instead of
loose ``create_task`` handles::

    tasks = Supervisor("agent", on_failure=lambda name, exc: stop.set())
    tasks.spawn(self._checkin_loop(), name="checkin")
    ...
    await tasks.close(deadline=10)   # cancel what is left, wait for it, log what would not stop

A task that ends with an exception is logged with its name and handed to the one failure
hook; a task that returns or is cancelled is simply forgotten. ``close`` is safe to call
twice and from several places at once; if the caller itself is cancelled while closing, the
children are still cancelled and the caller's cancellation goes on up (it is never swallowed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from core.errors import FerryError

log = structlog.get_logger("ferry.tasks")

T = TypeVar("T")

FailureHook = Callable[[str, BaseException], None]


class SupervisorClosed(FerryError):
    """A task was spawned on a supervisor that is closing or closed."""


class Supervisor:
    """The background tasks of one part of Ferry, owned in one place."""

    def __init__(self, owner: str, *, on_failure: FailureHook | None = None) -> None:
        self.owner = owner
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def names(self) -> list[str]:
        """Names of the tasks still running, sorted (for status pages and tests)."""
        return sorted(task.get_name() for task in self._tasks)

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``, owned by this supervisor until it ends."""
        if self._closing is not None:
            coro.close()  # never awaited: close it so Python does not warn
            raise SupervisorClosed(f"{self.owner} is shutting down; {name!r} was not started")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("background task failed", owner=self.owner, task=task.get_name(),
                  error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        if self._on_failure is not None:
            try:
                self._on_failure(task.get_name(), exc)
            except Exception:  # a broken hook must not hide the first failure
                log.exception("failure hook raised", owner=self.owner, task=task.get_name())

    async def close(self, deadline: float = 10.0) -> None:
        """Cancel every task, wait up to ``deadline`` seconds for them, log those still running.

        A second call (or a concurrent one) waits for the first to finish; neither raises for
        the children's errors, which the failure hook has already seen.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
            try:
                await self._cancel_all(deadline)
            finally:
                self._closing.set_result(None)
        else:
            await asyncio.shield(self._closing)

    async def _cancel_all(self, deadline: float) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        try:
            _, pending = await asyncio.wait(tasks, timeout=deadline)
        except asyncio.CancelledError:
            # cancelled while waiting: the children have been told; our caller's
            # cancellation goes on up
            raise
        for task in pending:
            log.warning("background task did not stop in time", owner=self.owner,
                        task=task.get_name(), deadline=deadline)
