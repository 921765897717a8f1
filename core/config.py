"""Config files: YAML with ``application:`` or ``environments:``.

A file holds either one ``application:`` section or an ``environments:``
mapping with any of ``dev``, ``test``, ``acc`` and ``prod`` (or both). The
chosen section is validated into one frozen, typed object (a
``msgspec.Struct``) at the edge and passed down; nothing else reads the file.
Unknown keys and wrong types are errors naming the key and the file.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import yaml

from core.errors import ConfigError

ENVIRONMENTS = ("dev", "test", "acc", "prod")
APPLICATION = "application"

T = TypeVar("T")

_UNKNOWN = re.compile(r"unknown field `(?P<field>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"^`(?P<field>\w+)`: ")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A validated config section and where it came from."""

    config: T
    file: Path
    section: str  # "application" or the environment's name
    # keys of the reference the schema accepts and does not use (``unused_keys``), each a
    # warning naming the key and why
    warnings: tuple[str, ...] = ()


def _dotted(prefix: str, path: str) -> str:
    # msgspec paths look like ".logging.level" or "[0].name"
    path = path.lstrip(".")
    return f"{prefix}.{path}" if path else prefix


def validate(data: Any, schema: type[T], *, file: str, prefix: str) -> T:
    """Convert plain data into ``schema``, translating errors to ConfigError."""
    try:
        return msgspec.convert(data, schema, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        unknown = _UNKNOWN.search(text)
        if unknown:
            key = _dotted(_dotted(prefix, unknown.group("path") or ""), unknown.group("field"))
            raise ConfigError("unknown key", file=file, key=key) from None
        at = _AT.search(text)
        key = _dotted(prefix, at.group("path")) if at else prefix
        message = _AT.sub("", text)
        named = _NAMED.match(message)  # a struct's own check names its field: "`hub`: …"
        if named:
            key, message = _dotted(key, named.group("field")), message[named.end():]
        raise ConfigError(message, file=file, key=key) from None


def read_yaml(path: Path) -> Any:
    """Read a YAML file; a missing, unreadable or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", file=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}{where}", file=str(path)) from None


def select_section(data: Any, file: str, environment: str | None) -> tuple[str, dict[str, Any]]:
    """Pick the section to use: ``application`` or one environment."""
    if data is None:
        raise ConfigError("config file is empty", file=file)
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping with 'application' or 'environments'", file=file)
    unknown = sorted(str(k) for k in data if k not in (APPLICATION, "environments"))
    if unknown:
        raise ConfigError(
            "unknown key (the top level holds only 'application' and 'environments')",
            file=file,
            key=unknown[0],
        )
    data = {k: v for k, v in data.items() if v != ELIDED}
    envs = data.get("environments")
    if isinstance(envs, dict):
        envs = {k: v for k, v in envs.items() if v != ELIDED}
    if envs is not None:
        if not isinstance(envs, dict):
            raise ConfigError("must be a mapping of dev/test/acc/prod", file=file, key="environments")
        for name in envs:
            if name not in ENVIRONMENTS:
                raise ConfigError(
                    f"unknown environment (expected one of {', '.join(ENVIRONMENTS)})",
                    file=file,
                    key=f"environments.{name}",
                )
    envs = envs or {}
    if environment == APPLICATION and APPLICATION not in data:
        raise ConfigError(f"the config has no '{APPLICATION}' section (environments: "
                          f"{', '.join(envs) or 'none'})", file=file)
    if environment and environment != APPLICATION:
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"unknown environment '{environment}' (expected {APPLICATION} or one of "
                f"{', '.join(ENVIRONMENTS)})",
                file=file,
            )
        if environment not in envs:
            available = ", ".join(envs) or "none"
            raise ConfigError(
                f"environment '{environment}' is not defined (defined: {available})", file=file
            )
        return environment, _section(envs[environment], file, f"environments.{environment}")
    if APPLICATION in data:
        return APPLICATION, _section(data[APPLICATION], file, APPLICATION)
    if len(envs) == 1:
        name = next(iter(envs))
        return name, _section(envs[name], file, f"environments.{name}")
    if not envs:
        raise ConfigError("config has neither 'application' nor any environment", file=file)
    raise ConfigError(
        f"several environments are defined ({', '.join(envs)}); choose one with --environment",
        file=file,
    )


ELIDED = "..."  # the reference's example writes ``application: ...`` for "left out here"


def _section(value: Any, file: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping", file=file, key=key)
    return value


def load(path: Path, schema: type[T], environment: str | None = None) -> Loaded[T]:
    """Read ``path`` and validate the chosen section into ``schema``.

    A key in the schema's ``unused_keys`` (a mapping of key to why it is not used) is
    taken out before validating, whatever its value, and becomes a warning."""
    data = read_yaml(path)
    name, section = select_section(data, str(path), environment)
    prefix = APPLICATION if name == APPLICATION else f"environments.{name}"
    unused: dict[str, str] = getattr(schema, "unused_keys", {})
    warnings = tuple(f"{path}: key '{prefix}.{key}' is accepted and not used: {why}"
                     for key, why in unused.items() if key in section)
    section = {k: v for k, v in section.items() if k not in unused}
    return Loaded(validate(section, schema, file=str(path), prefix=prefix), path, name,
                  warnings)


def to_plain(obj: Any) -> Any:
    """A Struct as plain builtins (for writing back to YAML)."""
    return msgspec.to_builtins(obj)


def write_atomic(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    """Write ``content`` to ``path`` atomically: temp file (``mode`` from its first byte),
    fsync, rename. A crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode) if hasattr(os, "fchmod") else None
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode() if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(section: dict[str, Any]) -> str:
    """YAML text of a config file with one ``application:`` section."""
    return yaml.safe_dump({APPLICATION: section}, sort_keys=False, default_flow_style=False)
