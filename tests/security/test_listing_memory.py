"""A viewer cannot drive the hub out of memory by listing (issue 14, finding 5).

Three users with only the ``viewer`` role of an organization list the tasks of its job of
100,000 tasks at once, as fast as the hub answers. Before paging, each such answer held
every task: three of them took the hub from 0.24 to 4 GB and stalled agents' check-ins
for seconds. Now:

* every answer holds at most the page maximum (``find_page_max``, 10,000), and a larger
  ``limit`` is refused, not cut;
* one user's third and fourth queries at once are refused with 429 (at most
  ``find_concurrent_per_user``, 2, run at once);
* the hub's resident memory grows by less than ``GROWTH_BOUND`` (250 MiB) while the
  three walk through all 100,000 tasks (measured: 19 MiB on SQLite, 11 MiB on
  PostgreSQL; before paging, this test saw it grow by 466 MiB);
* nothing changes: the tasks and their statuses are the same afterwards.

No timing is asserted (bench/listing.py measures what this costs check-ins).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from tests.helpers import Hub, PeakMemory, db_query, http, login, wait_for

TASKS = 100_000
PAGE_MAX = 10_000  # the hub's default find_page_max
GROWTH_BOUND = 250 * 1024 * 1024
PASSWORD = "viewer-password-1"


def ok(hub: Hub, method: str, path: str, body: Any, token: str) -> Any:
    status, answer = http(method, f"{hub.api}{path}", body, token=token, timeout=300)
    assert status in (200, 201), (method, path, answer)
    return answer


def statuses(hub: Hub, job_id: str) -> list[tuple[Any, ...]]:
    return sorted(db_query(hub.database, "select status, count(*) from tasks where job_id = ? "
                                         "group by status", job_id))


def hold(hub: Hub, token: str, body: bytes) -> Callable[[], tuple[int, Any]]:
    """A find whose body has not all arrived: it holds one of the caller's places until
    the returned function sends the rest (and gives the answer)."""
    import json
    import socket

    url = urllib.parse.urlsplit(hub.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=120)
    sock.sendall(f"POST /api/v1/find HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer "
                 f"{token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                 "\r\nConnection: close\r\n\r\n".encode() + body[:1])

    def finish() -> tuple[int, Any]:
        sock.sendall(body[1:])
        data = bytearray()
        while chunk := sock.recv(1 << 20):
            data += chunk
        sock.close()
        head, _, payload = bytes(data).partition(b"\r\n\r\n")
        assert b"chunked" not in head.lower(), head
        return int(head.split()[1]), json.loads(payload)

    return finish


def test_three_viewers_listing_a_huge_job_cannot_exhaust_the_hub(
        start_hub: Callable[..., Hub]) -> None:
    hub = start_hub()
    assert hub.proc is not None
    root = login(hub)
    org = ok(hub, "POST", "/organization", {"name": "studio"}, root)
    ok(hub, "POST", "/user", {"username": "owner", "password": PASSWORD,
                              "organization": org["id"], "roles": ["researcher"]}, root)
    owner = login(hub, "owner", PASSWORD)
    job = ok(hub, "POST", "/job", {"status": "paused", "compute": {
        "command": ["true"], "items": f"1-{TASKS}"}}, owner)
    viewers = []
    for n in range(3):
        ok(hub, "POST", "/user", {"username": f"viewer{n}", "password": PASSWORD,
                                  "organization": org["id"], "roles": ["viewer"]}, root)
        viewers.append(login(hub, f"viewer{n}", PASSWORD))
    query = f"Task where job.id={job['id']}"
    before = statuses(hub, job["id"])
    assert before == [("queued", TASKS)]

    # a page larger than the maximum is refused, naming it
    status, answer = http("POST", f"{hub.api}/find", {"query": query, "limit": PAGE_MAX + 1},
                          token=viewers[0])
    assert status == 422 and answer["error"]["field"] == "limit", answer
    assert str(PAGE_MAX) in answer["error"]["message"]

    sizes: list[int] = []
    seen: list[set[str]] = [set() for _ in viewers]
    failures: list[BaseException] = []

    def walk(n: int) -> None:
        try:
            cursor = None
            while True:
                body: dict[str, Any] = {"query": query, "limit": PAGE_MAX}
                if cursor:
                    body["cursor"] = cursor
                status, answer = http("POST", f"{hub.api}/find", body, token=viewers[n],
                                      timeout=300)
                assert status == 200, answer
                sizes.append(len(answer["result"]))
                seen[n].update(t["id"] for t in answer["result"])
                cursor = answer["next"]
                if cursor is None:
                    return
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    with PeakMemory(hub.proc.pid) as memory:
        threads = [threading.Thread(target=walk, args=(n,)) for n in range(len(viewers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    assert all(len(ids) == TASKS for ids in seen), [len(ids) for ids in seen]
    assert max(sizes) <= PAGE_MAX and len(sizes) >= 3 * TASKS // PAGE_MAX
    grown = memory.peak - memory.start
    assert grown < GROWTH_BOUND, f"the hub grew by {grown / 2**20:.0f} MiB while listing"

    # one viewer's queries at once: two run, the third and the fourth are refused
    page = f'{{"query": "{query}", "limit": {PAGE_MAX}}}'.encode()
    held = [hold(hub, viewers[1], page) for _ in range(2)]

    def refused() -> dict[str, Any] | None:
        status, answer = http("POST", f"{hub.api}/find", {"query": query, "limit": PAGE_MAX},
                              token=viewers[1], timeout=300)
        return answer if status == 429 else None

    third = wait_for(refused, what="a viewer's third query at once refused")
    assert third["error"]["code"] == "too_many_queries"
    fourth = refused()
    assert fourth is not None and "find_concurrent_per_user" in fourth["error"]["message"]
    for finish in held:
        status, answer = finish()
        assert status == 200 and len(answer["result"]) == PAGE_MAX and answer["next"]

    # listing changed nothing
    assert statuses(hub, job["id"]) == before
    status, after = http("GET", f"{hub.api}/job/{job['id']}", token=viewers[2])
    assert status == 200 and after["status"] == "paused" and after["counts"] == {"queued": TASKS}
