"""``ferry service``: the units and plists it writes (checked by systemd's own verifier and
by plistlib), staged installs, and what it says when the service manager is missing."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from core.paths import instance_paths
from service.units import ServiceSpec, launchd_bytes, systemd_unit
from tests.helpers import ferry

VERIFY = shutil.which("systemd-analyze")


def verify(unit: Path, *, user: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["systemd-analyze", "verify", *(["--user"] if user else []),
                           str(unit)], capture_output=True, text=True, check=False,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@pytest.mark.skipif(VERIFY is None, reason="systemd-analyze is missing (apt-get install systemd)")
@pytest.mark.parametrize("system, user", [(True, "ferry"), (True, None), (False, None)])
def test_generated_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, system: bool,
                                                             user: str | None) -> None:
    spec = ServiceSpec(instance_paths("agent", "render-07", system), 120.0, user=user,
                       groups=("docker",) if user else ())
    text = systemd_unit(spec)
    unit = tmp_path / "ferry-agent-render-07.service"
    unit.write_text(text)
    done = verify(unit, user=not system, tmp_path=tmp_path)
    # verify exits 0 even for keys it ignores: clean means it said nothing at all
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done.stderr
    lines = set(text.splitlines())
    assert {"Type=notify", "NotifyAccess=main", "KillMode=mixed", "KillSignal=SIGTERM",
            "TimeoutStopSec=150", "WatchdogSec=60", "Restart=on-failure", "Delegate=yes"} <= lines
    assert ("OOMScoreAdjust=-500" in lines) == system
    assert ("User=ferry" in lines) == (user == "ferry")
    assert any(line.startswith("ExecStart=") and f"--name render-07 --config "
               f"{spec.paths.config_file}" in line for line in lines)


@pytest.mark.skipif(VERIFY is None, reason="systemd-analyze is missing (apt-get install systemd)")
def test_the_verifier_would_catch_a_broken_unit(tmp_path: Path) -> None:
    spec = ServiceSpec(instance_paths("agent", "a1", True), 60.0)
    unit = tmp_path / "ferry-agent-a1.service"
    unit.write_text(systemd_unit(spec).replace("KillMode=mixed", "KillMode=sometimes"))
    assert "kill mode" in verify(unit, user=False, tmp_path=tmp_path).stderr
    unit.write_text(systemd_unit(ServiceSpec(spec.paths, 60.0, python="/nonexistent/python")))
    assert verify(unit, user=False, tmp_path=tmp_path).returncode != 0


@pytest.mark.parametrize("system", [True, False])
def test_launchd_plists_round_trip_with_the_required_keys(system: bool) -> None:
    spec = ServiceSpec(instance_paths("agent", "edit-3", system), 45.0,
                       user="ferry" if system else None)
    plist = plistlib.loads(launchd_bytes(spec))
    assert plist["Label"] == "org.ferry.agent.edit-3"
    assert plist["ProgramArguments"][1:6] == ["-m", "ferry", "agent", "start", "--attach"]
    assert ("--system" if system else "--user") in plist["ProgramArguments"]
    assert plist["ExitTimeOut"] == 75  # the drain and the margin: launchd's KILL waits
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert ("UserName" in plist) == system
    assert plistlib.loads(plistlib.dumps(plist)) == plist


def new_agent(env: dict[str, str], name: str = "a1", drain: str | None = None) -> Path:
    result = ferry("agent", "new", "--user", "--name", name, "--no-input", "--hub",
                   "http://127.0.0.1:7700", "--api-key", "node-key-123456", env=env)
    assert result.returncode == 0, result.stderr
    config = Path(env["XDG_CONFIG_HOME"]) / "ferry" / "agent" / f"{name}.yaml"
    if drain:
        config.write_text(config.read_text().replace("application:",
                                                      f"application:\n  drain_timeout: {drain}"))
    return config


def test_a_staged_install_writes_the_unit_and_uninstall_removes_it(env: dict[str, str],
                                                                   tmp_path: Path) -> None:
    new_agent(env, drain="300")
    stage = tmp_path / "stage"
    dry = ferry("service", "install", "--user", "--name", "a1", "--dry-run", env=env)
    assert dry.returncode == 0 and "TimeoutStopSec=330" in dry.stdout
    assert not stage.exists()
    done = ferry("service", "install", "--user", "--name", "a1", "--root", str(stage), env=env)
    assert done.returncode == 0, done.stderr
    units = list(stage.rglob("ferry-agent-a1.service"))
    assert len(units) == 1 and units[0].parent.name == "user"
    assert "TimeoutStopSec=330" in units[0].read_text() and "(staged)" in done.stdout
    gone = ferry("service", "uninstall", "--user", "--name", "a1", "--root", str(stage), env=env)
    assert gone.returncode == 0, gone.stderr
    assert not list(stage.rglob("*.service"))


def test_bad_input_and_a_missing_service_manager_say_what_is_wrong(env: dict[str, str]
                                                                   ) -> None:
    missing = ferry("service", "install", "--user", "--name", "ghost", env=env)
    assert missing.returncode != 0 and "no agent 'ghost'" in missing.stderr
    assert "ferry agent new --name ghost" in missing.stderr
    bad = ferry("service", "install", "--user", "--system", env=env)
    assert bad.returncode != 0 and "not allowed with argument" in bad.stderr
    new_agent(env, "a1")
    new_agent(env, "a2")
    which = ferry("service", "status", "--user", env=env)
    assert which.returncode != 0 and "name the agent (--name)" in which.stderr
    # no systemd running here: the install fails clearly and leaves no unit behind
    failed = ferry("service", "install", "--user", "--name", "a1", env=env)
    if failed.returncode == 0:  # a machine with a user systemd: undo
        ferry("service", "uninstall", "--user", "--name", "a1", env=env)
        pytest.skip("this machine runs a user systemd")
    assert "systemctl" in failed.stderr and "failed" in failed.stderr
    home = Path(env["HOME"])
    assert not list(home.rglob("ferry-agent-a1.service"))


ROOT = Path(__file__).resolve().parents[2]


def packaged_launchd_spec(system: bool) -> ServiceSpec:
    from core.paths import InstancePaths

    home = "" if system else "/Users/USER"
    paths = InstancePaths("agent", "NAME", system,
                          Path(f"{home}/Library/Application Support/ferry/agent/NAME.yaml"),
                          Path("/x"), Path(f"{home}/Library/Logs/ferry/agent"))
    return ServiceSpec(paths, 60.0, python="/usr/local/opt/ferry/bin/python")


@pytest.mark.parametrize("system, name", [(True, "org.ferry.agent.NAME.daemon.plist"),
                                          (False, "org.ferry.agent.NAME.agent.plist")])
def test_the_packaged_plist_templates_are_what_the_generator_writes(system: bool, name: str
                                                                    ) -> None:
    packaged = (ROOT / "packaging" / "launchd" / name).read_bytes()
    assert packaged == launchd_bytes(packaged_launchd_spec(system))


@pytest.mark.skipif(VERIFY is None, reason="systemd-analyze is missing (apt-get install systemd)")
def test_the_packaged_template_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    template = (ROOT / "packaging" / "systemd" / "ferry-agent@.service").read_text()
    assert "ExecStart=/usr/bin/ferry agent start --attach --system --name %i" in template
    ferry_here = shutil.which("ferry")
    assert ferry_here is not None
    unit = tmp_path / "ferry-agent@render.service"  # an instance of it, ferry from here
    unit.write_text(template.replace("/usr/bin/ferry", ferry_here))
    done = verify(unit, user=False, tmp_path=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done.stderr
