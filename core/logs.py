"""Logging: structlog on top of the standard library's handlers.

The config keys are those of the reference (``level``, ``file``,
``use_console``, ``backup_count``, ``max_size`` in kB, ``format``,
``datefmt``). ``format`` and ``datefmt`` shape each line the way
``logging.Formatter`` does; structlog renders the event and its key/value
pairs into ``%(message)s``.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Literal

import msgspec
import structlog

from core.errors import ConfigError

Level = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]

DEFAULT_FORMAT = "%(asctime)s - %(name)-14s - %(levelname)-8s - %(message)s"
DEFAULT_DATEFMT = "%Y-%m-%d %H:%M:%S"


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``logging:`` section of a hub or agent config."""

    level: Level = "INFO"
    file: str | None = None  # relative names are placed in the instance's log folder
    use_console: bool = True
    backup_count: int = 5
    max_size: int = 1024  # kB per file before rotating
    format: str = DEFAULT_FORMAT
    datefmt: str = DEFAULT_DATEFMT


_shared_processors: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
]


def _formatter(cfg: LoggingConfig) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
        ],
        foreign_pre_chain=_shared_processors,
        fmt=cfg.format,
        datefmt=cfg.datefmt,
    )


def setup(cfg: LoggingConfig, log_dir: Path | None, default_file: str | None,
          *, console: bool | None = None) -> Path | None:
    """Configure logging for this process; returns the log file in use, if any.

    ``console`` overrides ``use_console`` (a background instance has no
    console; ``--attach`` forces one).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(cfg.level)
    try:
        formatter = _formatter(cfg)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a valid log format: {exc}", key="logging.format") from None

    log_file: Path | None = None
    name = cfg.file or default_file
    if name and log_dir is not None:
        log_file = Path(name) if Path(name).is_absolute() else log_dir / name
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            file_handler = logging.handlers.RotatingFileHandler(
                log_file,
                maxBytes=max(cfg.max_size, 1) * 1024,
                backupCount=cfg.backup_count,
                encoding="utf-8",
            )
            log_file.chmod(0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write log file {log_file}: {exc.strerror or exc}",
                              key="logging.file") from None
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)

    if cfg.use_console if console is None else console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)

    # aiohttp's access log is one line per request: far too chatty for agents
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return log_file
