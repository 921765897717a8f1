"""protocol.routes is the one table of the agent's endpoints: the hub serves each of them
with the same method, path and types, and the fake hub serves exactly them."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from agent.fakehub import FakeHub
from hub.app import ROUTES
from protocol import API_PREFIX, routes


@pytest.mark.parametrize("endpoint", routes.AGENT_ENDPOINTS, ids=lambda e: e.name)
def test_the_hub_serves_each_endpoint_with_its_types(endpoint: routes.Endpoint[object, object]
                                                     ) -> None:
    (route,) = [r for r in ROUTES if (r.method, r.path) == (endpoint.method, endpoint.path)]
    if isinstance(route.body, type):
        assert route.body is endpoint.request
    if isinstance(route.response, type):
        assert route.response is endpoint.answer
    assert route.auth == ("client" if endpoint.auth == "client" else route.auth)
    if endpoint.auth is None:
        assert route.auth is None


def test_a_path_parameter_is_named_when_missing() -> None:
    assert routes.UPLOAD_LOG.at(task="t1") == "/agent/log/t1"
    with pytest.raises(ValueError, match="upload_log: path parameter 'task' is missing"):
        routes.UPLOAD_LOG.at()


async def test_the_fake_hub_refuses_what_the_hub_refuses() -> None:
    async with FakeHub() as hub, aiohttp.ClientSession() as http:
        url = hub.url + API_PREFIX
        async with http.post(url + "/agent/checkin", json={"metrics": {}}) as resp:
            assert resp.status == 401  # no token
        async with http.post(url + "/agent/enroll", json={"api_key": "x"}) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["error"]["code"] == "invalid_body"
            assert "machine_id" in body["error"]["message"] or "api_key" in body["error"]["message"]
        async with http.post(url + "/agent/enroll", json={
                "api_key": "wrong-key-000", "machine_id": "m" * 8, "code": "n1"}) as resp:
            assert resp.status == 401
        async with http.get(url + "/agent/unknown") as resp:
            assert resp.status == 404
        async with http.get(url + "/version") as resp:
            answer = msgspec.json.decode(await resp.read(), type=routes.Version)
            assert answer.protocol
    assert hub.enrolled == {}  # nothing was enrolled by the refused calls
