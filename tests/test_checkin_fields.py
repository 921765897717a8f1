"""What a check-in may leave out keeps what the hub has; metrics keys it does not know are ignored."""

from __future__ import annotations

from hub import Session
from tests.helpers import Hub, http

METRICS = {"c": 2, "l": 1.0, "m": 3.0, "mpf": 1, "mpt": 2, "mvf": 0, "mvt": 0}


def test_omitted_fields_keep_stored_values(hub: Hub, session: Session) -> None:
    node = session.create("Node", {"name": "n1"})
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": "machine-0001", "code": "host-a", "os": "linux",
        "host_id": "AA:BB:CC:DD:EE:FF", "version": "9.9"})
    assert status == 200
    token = enrolled["token"]
    status, _ = http("POST", f"{hub.api}/agent/checkin",
                     {"metrics": {**METRICS, "gpu": [{"name": "x"}],
                                  "in": {"s": 1.0, "s_a": 1.0, "s_t": -1.0, "peak": 9}}},
                     token=token)
    assert status == 200
    client = session.get("Client", enrolled["client_id"])
    assert (client["host_id"], client["code"], client["os"], client["version"]) == (
        "AA:BB:CC:DD:EE:FF", "host-a", "linux", "9.9")
    assert "gpu" not in client["metrics"] and "peak" not in client["metrics"]["in"]
    status, _ = http("POST", f"{hub.api}/agent/checkin",
                     {"metrics": METRICS, "host_id": "11:22:33:44:55:66", "code": "host-b"},
                     token=token)
    client = session.get("Client", enrolled["client_id"])
    assert (client["host_id"], client["code"]) == ("11:22:33:44:55:66", "host-b")
