"""The agent as a native Windows service, through pywin32's service framework (no NSSM).

The Service Control Manager (SCM) starts ``pythonservice.exe``, which loads
``AgentService``; the service's name (``ferry-agent-NAME``) names the agent
instance. Stop means drain here too: on STOP, and on PRESHUTDOWN (asked for,
so that a machine shutting down waits for the drain, up to the pre-shutdown
timeout the install sets), the agent is asked to stop, and while it drains the
service reports STOP_PENDING with a rising checkpoint and a wait hint every
few seconds, so the SCM keeps waiting. ``--system`` runs it as the virtual
account ``NT SERVICE\\ferry-agent-NAME``; ``--user`` installs a logon task
of the user instead (``schtasks``), stopped with ``ferry agent stop`` (a drain).

The pywin32 modules are imported only when used; ``scm`` lets tests put a small
stand-in for them at that boundary, the one this machine cannot reach.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from core.lifecycle import Service
from service.base import Manager, ServiceError, run
from service.units import STOP_MARGIN, ServiceSpec

HINT_EVERY = 5.0  # seconds between STOP_PENDING reports while the agent drains
SERVICE_CONTROL_PRESHUTDOWN = 15
SERVICE_ACCEPT_PRESHUTDOWN = 256


def service_name(spec: ServiceSpec) -> str:
    return f"ferry-agent-{spec.name}"


def scm() -> tuple[ModuleType, ModuleType, ModuleType]:
    """pywin32's win32service, win32serviceutil and servicemanager."""
    try:
        return (importlib.import_module("win32service"),
                importlib.import_module("win32serviceutil"),
                importlib.import_module("servicemanager"))
    except ImportError:
        raise ServiceError("Windows services need pywin32 (pip install pywin32)") from None


class Drain:
    """Runs an agent on a thread of its own until it stops; ``stop`` asks it to drain and
    reports STOP_PENDING (``report(wait_hint_ms)``) until it has."""

    def __init__(self, make_agent: Callable[[], Service], drain_timeout: float) -> None:
        self.make_agent = make_agent
        self.drain_timeout = drain_timeout
        self.agent: Service | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        """The service's main: blocks until the agent has stopped."""
        try:
            self.agent = self.make_agent()
            self._loop = asyncio.new_event_loop()
            self._ready.set()
            self._loop.run_until_complete(self.agent.serve())
        finally:
            self._ready.set()
            self.done.set()
            if self._loop is not None:
                self._loop.close()

    def stop(self, report: Callable[[int], None]) -> None:
        """Ask for a drain, and keep the SCM waiting while it lasts."""
        self._ready.wait(30)
        if self.agent is not None and self._loop is not None and not self.done.is_set():
            self._loop.call_soon_threadsafe(self.agent.request_stop)
        hint = int((self.drain_timeout + STOP_MARGIN) * 1000)
        report(hint)
        while not self.done.wait(HINT_EVERY):
            report(hint)


def service_class(win32service: Any, win32serviceutil: Any, servicemanager: Any,
                  make_agent: Callable[[str], tuple[Service, float]]) -> type:
    """The ``ServiceFramework`` subclass the SCM runs (``make_agent(service name)``: the
    agent and its drain timeout)."""

    class AgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = "ferry-agent"
        _svc_display_name_ = "Ferry agent"
        _svc_description_ = "Ferry node agent: checks in, runs leased work; stop drains it"

        def __init__(self, args: list[str]) -> None:
            win32serviceutil.ServiceFramework.__init__(self, args)
            self.name = args[0]
            agent, drain = make_agent(self.name)
            self.drain = Drain(lambda: agent, drain)

        def GetAcceptedControls(self) -> int:
            accepted: int = win32serviceutil.ServiceFramework.GetAcceptedControls(self)
            return accepted | SERVICE_ACCEPT_PRESHUTDOWN

        def SvcDoRun(self) -> None:
            servicemanager.LogInfoMsg(f"{self.name}: starting")
            self.drain.run()
            servicemanager.LogInfoMsg(f"{self.name}: stopped")

        def _draining(self) -> None:
            self.drain.stop(lambda hint: self.ReportServiceStatus(
                win32service.SERVICE_STOP_PENDING, waitHint=hint))

        def SvcStop(self) -> None:
            self._draining()

        def SvcShutdown(self) -> None:
            self._draining()

        def SvcOtherEx(self, control: int, event_type: int, data: Any) -> None:
            if control == SERVICE_CONTROL_PRESHUTDOWN:
                self._draining()

    return AgentService


class WindowsManager(Manager):
    """System: a native service; user: a logon task of the user."""

    def __init__(self, spec: ServiceSpec, root: Path | None = None,
                 modules: tuple[Any, Any, Any] | None = None) -> None:
        super().__init__(spec, root)
        self._modules = modules

    def _scm(self) -> tuple[Any, Any, Any]:
        return self._modules or scm()

    def unit_path(self) -> Path:
        return Path(f"{service_name(self.spec)}.service")  # nothing on disk: the registry

    def unit_bytes(self) -> bytes:
        return b""

    def install(self, *, start: bool = True) -> Any:
        if self.root is not None:
            raise ServiceError("--root stages files; a Windows service lives in the registry")
        name = service_name(self.spec)
        if not self.spec.system:
            command = subprocess.list2cmdline(self.spec.argv)
            run(["schtasks", "/Create", "/F", "/SC", "ONLOGON", "/TN", name, "/TR", command])
            if start:
                run(["schtasks", "/Run", "/TN", name])
            return None
        win32service, win32serviceutil, _ = self._scm()
        win32serviceutil.InstallService(
            "ferry.winservice.AgentService", name, f"Ferry agent {self.spec.name}",
            startType=win32service.SERVICE_AUTO_START,
            userName=f"NT SERVICE\\{name}", password=None,
            description="Ferry node agent: checks in, runs leased work; stop drains it")
        manager = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
        try:
            handle = win32service.OpenService(manager, name, win32service.SERVICE_ALL_ACCESS)
            try:  # a shutting-down machine waits for the drain, this long at most
                win32service.ChangeServiceConfig2(
                    handle, win32service.SERVICE_CONFIG_PRESHUTDOWN_INFO,
                    int(self.spec.stop_timeout * 1000))
            finally:
                win32service.CloseServiceHandle(handle)
        finally:
            win32service.CloseServiceHandle(manager)
        if start:
            self.start()
        return None

    def uninstall(self) -> Path:
        name = service_name(self.spec)
        if not self.spec.system:
            self.stop()
            run(["schtasks", "/Delete", "/F", "/TN", name])
            return self.unit_path()
        _, win32serviceutil, _ = self._scm()
        self.stop()
        win32serviceutil.RemoveService(name)
        return self.unit_path()

    def start(self) -> None:
        if not self.spec.system:
            run(["schtasks", "/Run", "/TN", service_name(self.spec)])
            return
        self._scm()[1].StartService(service_name(self.spec))

    def stop(self) -> None:
        if not self.spec.system:  # ferry's own stop: a drain, not schtasks /End's kill
            run([sys.executable, "-m", "ferry", "agent", "stop", "--user", "--name",
                  self.spec.name])
            return
        self._scm()[1].StopServiceWithDeps(service_name(self.spec),
                                           waitSecs=self.spec.stop_timeout)

    def status(self) -> dict[str, str]:
        if not self.spec.system:
            return {"task": run(["schtasks", "/Query", "/TN", service_name(self.spec)])}
        state = self._scm()[1].QueryServiceStatus(service_name(self.spec))
        return {"state": str(state[1]), "controls": str(state[2])}
