"""The verbs shared by ``ferry hub`` and ``ferry agent``.

``new``, ``start`` (background unless ``--attach``), ``stop`` (drain; ``--force``
kills), ``attach``, ``files``, ``list`` and ``version`` work the same for both;
a ``Kind`` supplies what differs (the config schema, how to build the
service, the questions ``new`` asks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from core.config import APPLICATION, Loaded, dump_yaml, load, validate, write_atomic
from core.errors import ConfigError, FerryError, InstanceError
from core.lifecycle import Service
from core.logs import LoggingConfig
from core.logs import setup as setup_logging
from core.paths import (
    InstancePaths,
    Kind,
    check_name,
    config_dirs,
    default_system,
    find_instance,
    instance_paths,
)
from ferry import __version__
from ferry.instances import (
    follow,
    hold_pid_file,
    read_runtime,
    running_pid,
    start_background,
    stop,
    write_runtime,
)


class KindSpec(Protocol):
    kind: Kind
    schema: type[Any]  # the config section's struct; it has a ``logging`` field

    def add_new_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def new_section(self, args: argparse.Namespace, ask: Callable[[str, str | None, bool], str]
                    ) -> dict[str, Any]: ...

    def service(self, loaded: Loaded[Any], paths: InstancePaths, system: bool,
                on_ready: Callable[[dict[str, Any]], None]) -> Service: ...

    def drain_timeout(self, loaded: Loaded[Any]) -> float: ...

    def describe(self, info: dict[str, Any], paths: InstancePaths) -> list[str]: ...

    def running_version(self, info: dict[str, Any]) -> str | None: ...


def add_common(parser: argparse.ArgumentParser, *, environment: bool = True) -> None:
    parser.add_argument("--name", help="instance name (default: the only one configured)")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--system", dest="system", action="store_true", default=None,
                       help="system-level instance (default when root)")
    level.add_argument("--user", dest="system", action="store_false",
                       help="user-level instance (default when not root)")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file to use instead of the instance's default one")
    if environment:
        parser.add_argument("-e", "--environment", metavar="ENV",
                            help="section of the config: application, dev, test, acc or prod")


def _system(args: argparse.Namespace) -> bool:
    return default_system() if args.system is None else bool(args.system)


def resolve(spec: KindSpec, args: argparse.Namespace) -> InstancePaths:
    """The instance the flags point at."""
    return find_instance(spec.kind, args.name, args.system, args.config)


def _ask(interactive: bool) -> Callable[[str, str | None, bool], str]:
    def ask(question: str, default: str | None, secret: bool) -> str:
        if not interactive:
            raise ConfigError(f"missing value: {question} (give it as a flag)")
        prompt = f"{question}" + (f" [{default}]" if default else "") + ": "
        while True:
            if secret:
                import getpass

                answer = getpass.getpass(prompt)
            else:
                answer = input(prompt)
            answer = answer.strip() or (default or "")
            if answer:
                return answer
            print("  a value is required", file=sys.stderr)

    return ask


def cmd_new(spec: KindSpec, args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and not args.no_input
    ask = _ask(interactive)
    # as every other verb: without --name, a --config file's name is the instance's
    name = args.name or (args.config.stem if args.config else None) or (
        ask(f"name of the new {spec.kind}", None, False) if interactive else None)
    if not name:
        raise ConfigError("missing --name (or --config FILE: its name is the instance's)")
    paths = instance_paths(spec.kind, check_name(name), _system(args),
                           args.config.expanduser() if args.config else None)
    if paths.config_file.exists() and not args.force:
        raise InstanceError(f"{paths.config_file} already exists (use --force to overwrite)")
    section = spec.new_section(args, ask)
    text = dump_yaml(section)
    # validate what would be written, as it will be read back, so a bad flag never leaves a bad file
    validate(yaml.safe_load(text)[APPLICATION], spec.schema, file=str(paths.config_file),
             prefix=APPLICATION)
    write_atomic(paths.config_file, text, mode=0o600)
    print(f"created {spec.kind} '{paths.name}' ({paths.level} level): {paths.config_file}")
    print(f"start it with: ferry {spec.kind} start --name {paths.name}"
          + (" --user" if not paths.system and default_system() else "")
          + (" --system" if paths.system and not default_system() else "")
          + (f" --config {paths.config_file}" if args.config else ""))
    return 0


def _child_argv(spec: KindSpec, args: argparse.Namespace, paths: InstancePaths) -> list[str]:
    argv = [sys.executable, "-m", "ferry", spec.kind, "start", "--attach", "--background",
            "--name", paths.name, "--system" if paths.system else "--user",
            "--config", str(paths.config_file)]
    if args.environment:
        argv += ["--environment", args.environment]
    return argv


def cmd_start(spec: KindSpec, args: argparse.Namespace) -> int:
    # the hub's database holds its token secret, logs may hold hashes: owner only
    os.umask(0o077)
    paths = resolve(spec, args)
    # config errors surface before anything starts
    loaded = load(paths.config_file, spec.schema, args.environment)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if not args.attach:
        info = start_background(_child_argv(spec, args, paths), paths)
        print(f"{spec.kind} '{paths.name}' started (pid {info['pid']})")
        for line in spec.describe(info, paths):
            print(f"  {line}")
        return 0
    cfg: LoggingConfig = loaded.config.logging
    log_file = setup_logging(cfg, paths.log_dir, f"{paths.name}.log",
                             console=not args.background)
    with hold_pid_file(paths):
        def on_ready(info: dict[str, Any]) -> None:
            info = {**info, "name": paths.name, "log_file": str(log_file) if log_file else None,
                    "config_file": str(paths.config_file)}
            write_runtime(paths, info)
            if not args.background:
                print(f"{spec.kind} '{paths.name}' running (pid {info['pid']}); Ctrl-C stops it")
                for line in spec.describe(info, paths):
                    print(f"  {line}", flush=True)

        service = spec.service(loaded, paths, paths.system, on_ready)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(service.serve())
    return 0


def cmd_stop(spec: KindSpec, args: argparse.Namespace) -> int:
    paths = resolve(spec, args)
    timeout = args.timeout
    if timeout is None:
        try:
            timeout = spec.drain_timeout(load(paths.config_file, spec.schema, args.environment)) + 15
        except ConfigError:
            timeout = 75.0
    pid = stop(paths, force=args.force, timeout=timeout)
    print(f"{spec.kind} '{paths.name}' {'killed' if args.force else 'stopped'} (pid {pid})")
    return 0


def cmd_attach(spec: KindSpec, args: argparse.Namespace) -> int:
    paths = resolve(spec, args)
    info = read_runtime(paths) or {}
    log_file = Path(info["log_file"]) if info.get("log_file") else paths.log_dir / f"{paths.name}.log"
    if not log_file.exists():
        raise InstanceError(f"no log file yet at {log_file}; is the {spec.kind} started?")
    follow(log_file)
    return 0


def cmd_files(spec: KindSpec, args: argparse.Namespace) -> int:
    paths = resolve(spec, args)
    info = read_runtime(paths) or {}
    rows = [("config file", paths.config_file), ("data folder", paths.data_dir),
            ("log file", info.get("log_file") or paths.log_dir / f"{paths.name}.log"),
            ("output file", paths.output_file), ("pid file", paths.pid_file),
            ("runtime file", paths.runtime_file)]
    for label, value in rows:
        print(f"{label:<13} {value}")
    return 0


def cmd_list(spec: KindSpec, args: argparse.Namespace) -> int:
    rows = []
    for level, folder in config_dirs(spec.kind):
        if not folder.is_dir():
            continue
        for config in sorted(folder.glob("*.yaml")):
            paths = instance_paths(spec.kind, config.stem, level == "system")
            pid = running_pid(paths)
            info = read_runtime(paths) or {}
            where = (info.get("url") or info.get("status_url") or "") if pid else ""
            rows.append((config.stem, level, f"running (pid {pid})" if pid else "stopped",
                         where))
    if not rows:
        print(f"no {spec.kind}s configured; create one with 'ferry {spec.kind} new'")
        return 0
    widths = [max(len(str(r[i])) for r in [("NAME", "LEVEL", "STATUS", "ADDRESS"), *rows])
              for i in range(4)]
    for row in [("NAME", "LEVEL", "STATUS", "ADDRESS"), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_version(spec: KindSpec, args: argparse.Namespace) -> int:
    print(f"ferry {__version__}")
    if args.name or args.config:
        paths = resolve(spec, args)
        info = read_runtime(paths) if running_pid(paths) else None
        if info is None:
            print(f"{spec.kind} '{paths.name}': not running")
        else:
            print(f"{spec.kind} '{paths.name}': {spec.running_version(info) or 'unknown'}")
    return 0


COMMANDS = {
    "new": (cmd_new, "create a config file (asks on a terminal, else takes flags)"),
    "start": (cmd_start, "start in the background (or in this terminal with --attach)"),
    "stop": (cmd_stop, "stop gracefully (drain); --force kills"),
    "attach": (cmd_attach, "follow the log of a running instance"),
    "files": (cmd_files, "show the files an instance uses"),
    "list": (cmd_list, "list configured instances and whether they run"),
    "version": (cmd_version, "show the version (and a running instance's)"),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], spec: KindSpec,
             help_text: str) -> None:
    parser = sub.add_parser(spec.kind, help=help_text, description=help_text)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for verb, (func, text) in COMMANDS.items():
        p = verbs.add_parser(verb, help=text, description=text)
        add_common(p, environment=verb in ("start", "stop"))
        if verb == "new":
            p.add_argument("--force", action="store_true", help="overwrite an existing config")
            p.add_argument("--no-input", action="store_true",
                           help="never ask questions, even on a terminal")
            spec.add_new_arguments(p)
        if verb == "start":
            p.add_argument("--attach", action="store_true",
                           help="run in this terminal, logging to the console")
            p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
        if verb == "stop":
            p.add_argument("--force", action="store_true", help="kill at once, no drain")
            p.add_argument("--timeout", type=float, metavar="SECONDS",
                           help="how long to wait for the drain (default: drain deadline + 15 s)")
        p.set_defaults(func=lambda args, f=func: f(spec, args))
    # verbs of one kind only (``ferry hub import``, ``ferry hub shell``)
    for verb, (func, text, configure) in getattr(spec, "extra_verbs", dict)().items():
        p = verbs.add_parser(verb, help=text, description=text)
        add_common(p)
        configure(p)
        p.set_defaults(func=lambda args, f=func: f(args))


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: how a shell reports a tool whose reader went away


def _reader_gone() -> bool:
    """Whether what reads our standard output closed it (a pipe's write end then polls as
    an error); False where that cannot be told (no ``poll``: Windows)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        code = func(args)
        sys.stdout.flush()  # a reader that went away is found here, not at exit
        return code
    except BrokenPipeError as exc:
        if not _reader_gone():  # another pipe broke (a hub's connection): an error as any
            print(f"error: {exc.strerror or exc}", file=sys.stderr)
            return 1
        # ``ferry … | head -1``: the reader had enough. Say nothing, as Unix tools do, and
        # point stdout at nothing so that the interpreter's last flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return SIGPIPE_EXIT
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FerryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a folder or file the OS refuses us
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
