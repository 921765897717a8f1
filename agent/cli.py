"""``ferry agent …``: what differs for an agent instance."""

from __future__ import annotations

import argparse
import importlib
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig
from core import config as configfile
from core.errors import ConfigError
from core.lifecycle import Service
from core.paths import InstancePaths, Kind
from protocol import ClientType

if TYPE_CHECKING:
    from agent.daemon import Agent

# the daemon (aiohttp, its loops) is loaded only by the command that runs an agent: every
# ``ferry`` command builds its parser from this module
DAEMON = "agent.daemon"


class AgentKind:
    kind: Kind = "agent"
    schema = AgentConfig

    def add_new_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--hub", help="hub URL, e.g. http://127.0.0.1:7700")
        key = parser.add_mutually_exclusive_group()
        key.add_argument("--api-key", help="the node API key from the hub")
        key.add_argument("--api-key-file", help="a file holding the node API key")
        parser.add_argument("--site", help="site at the hub this agent stands at (default: hq)")
        parser.add_argument("--lanes", type=int,
                            help="parallel compute lanes (default: cores; 0: no compute work)")
        parser.add_argument("--status-port", type=int,
                            help="loopback port of /healthz and /status.json (default: any free)")

    def new_section(self, args: argparse.Namespace,
                    ask: Callable[[str, str | None, bool], str]) -> dict[str, Any]:
        section: dict[str, Any] = {}
        section["hub"] = args.hub or ask("hub URL", "http://127.0.0.1:7700", False)
        if args.api_key_file:
            # stored absolute: the agent reads it relative to the config file otherwise
            key_file = Path(args.api_key_file).expanduser().absolute()
            if not key_file.is_file():
                raise ConfigError(f"--api-key-file {key_file} does not exist")
            section["api_key_file"] = str(key_file)
        else:
            section["api_key"] = args.api_key or ask("node API key", None, True)
        if args.site:
            section["site"] = args.site
        if args.lanes is not None:
            if args.lanes < 0:
                raise ConfigError(f"--lanes must be 0 (no compute work) or more, got {args.lanes}")
            section["lanes"] = args.lanes
        if args.status_port is not None:
            if not 0 <= args.status_port <= 65535:
                raise ConfigError(f"--status-port must be between 0 and 65535, got "
                                  f"{args.status_port}")
            section["status_port"] = args.status_port
        section["logging"] = {"level": "INFO", "use_console": True, "backup_count": 5,
                              "max_size": 1024}
        return section

    def service(self, loaded: configfile.Loaded[Any], paths: InstancePaths, system: bool,
                on_ready: Callable[[dict[str, Any]], None]) -> Service:
        agent: type[Agent] = importlib.import_module(DAEMON).Agent
        return agent(loaded.config, paths.name, paths.data_dir,
                     client_type=ClientType.SERVER if system else ClientType.USER_SERVER,
                     config_dir=loaded.file.parent, on_ready=on_ready)

    def drain_timeout(self, loaded: configfile.Loaded[Any]) -> float:
        cfg: AgentConfig = loaded.config
        return cfg.drain_timeout

    def describe(self, info: dict[str, Any], paths: InstancePaths) -> list[str]:
        return [f"hub:    {info.get('hub')}", f"status: {info.get('status_url')}/status.json",
                f"log:    {info.get('log_file')}"]

    def running_version(self, info: dict[str, Any]) -> str | None:
        try:
            with urllib.request.urlopen(f"{info['status_url']}/status.json", timeout=5) as resp:
                data = json.load(resp)
            return f"{data['version']} (client {data.get('client_id')}, {data.get('status')})"
        except (OSError, ValueError, KeyError):
            return None


