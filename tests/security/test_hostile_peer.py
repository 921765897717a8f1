"""A hostile transfer peer (issue 14, finding 4): a real hub, a real pulling agent, and a
scripted transfer endpoint enrolled at the hub as an agent of its own, whose every file
is a different lie: chunk bodies larger than asked, or endless, or dripped; a stat that
claims a huge file, or never ends; wrong hashes, short chunks; a folder over the quota; a
batch of small files with a file nobody asked for; and, pushed to, an answer that never
ends.

For each, the job fails with a reason that names what the peer did, the pulling agent's
memory stays under ``MEMORY_BOUND`` throughout (its RSS, sampled while the job runs),
nothing of the file is left in the destination share, and the agent goes on checking in
and moving files. The agent's quotas and pace are small here (``LIMITS``) so that each
lie is caught at once. The serving side is tested too, in process: a hostile puller or
pusher gets refusals and no unbounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from hub import Session
from protocol import tickets
from protocol.tickets import TicketScope
from protocol.transfer import PREFIX, Share
from tests.conftest import HUB_DEFAULTS, ON_POSTGRES, postgres_database
from tests.helpers import (
    ROOT_PASSWORD,
    Agent,
    Hub,
    PeakMemory,
    ended,
    http,
    isolated_env,
    wait_for,
)
from transports import tls
from transports.chunks import chunk_hash
from transports.endpoint import TransferEndpoint
from transports.limits import Budget, Limits

pytestmark = pytest.mark.one_round("a lying peer is the agent's to withstand")

MiB = 1 << 20
MEMORY_BOUND = 300 * MiB  # the pulling agent's RSS, whatever the peer sends
CHUNK = MiB  # the chunks the hostile peer claims for its files of SIZE bytes
SIZE = 3 * CHUNK
MAX_FILES = 1000
LIMITS = {"transfer_max_file_size": "64m", "transfer_max_files": MAX_FILES,
          "transfer_min_rate": "1m", "transfer_grace": 3.0}
LISTING = Limits(max_files=MAX_FILES).listing_bytes


class HostilePeer:
    """A transfer endpoint that lies, on a free loopback port with a certificate of its
    own, in a thread of its own: what it answers depends on the path asked for."""

    def __init__(self, folder: Path) -> None:
        key, cert = tls.ensure_identity(folder, "hostile")
        self.context = tls.server_context(key, cert)
        self.fingerprint = tls.fingerprint(cert)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.discarded: list[str] = []
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.url = f"https://127.0.0.1:{port}"
        return self.url

    async def _start(self) -> int:
        app = web.Application()
        app.add_routes([web.get(f"{PREFIX}/stat", self.stat), web.get(f"{PREFIX}/chunk", self.chunk),
                        web.post(f"{PREFIX}/files", self.files),
                        web.post(f"{PREFIX}/receive/open", self.receive_open),
                        web.post(f"{PREFIX}/receive/discard", self.receive_discard)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @staticmethod
    async def stream(request: web.Request, first: bytes, length: int | None = None,
                     pause: float = 0.0, block: int = 64 << 10) -> web.StreamResponse:
        """An answer that goes on (up to 8 GiB) until the puller hangs up: with a
        Content-Length of ``length``, or chunked (endless) without one."""
        response = web.StreamResponse(headers={"X-Ferry-Hash": "00" * 32})
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(first)
            for _ in range((8 << 30) // block):
                await response.write(b"x" * block)
                await asyncio.sleep(pause)
        return response

    async def stat(self, request: web.Request) -> web.StreamResponse:
        path = request.query["path"]
        if path == "endless-stat.mov":
            return await self.stream(request, b'{"type": "file", "identity": "')
        if path in ("crowded", "plates"):
            count = MAX_FILES + 1 if path == "crowded" else 2
            return web.json_response({"type": "dir", "files": [
                {"path": f"{path}/f{n:04}.dpx", "size": 100, "mtime_ns": 1, "mode": 0o644}
                for n in range(count)]})
        size = 2 << 30 if path == "huge.mov" else SIZE
        return web.json_response({"type": "file", "size": size, "mtime_ns": 1, "mode": 0o644,
                                  "chunk": CHUNK if size == SIZE else 8 * MiB,
                                  "identity": "lie"})

    async def chunk(self, request: web.Request) -> web.StreamResponse:
        path = request.query["path"]
        if path == "oversized.mov":  # announced, and sent
            return await self.stream(request, b"", length=64 * MiB)
        if path == "endless.mov":
            return await self.stream(request, b"")
        if path == "drip.mov":
            return await self.stream(request, b"", length=CHUNK, pause=0.2, block=1024)
        data = random.randbytes(1000 if path == "short.mov" else CHUNK)
        digest = os.urandom(32) if path == "badhash.mov" else chunk_hash(data)
        return web.Response(body=data, headers={"X-Ferry-Hash": digest.hex()})

    async def files(self, request: web.Request) -> web.Response:
        header = {"path": "etc/passwd", "size": 5, "mtime_ns": 1, "mode": 0o644,
                  "hash": chunk_hash(b"root\n").hex()}
        return web.Response(body=msgspec.json.encode(header) + b"\nroot\n")

    async def receive_open(self, request: web.Request) -> web.StreamResponse:
        return await self.stream(request, b'{"missing": [')

    async def receive_discard(self, request: web.Request) -> web.Response:
        self.discarded.append(request.query["path"])
        return web.json_response({"discarded": True})


@dataclass
class World:
    hub: Hub
    session: Session
    agent: Agent  # the real pulling agent, serving share "backup"
    backup: Path
    peer: HostilePeer  # serving "evil" (it is pulled from) and "evil_in" (pushed to)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    env = isolated_env(tmp / "env")
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HOME",
                    "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
            patch.setenv(key, env[key])
        section: dict[str, Any] = {**HUB_DEFAULTS, "heartbeat_interval": 0.5}
        if ON_POSTGRES:
            section["uri"] = stack.enter_context(postgres_database())
        hub = Hub("hub", "hostile", tmp, section, env)
        stack.callback(hub.kill)
        hub.start()
        session = Session(hub.url, username="root", password=ROOT_PASSWORD)
        agent = Agent("agent", "puller", tmp, {
            "hub": hub.url, "api_key": session.create("Node", {"name": "puller"})["api_key"],
            "retry_max_delay": 0.5, "transfer_ip": "127.0.0.1", "lanes": 1,
            "logging": {"level": "DEBUG"}, **LIMITS}, env)
        stack.callback(agent.kill)
        agent.start()
        peer = HostilePeer(tmp / "peer")
        stack.callback(peer.stop)
        url = peer.start()
        status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
            "api_key": session.create("Node", {"name": "hostile"})["api_key"],
            "machine_id": uuid.uuid4().hex, "code": "hostile", "type": 1,
            "transfer": {"url": url, "fingerprint": peer.fingerprint}})
        assert status == 200, enrolled
        client = wait_for(lambda: agent.status()["client_id"], what="the puller enrolled")
        backup = tmp / "backup"
        (backup / "out").mkdir(parents=True)
        session.create("Share", {"name": "backup", "client": client, "path": str(backup)})
        for name in ("evil", "evil_in"):
            session.create("Share", {"name": name, "client": enrolled["client_id"],
                                     "path": f"/srv/{name}"})
        wait_for(lambda: agent.status()["transfer"]["shares"] == ["backup"], what="served")
        yield World(hub, session, agent, backup, peer)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".ferry-part", ".ferry-state"))]


LIES = [
    pytest.param("oversized.mov", "sent more than 1048576 bytes for chunk",
                 id="oversized-chunk"),
    pytest.param("endless.mov", "sent more than 1048576 bytes for chunk", id="endless-chunk"),
    pytest.param("drip.mov", "slower than 1048576 bytes/s (transfer_min_rate)",
                 id="slow-drip"),
    pytest.param("badhash.mov", "times with bytes that do not match the hash it gave",
                 id="wrong-hashes"),
    pytest.param("short.mov", "sent 1000 bytes for chunk", id="short-chunk"),
    pytest.param("huge.mov", "claims 'huge.mov' has 2147483648 bytes: this agent takes files "
                 "of 0 to 67108864 bytes (transfer_max_file_size)", id="huge-stat-size"),
    pytest.param("endless-stat.mov", f"sent more than {LISTING} bytes for the stat",
                 id="endless-stat"),
    pytest.param("crowded", f"lists {MAX_FILES + 1} files in 'crowded': this agent takes "
                 f"folders of at most {MAX_FILES} files", id="huge-listing"),
    pytest.param("plates", "sent 'etc/passwd' in a batch, which asked for it not at all",
                 id="small-files-batch"),
]


@pytest.mark.parametrize(("path", "reason"), LIES)
def test_a_lying_peer_fails_the_pull_clearly_and_costs_nothing(world: World, path: str,
                                                              reason: str) -> None:
    checkins = world.agent.status()["checkins"]
    assert world.agent.proc is not None
    with PeakMemory(world.agent.proc.pid, children=True) as memory:
        job = world.session.create("Job", {"source": f"share=evil/{path}",
                                           "destination": "share=backup/in/", "retries": 0})
        done = wait_for(lambda: ended(world.session, job["id"]), timeout=60, what=path)
    tasks = world.session.find(f"task WHERE job.id={job['id']}")
    failed = [t for t in tasks if t["status"] == "failed"]
    assert done["status"] == "failed" and failed, tasks
    for task in failed:
        assert reason in task["message"] and world.peer.url in task["message"], task
    assert memory.peak < MEMORY_BOUND, f"the puller grew to {memory.peak >> 20} MiB"
    assert leftovers(world.backup) == []
    assert "what=transfer_peer" in world.agent.log()
    wait_for(lambda: world.agent.status()["checkins"] > checkins + 1, what="check-ins go on")


def test_a_push_to_a_peer_whose_answer_never_ends(world: World) -> None:
    (world.backup / "out" / "push.bin").write_bytes(random.randbytes(SIZE))
    assert world.agent.proc is not None
    with PeakMemory(world.agent.proc.pid, children=True) as memory:
        job = world.session.create("Job", {"source": "share=backup/out/push.bin",
                                           "destination": "share=evil_in/", "retries": 0,
                                           "direction": "push"})
        done = wait_for(lambda: ended(world.session, job["id"]), timeout=60, what="push")
    task = world.session.find_one(f"task WHERE job.id={job['id']}")
    assert done["status"] == "failed", task
    assert "sent more than 65536 bytes for the open of 'push.bin'" in task["message"], task
    assert memory.peak < MEMORY_BOUND
    assert world.peer.discarded == ["push.bin"], "its last attempt: the peer drops its part"


def test_the_agent_still_moves_files_after_the_lies(world: World) -> None:
    data = random.randbytes(SIZE + 5)
    (world.backup / "out" / "honest.bin").write_bytes(data)
    job = world.session.create("Job", {"source": "share=backup/out/honest.bin",
                                       "destination": "share=backup/copy/"})
    done = wait_for(lambda: ended(world.session, job["id"]), timeout=60, what="honest job")
    assert done["status"] == "done", world.session.find(f"task WHERE job.id={job['id']}")
    assert (world.backup / "copy" / "honest.bin").read_bytes() == data


# -- the serving side, in process: a hostile puller or pusher against a real endpoint

KEY = tickets.private_key(os.urandom(32))


@contextlib.asynccontextmanager
async def endpoint(tmp_path: Path, limits: Limits, budget: Budget
                   ) -> AsyncIterator[tuple[TransferEndpoint, str, Path]]:
    root = tmp_path / "share"
    root.mkdir()
    served = TransferEndpoint("srv", tickets.public_key(tickets.public_key_text(KEY)),
                              {"sh": Share("sh", "projects", root)}, limits=limits,
                              budget=budget)
    port = await served.start("127.0.0.1", 0, None)
    try:
        yield served, f"http://127.0.0.1:{port}{PREFIX}", root
    finally:
        await served.stop()


def ticket(path: str, op: tickets.Op) -> dict[str, str]:
    return {"Authorization": "Ticket " + tickets.issue(KEY, TicketScope(
        server="srv", share="sh", path=path, op=op, job="j", task="t", tree=True), ttl=60)}


async def test_a_hostile_puller_waits_its_turn_for_memory(tmp_path: Path) -> None:
    budget = Budget(4 * MiB)
    async with endpoint(tmp_path, Limits(), budget) as (served, url, root), \
            aiohttp.ClientSession() as http_session:
        (root / "big.mov").write_bytes(random.randbytes(16 * MiB))

        async def ask(index: int) -> int:
            async with http_session.get(f"{url}/chunk", headers=ticket("big.mov", "read"),
                                        params={"share": "sh", "path": "big.mov",
                                                "index": index, "chunk": 2 * MiB}) as resp:
                return len(await resp.read())

        sizes = await asyncio.gather(*(ask(i) for i in range(8)))
    assert sizes == [2 * MiB] * 8 and budget.peak <= 4 * MiB and budget.used == 0
    assert served.served_chunks == 8


async def test_a_hostile_pusher_is_refused_not_waited_for(tmp_path: Path) -> None:
    limits = Limits(max_file_size=8 * MiB, grace=0.5, min_rate=1 * MiB)  # a chunk: 1.5 s
    async with endpoint(tmp_path, limits, Budget(64 * MiB)) as (served, url, _root), \
            aiohttp.ClientSession() as http_session:
        write = ticket("in", "write")

        async def call(method: str, what: str, data: Any = None, **params: Any) -> int:
            async with http_session.request(method, f"{url}/{what}", data=data, headers=write,
                                            params={"share": "sh", **params}) as resp:
                return resp.status

        opened = {"size": 2 * MiB, "chunk": MiB, "identity": "x", "mode": 0o644, "mtime_ns": 1}
        too_big = {**opened, "size": 9 * MiB}
        assert await call("POST", "receive/open", msgspec.json.encode(too_big),
                          path="in/a.mov") == 413
        assert await call("POST", "receive/open", msgspec.json.encode(opened),
                          path="in/a.mov") == 200

        async def drip() -> Any:  # 30 KiB in 3 s, of a 1 MiB chunk
            for _ in range(30):
                yield b"x" * 1024
                await asyncio.sleep(0.1)

        async def endless() -> Any:
            while True:
                yield b"x" * (64 << 10)

        assert await call("PUT", "receive/chunk", drip(), path="in/a.mov", index=0) == 408
        assert await call("PUT", "receive/chunk", endless(), path="in/a.mov", index=0) == 413
        assert served.budget.used == 0
    assert served.refused == 3


# -- what a failed transfer leaves: its part file, only for an attempt that comes after

async def test_a_failed_pull_keeps_its_part_file_only_for_a_next_attempt(tmp_path: Path
                                                                         ) -> None:
    from agent.moving import Mover
    from protocol import TransferWork
    from transports.chunks import TransferError

    peer = HostilePeer(tmp_path / "peer")
    url = peer.start()
    try:
        work = TransferWork(url=url, fingerprint=peer.fingerprint, share="evil",
                            path="short.mov", ticket="t", dest_share="d",
                            dest_path="in/short.mov", into_folder=False,
                            dest_root=str(tmp_path / "dest"))
        for kept in (True, False):
            with pytest.raises(TransferError, match="sent 1000 bytes for chunk"):
                await Mover(dict).run(work, keep=lambda stopped, kept=kept: kept)
            assert len(leftovers(tmp_path / "dest")) == (2 if kept else 0)
    finally:
        peer.stop()


def test_which_ends_keep_the_part_file() -> None:
    from agent.buckets.base import Held, Stop
    from agent.buckets.transfer import keep_part
    from protocol import BucketWork, TaskWork

    def keeps(last: bool, stopped: bool, aborted: bool = False, lost: bool = False) -> bool:
        task = TaskWork(id="t", uri="u", item="i", argv=[], attempt=1, last_attempt=last)
        held = Held(BucketWork(id="b", job_id="j", lane_id="l", tasks=[task]),
                    stopping=Stop.LOST if lost else None, aborted={"t"} if aborted else set())
        return keep_part(held, task)(stopped)

    assert keeps(last=False, stopped=False) and keeps(last=False, stopped=True)
    assert not keeps(last=True, stopped=False), "failed on its last attempt"
    assert not keeps(last=False, stopped=True, aborted=True), "aborted"
    assert keeps(last=True, stopped=True), "a draining agent hands it back: it resumes"
    assert not keeps(last=True, stopped=True, lost=True), "its lease lost: the hub fails it"
