"""What a check-in may leave out keeps what the hub has; metrics keys it does not know are ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub import Session
from tests.helpers import Hub, http, wait_for

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


def test_an_agent_reports_its_gpus(hub: Hub, session: Session, start_agent: Any,
                                   env: dict[str, str], tmp_path: Path) -> None:
    # this machine has no GPU: nvidia-smi, the boundary the agent asks, is faked
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-8d1c, Fake A100, 40960'\n"
                   "echo '1, GPU-77aa, Fake A100, 40960'\n")
    smi.chmod(0o755)
    env["PATH"] = f"{folder}:{env.get('PATH', '')}"
    node = session.create("Node", {"name": "gpu-box"})
    start_agent(hub, node["api_key"])
    found = wait_for(lambda: session.find_one(f"Client where node={node['id']}"),
                     what="client")
    gpus = wait_for(lambda: (session.get("Client", found["id"])["metrics"] or {}).get("gpus"),
                    what="gpus in the metrics")
    assert gpus == [{"index": 0, "uuid": "GPU-8d1c", "name": "Fake A100", "memory": 40960 << 20},
                    {"index": 1, "uuid": "GPU-77aa", "name": "Fake A100", "memory": 40960 << 20}]


def test_the_reason_is_each_check_ins_word_and_goes_with_the_goodbye(
        hub: Hub, session: Session) -> None:
    node = session.create("Node", {"name": "ws1"})
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": "machine-0002", "code": "ws1"})
    assert status == 200
    token, client_id = enrolled["token"], enrolled["client_id"]
    assert session.get("Client", client_id)["status_reason"] is None
    body = {"metrics": METRICS, "status_reason": "outside schedule (next window mon 19:00)"}
    assert http("POST", f"{hub.api}/agent/checkin", body, token=token)[0] == 200
    assert session.get("Client", client_id)["status_reason"] == body["status_reason"]
    # a check-in without one: the agent takes work again
    assert http("POST", f"{hub.api}/agent/checkin", {"metrics": METRICS}, token=token)[0] == 200
    assert session.get("Client", client_id)["status_reason"] is None
    body["status_reason"] = "user active (nimby)"
    assert http("POST", f"{hub.api}/agent/checkin", body, token=token)[0] == 200
    assert http("POST", f"{hub.api}/agent/goodbye", {}, token=token)[0] == 200
    gone = session.get("Client", client_id)
    assert gone["status"] == "offline" and gone["status_reason"] is None
