"""``ferry service install|uninstall|status|start|stop [--system|--user] [--name NAME]``.

``--system`` (the default for root): a system service ("server", client type 1),
run by the dedicated user ``ferry`` where the platform allows; ``--user``: the
user's own ("user server", type 2), which serves proxy shares. The agent
instance (``ferry agent new --name NAME``) must exist; its config is checked
before anything is written, and its ``drain_timeout`` sets how long the service
manager waits for a stop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.config import AgentConfig
from core.config import load
from core.errors import ConfigError
from core.paths import config_dirs, default_system, instance_paths
from service.base import ServiceError
from service.manager import manager
from service.units import SERVICE_USER, ServiceSpec

VERBS = {
    "install": "install the agent as a service (and start it, unless --no-start)",
    "uninstall": "stop the service and remove it (--purge: the agent's config, data and logs too)",
    "status": "the service manager's view of the service, and the agent's own status",
    "start": "start the service",
    "stop": "stop the service: the agent drains (finishes or hands back its tasks) first",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "install the agent as an OS service (systemd, launchd), where stop means drain"
    parser = sub.add_parser("service", help=text, description=text)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for verb, help_text in VERBS.items():
        p = verbs.add_parser(verb, help=help_text, description=help_text)
        level = p.add_mutually_exclusive_group()
        level.add_argument("--system", action="store_true", default=None,
                           help="a system service, as the user 'ferry' (default for root)")
        level.add_argument("--user", dest="system", action="store_false",
                           help="a service of this user")
        p.add_argument("--name", help="the agent instance (default: the only one there is)")
        if verb in ("install", "uninstall"):
            p.add_argument("--root", type=Path, help="stage the files under this folder "
                           "(a package build); no service manager is asked")
        if verb == "install":
            p.add_argument("--no-start", action="store_true", help="enable it, start it later")
            p.add_argument("--dry-run", action="store_true",
                           help="print the unit and where it would go; change nothing")
        if verb == "uninstall":
            p.add_argument("--purge", action="store_true",
                           help="also remove the agent's config, data and logs")
        p.set_defaults(func=_command)


def _name(args: argparse.Namespace, system: bool) -> str:
    if args.name:
        return str(args.name)
    level = "system" if system else "user"
    folder = dict(config_dirs("agent"))[level]
    found = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    if len(found) == 1:
        return found[0]
    raise ConfigError(f"name the agent (--name): {level} level has "
                      f"{', '.join(found) if found else 'none'} in {folder}"
                      + ("" if found else " (make one with `ferry agent new --name NAME`)"))


def spec_of(args: argparse.Namespace) -> ServiceSpec:
    system = default_system() if args.system is None else bool(args.system)
    paths = instance_paths("agent", _name(args, system), system)
    if not paths.config_file.is_file():
        raise ConfigError(f"no agent '{paths.name}' at {paths.level} level: "
                          f"{paths.config_file} does not exist (make it with `ferry agent new "
                          f"--name {paths.name}{'' if system else ' --user'}`)")
    config: AgentConfig = load(paths.config_file, AgentConfig).config
    # a dedicated user where the install can make one (Linux); launchd and the SCM run a
    # system service as root or as a virtual account
    user = SERVICE_USER if system and sys.platform.startswith("linux") else None
    groups = tuple(g for g in ("docker",) if _group_exists(g)) if user else ()
    return ServiceSpec(paths, config.drain_timeout, user=user, groups=groups)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _service_user(spec: ServiceSpec) -> None:
    """The dedicated user, made when missing; it reads the config, owns the agent's data."""
    import grp
    import pwd

    assert spec.user is not None
    try:
        pwd.getpwnam(spec.user)
    except KeyError:
        if os.geteuid() != 0 or shutil.which("useradd") is None:
            raise ServiceError(f"a system service runs as the user '{spec.user}', which does "
                               "not exist; install as root (it is made then)") from None
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/ferry",
                        "--no-create-home", "--shell", "/usr/sbin/nologin", spec.user],
                       check=True, capture_output=True)
    gid = grp.getgrnam(spec.user).gr_gid
    uid = pwd.getpwnam(spec.user).pw_uid
    config = spec.paths.config_file
    for folder in (config.parent, config.parent.parent):
        os.chown(folder, -1, gid)
        folder.chmod(folder.stat().st_mode | 0o050)
    os.chown(config, -1, gid)
    config.chmod(0o640)
    for folder in (spec.paths.data_dir, spec.paths.log_dir):
        if folder.exists():
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, uid, gid, follow_symlinks=False)


def _command(args: argparse.Namespace) -> int:
    spec = spec_of(args)
    root = getattr(args, "root", None)
    mgr = manager(spec, root)
    what = f"agent '{spec.name}' ({'system' if spec.system else 'user'} service)"
    if args.verb == "install":
        if args.dry_run:
            print(f"# {mgr.unit_path()}")
            print(mgr.unit_bytes().decode(), end="")
            return 0
        if spec.user and root is None:
            _service_user(spec)
        done = mgr.install(start=not args.no_start)
        print(f"installed {what}: {done.unit}"
              + (" (started)" if done.started else " (not started)" if root is None else
                 " (staged)"))
        return 0
    if args.verb == "uninstall":
        removed = mgr.uninstall()
        print(f"uninstalled {what}: removed {removed}")
        if args.purge:
            for path in (spec.paths.config_file, spec.paths.data_dir,
                         spec.paths.log_dir / f"{spec.name}.log",
                         spec.paths.log_dir / f"{spec.name}.out"):
                staged = path if root is None else root / path.relative_to(path.anchor)
                if staged.is_dir():
                    shutil.rmtree(staged)
                else:
                    staged.unlink(missing_ok=True)
            print(f"purged its config, data and logs ({spec.paths.config_file}, "
                  f"{spec.paths.data_dir})")
        return 0
    if args.verb == "status":
        print(json.dumps({"service": mgr.status(), "agent": _agent_status(spec)}, indent=2))
        return 0
    (mgr.start if args.verb == "start" else mgr.stop)()
    print(f"{args.verb}{'ped' if args.verb == 'stop' else 'ed'} {what}")
    return 0


def _agent_status(spec: ServiceSpec) -> dict[str, object] | None:
    try:
        info = json.loads(spec.paths.runtime_file.read_text())
        import urllib.request

        with urllib.request.urlopen(f"{info['status_url']}/status.json", timeout=5) as resp:
            status: dict[str, object] = json.load(resp)
        return status
    except (OSError, ValueError, KeyError):
        return None
