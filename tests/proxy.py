"""A TCP relay for tests that damages or cuts a stream in flight, in the test's event loop
(``Proxy``) or in a thread of its own, for agents in other processes (``ThreadedProxy``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Proxy:
    """A TCP relay that can damage or cut the first server->client stream once."""

    def __init__(self, target_port: int, *, flip_at: int | None = None,
                 cut_at: int | None = None) -> None:
        self.target_port = target_port
        self.flip_at, self.cut_at = flip_at, cut_at
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            sent = 0
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if down and self.flip_at is not None and sent <= self.flip_at < sent + len(data):
                        damaged = bytearray(data)
                        damaged[self.flip_at - sent] ^= 0xFF
                        data, self.flip_at = bytes(damaged), None
                    if down and self.cut_at is not None and sent + len(data) > self.cut_at:
                        self.cut_at = None
                        dst.write(data[: max(0, self.cut_at or 0)])
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
                    sent += len(data)
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


class ThreadedProxy:
    """``Proxy`` on an event loop of its own thread: ``start()`` returns its port."""

    def __init__(self, target_port: int, **faults: int | None) -> None:
        self.proxy = Proxy(target_port, **faults)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    @property
    def pending_faults(self) -> list[str]:
        """The faults that have not happened yet."""
        return [name for name in ("flip_at", "cut_at") if getattr(self.proxy, name) is not None]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
