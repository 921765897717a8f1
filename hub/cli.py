"""``ferry hub …``: what differs for a hub instance."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import config as configfile
from core.errors import ConfigError
from core.lifecycle import Service
from core.paths import InstancePaths, Kind, find_instance
from hub.config import HubConfig

if TYPE_CHECKING:  # loaded by the verbs that use them (see _admin_session)
    from hub.admin import AdminSession
    from hub.importer import Report


class HubKind:
    kind: Kind = "hub"
    schema = HubConfig

    def add_new_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, help="port to listen on (default 7700; 0: any)")
        parser.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--description", help="what this hub is for")
        parser.add_argument("--uri", help="database URI (default sqlite:///hub.sqlite in the "
                            "data folder; postgresql://user:pass@host/db)")
        parser.add_argument("--type", choices=("dev", "test", "acc", "prod"),
                            help="environment type (test: day-long tokens)")

    def new_section(self, args: argparse.Namespace,
                    ask: Callable[[str, str | None, bool], str]) -> dict[str, Any]:
        interactive = not args.no_input and sys.stdin.isatty()
        section: dict[str, Any] = {}
        description = args.description
        if description is None and interactive:
            description = ask("description", "Ferry hub", False)
        section["description"] = description or ""
        if args.type:
            section["type"] = args.type
        ip = args.ip or (ask("address to listen on", "127.0.0.1", False) if interactive
                         else "127.0.0.1")
        section["ip"] = ip
        port: Any = args.port
        if port is None and interactive:
            port = ask("port", "7700", False)
        try:
            section["port"] = int(port) if port is not None else 7700
        except ValueError:
            raise ConfigError(f"--port must be a number, got {port!r}") from None
        if not 0 <= section["port"] <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {section['port']}")
        section["uri"] = args.uri or "sqlite:///hub.sqlite"
        section["logging"] = {"level": "INFO", "use_console": True, "backup_count": 5,
                              "max_size": 1024}
        return section

    def service(self, loaded: configfile.Loaded[Any], paths: InstancePaths, system: bool,
                on_ready: Callable[[dict[str, Any]], None]) -> Service:
        from hub.server import HubServer  # CLI entry point: the server, for ``start`` only

        return HubServer(loaded.config, loaded.section, paths.data_dir, name=paths.name,
                         on_ready=on_ready)

    def drain_timeout(self, loaded: configfile.Loaded[Any]) -> float:
        cfg: HubConfig = loaded.config
        return cfg.shutdown_timeout

    def describe(self, info: dict[str, Any], paths: InstancePaths) -> list[str]:
        lines = [f"url:      {info['url']}{info.get('api', '/api/v1')}",
                 f"log:      {info.get('log_file')}"]
        if info.get("accsyn_port"):
            lines.append(f"accsyn:   port {info['accsyn_port']} (TLS), workspace {paths.name} "
                         "(docs/ACCSYN.md)")
        secret = info.get("root_password_file")
        if secret:
            password = Path(secret).read_text().strip()
            lines.append(f"root password: {password}  (shown once; also in {secret}, readable "
                         "by its owner only)")
        return lines

    def extra_verbs(self) -> dict[str, tuple[Callable[[argparse.Namespace], int], str,
                                             Callable[[argparse.ArgumentParser], None]]]:
        def import_args(p: argparse.ArgumentParser) -> None:
            p.add_argument("file", type=Path, metavar="FILE",
                           help="YAML with organizations (and their users) and collaborations "
                           "(and their participants' node keys)")

        def shell_args(p: argparse.ArgumentParser) -> None:
            p.add_argument("-c", dest="command", metavar="CODE",
                           help="run this Python code with db.* instead of a prompt")

        return {
            "import": (cmd_import, "import organizations, users, collaborations and nodes "
                       "from a YAML file, in one transaction", import_args),
            "shell": (cmd_shell, "a Python shell on the hub's database (db.Organization, "
                      "db.User, …), checked as the API checks", shell_args),
        }

    def running_version(self, info: dict[str, Any]) -> str | None:
        try:
            with urllib.request.urlopen(f"{info['url']}{info.get('api', '/api/v1')}/version",
                                        timeout=5) as resp:
                data = json.load(resp)
            return f"{data['version']} (protocol {data['protocol']}) at {info['url']}"
        except (OSError, ValueError, KeyError):
            return None


def _admin_session(args: argparse.Namespace) -> AdminSession:
    """The root user's session on the database of the hub instance the flags point at."""
    # CLI entry point: ``ferry`` builds its parser for every command, so the hub's storage
    # and entities load only when an admin verb runs
    from hub.admin import AdminSession

    paths = find_instance("hub", args.name, args.system, args.config)
    loaded = configfile.load(paths.config_file, HubConfig, args.environment)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return AdminSession(loaded.config, loaded.section, paths.data_dir)


def cmd_import(args: argparse.Namespace) -> int:
    from hub.importer import ImportFailed, import_file  # CLI entry point (see above)

    session = _admin_session(args)

    async def run() -> Report:
        await session.open()
        try:
            for line in session.made.lines():
                print(line, flush=True)
            return await import_file(session, args.file)
        finally:
            await session.close()

    try:
        report = asyncio.run(run())
    except ImportFailed as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from hub.shell import run_shell  # CLI entry point (see above)

    return run_shell(_admin_session(args), script=args.command)
