"""Host identity and metrics, checked against what the OS says directly."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest

from agent.identity import Identity, host_macs, machine_id
from agent.metrics import MetricsSampler


def test_host_macs_leave_out_virtual_interfaces() -> None:
    macs = host_macs()
    assert all(re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}", m) for m in macs)
    assert "00:00:00:00:00:00" not in macs
    virtual = {(Path("/sys/class/net") / name / "address").read_text().strip().upper()
               for name in os.listdir("/sys/devices/virtual/net")}
    physical = {(p / "address").read_text().strip().upper() for p in Path("/sys/class/net").iterdir()
                if "/virtual/" not in str(p.resolve())}
    assert set(macs) == physical - {"00:00:00:00:00:00"}
    assert not (set(macs) & (virtual - physical))
    assert macs == sorted(set(macs))


def test_machine_id_is_stable(tmp_path: Path) -> None:
    first = machine_id([tmp_path])
    assert first == machine_id([tmp_path])
    if Path("/etc/machine-id").exists():
        assert first == Path("/etc/machine-id").read_text().strip()
    identity = Identity.gather([tmp_path])
    assert identity.machine_id == first and identity.os == "linux"


def test_made_up_machine_id_is_shared_by_the_machines_agents(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an OS machine id (minimal containers), every agent on the host agrees on one."""
    monkeypatch.setattr("agent.identity._platform_machine_id", lambda: None)
    locked, shared = tmp_path / "locked", tmp_path / "shared"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: use a path that cannot be a folder
            locked = tmp_path / "file"
            locked.write_text("")
        made = machine_id([locked, shared])
        assert (shared / "machine-id").read_text().strip() == made
        assert machine_id([locked, shared]) == made
        assert Identity.gather([locked, shared]).machine_id == made
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_metrics_are_plausible() -> None:
    sampler = MetricsSampler()
    m = sampler.sample()
    assert m.c == psutil.cpu_count(logical=True)
    assert m.mpt == psutil.virtual_memory().total
    assert 0 <= m.l <= 100 and 0 <= m.m <= 100
    assert m.in_.s_t == -1.0 and m.out.s_t == -1.0  # no Ferry transfer yet
