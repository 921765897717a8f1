"""The Windows service (service/windows.py) against a stand-in for the one boundary this
machine cannot reach: pywin32's SCM calls. The stand-in keeps pywin32's own rules for what
it does (controls dispatched to SvcStop / SvcShutdown / SvcOtherEx, checkpoints counted per
pending report, SvcRun's RUNNING then STOP_PENDING); everything else is Ferry's."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.lifecycle import Service
from core.paths import instance_paths
from service import windows
from service.units import ServiceSpec

RUNNING, STOP_PENDING, STOPPED, START_PENDING = 4, 3, 1, 2
STOP, SHUTDOWN = 1, 5


def fake_scm() -> tuple[Any, Any, Any, list[tuple[Any, ...]]]:
    calls: list[tuple[Any, ...]] = []
    win32service = SimpleNamespace(
        SERVICE_RUNNING=RUNNING, SERVICE_STOP_PENDING=STOP_PENDING, SERVICE_STOPPED=STOPPED,
        SERVICE_START_PENDING=START_PENDING, SERVICE_ACCEPT_STOP=1, SERVICE_ACCEPT_SHUTDOWN=4,
        SERVICE_ACCEPT_PAUSE_CONTINUE=2, SERVICE_CONTROL_STOP=STOP,
        SERVICE_CONTROL_SHUTDOWN=SHUTDOWN, SERVICE_WIN32_OWN_PROCESS=16,
        SERVICE_AUTO_START=2, SC_MANAGER_ALL_ACCESS=0xF003F, SERVICE_ALL_ACCESS=0xF01FF,
        SERVICE_CONFIG_PRESHUTDOWN_INFO=7,
        SetServiceStatus=lambda handle, status: calls.append(("status", *status)),
        OpenSCManager=lambda *a: "scm", OpenService=lambda m, name, access: f"svc:{name}",
        ChangeServiceConfig2=lambda h, level, value: calls.append(("config2", h, level, value)),
        CloseServiceHandle=lambda h: None)

    class ServiceFramework:  # pywin32's rules, in brief
        def __init__(self, args: list[str]) -> None:
            self.ssh = f"handle:{args[0]}"
            self.checkPoint = 0

        def GetAcceptedControls(self) -> int:
            accepted = 0
            if hasattr(self, "SvcStop"):
                accepted |= win32service.SERVICE_ACCEPT_STOP
            if hasattr(self, "SvcShutdown"):
                accepted |= win32service.SERVICE_ACCEPT_SHUTDOWN
            return accepted

        def ReportServiceStatus(self, status: int, waitHint: int = 5000) -> None:
            accepted = 0 if status == START_PENDING else self.GetAcceptedControls()
            if status in (RUNNING, STOPPED):
                point = 0
            else:
                self.checkPoint += 1
                point = self.checkPoint
            win32service.SetServiceStatus(self.ssh, (16, status, accepted, 0, 0, point,
                                                     waitHint))

        def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> Any:
            if control == STOP:
                return self.SvcStop()  # type: ignore[attr-defined]
            if control == SHUTDOWN:
                return self.SvcShutdown()  # type: ignore[attr-defined]
            return self.SvcOtherEx(control, event_type, data)  # type: ignore[attr-defined]

        def SvcRun(self) -> None:
            self.ReportServiceStatus(RUNNING)
            self.SvcDoRun()  # type: ignore[attr-defined]
            self.ReportServiceStatus(STOP_PENDING)

    def record(name: str) -> Any:
        return lambda *args, **kwargs: calls.append((name, args, kwargs))

    win32serviceutil = SimpleNamespace(
        ServiceFramework=ServiceFramework, InstallService=record("install"),
        RemoveService=record("remove"), StartService=record("start"),
        StopServiceWithDeps=record("stop"), QueryServiceStatus=lambda name: (16, RUNNING, 5))
    servicemanager = SimpleNamespace(LogInfoMsg=record("log"))
    return win32service, win32serviceutil, servicemanager, calls


class DrainingAgent(Service):
    """Stands in for the agent: serves until asked to stop, then takes a while to drain."""

    def __init__(self, drain: float) -> None:
        super().__init__(handle_signals=False)
        self.drain_for = drain
        self.serving = threading.Event()
        self.drained = False

    async def startup(self) -> None:
        self.serving.set()

    async def shutdown(self) -> None:
        import asyncio

        await asyncio.sleep(self.drain_for)
        self.drained = True


@pytest.mark.parametrize("control", [STOP, windows.SERVICE_CONTROL_PRESHUTDOWN])
def test_stop_and_preshutdown_drain_the_agent_while_the_scm_is_kept_waiting(
        control: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "HINT_EVERY", 0.05)
    win32service, win32serviceutil, servicemanager, calls = fake_scm()
    agent = DrainingAgent(drain=0.4)
    cls = windows.service_class(win32service, win32serviceutil, servicemanager,
                                make_agent=lambda name: (agent, 60.0))
    service = cls(["ferry-agent-a1"])
    assert service.GetAcceptedControls() & windows.SERVICE_ACCEPT_PRESHUTDOWN
    runner = threading.Thread(target=service.SvcRun)
    runner.start()
    assert agent.serving.wait(10)
    started = time.monotonic()
    service.ServiceCtrlHandlerEx(control, 0, None)  # returns once the agent has drained
    assert agent.drained and time.monotonic() - started >= 0.4
    runner.join(10)
    statuses = [c for c in calls if c[0] == "status"]
    assert statuses[0][2] == RUNNING
    pending = [s for s in statuses[1:-1] if s[2] == STOP_PENDING]
    assert len(pending) >= 3  # reported again while the drain went on
    assert [s[6] for s in pending] == sorted({s[6] for s in pending})  # checkpoints rise
    assert {s[7] for s in pending} == {90_000}  # drain_timeout + margin, in ms


def test_an_install_asks_for_a_virtual_account_and_the_drains_preshutdown_time(
        tmp_path: Path) -> None:
    win32service, win32serviceutil, servicemanager, calls = fake_scm()
    spec = ServiceSpec(instance_paths("agent", "a1", True), 120.0)
    manager = windows.WindowsManager(spec, modules=(win32service, win32serviceutil,
                                                    servicemanager))
    manager.install(start=True)
    install = next(c for c in calls if c[0] == "install")
    assert install[1][:2] == ("ferry.winservice.AgentService", "ferry-agent-a1")
    assert install[2]["userName"] == "NT SERVICE\\ferry-agent-a1"
    assert install[2]["startType"] == win32service.SERVICE_AUTO_START
    assert ("config2", "svc:ferry-agent-a1", 7, 150_000) in calls
    assert any(c[0] == "start" for c in calls)
    manager.uninstall()
    stop = next(c for c in calls if c[0] == "stop")
    assert stop[2]["waitSecs"] == 150  # the SCM waits for the drain
    assert any(c[0] == "remove" for c in calls)
    with pytest.raises(windows.ServiceError, match="registry"):
        windows.WindowsManager(spec, root=tmp_path, modules=(win32service, win32serviceutil,
                                                             servicemanager)).install()
