"""Where a server's token is kept: never in servers.json.

The OS keyring (the ``keyring`` package: Secret Service, macOS Keychain, Windows
Credential Locker) when a real one is there; otherwise a JSON file next to the
database that only its owner reads (0600 from its first byte, replaced atomically).
A machine without a desktop session, a server or a container, usually has no keyring,
so the file is the common case there; ``where`` says which one is in use.

The backend is chosen at first use, not when the store is made: ``"auto"`` asks
keyring for its choice and keeps it unless it is one that stores nothing (the
``fail`` or ``null`` backends, or a chainer with nothing to chain). Tests pass a
backend, or ``None`` for the file, and never reach the user's keyring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import keyring
import keyring.errors
import structlog
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from servers.errors import ServersError
from servers.store import Unreadable, locked, move_aside, read_json, write_json

log = structlog.get_logger("ferry.servers")

FILE_FORMAT = 1


def usable(backend: KeyringBackend) -> bool:
    """Whether ``backend`` really keeps secrets (keyring falls back to ones that don't)."""
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return bool(backend.backends)
    return True


class SecretStore:
    """Tokens by server name, in the OS keyring or in an owner-only file."""

    def __init__(self, file: Path, *, service: str = "ferry servers",
                 backend: KeyringBackend | Literal["auto"] | None = "auto",
                 lock_timeout: float = 10.0) -> None:
        self.file = file
        self.service = service  # the keyring's service name; entries are per server
        self.lock_timeout = lock_timeout
        self._choice = backend
        self._backend: KeyringBackend | None = None
        self._chosen = False

    def _keyring(self) -> KeyringBackend | None:
        if not self._chosen:
            choice = keyring.get_keyring() if self._choice == "auto" else self._choice
            self._backend = choice if choice is not None and usable(choice) else None
            self._chosen = True
        return self._backend

    @property
    def where(self) -> str:
        backend = self._keyring()
        if backend is None:
            return f"the file {self.file}"
        return f"the OS keyring ({type(backend).__module__}.{type(backend).__name__})"

    @staticmethod
    def _key(server: str) -> str:
        return server.casefold()  # server names are case-insensitive

    def get(self, server: str) -> str | None:
        backend = self._keyring()
        if backend is None:
            token = self._read(repair=False).get(self._key(server))
            return token if isinstance(token, str) else None
        with self._translate("read"):
            return backend.get_password(self.service, self._key(server))

    def set(self, server: str, token: str) -> None:
        if not token:
            raise ServersError("an empty token cannot be stored")
        backend = self._keyring()
        if backend is None:
            with locked(self.file, self.lock_timeout):
                tokens = self._read()
                tokens[self._key(server)] = token
                self._write(tokens)
            return
        with self._translate("store"):
            backend.set_password(self.service, self._key(server), token)

    def delete(self, server: str) -> None:
        """Forget the token of ``server``; nothing happens when there is none."""
        backend = self._keyring()
        if backend is None:
            if not self.file.exists():
                return
            with locked(self.file, self.lock_timeout):
                tokens = self._read()
                if tokens.pop(self._key(server), None) is not None:
                    self._write(tokens)
            return
        with self._translate("delete"), contextlib.suppress(keyring.errors.PasswordDeleteError):
            backend.delete_password(self.service, self._key(server))

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except keyring.errors.PasswordDeleteError:
            raise
        except keyring.errors.KeyringError as exc:
            raise ServersError(f"the OS keyring could not {action} a server's token: {exc}") \
                from None

    # --- the file

    def _read(self, *, repair: bool = True) -> dict[str, Any]:
        """The tokens in the file; a broken file reads as none, and is moved aside when
        ``repair`` (callers holding the lock)."""
        try:
            raw = read_json(self.file)
            tokens = raw.get("tokens") if isinstance(raw, dict) else None
            why = "it is not a token file"
        except FileNotFoundError:
            return {}
        except Unreadable as exc:
            tokens, why = None, str(exc)
        if isinstance(tokens, dict):
            return dict(tokens)
        if repair:
            # tokens can be had again by logging in; a broken file must not stop that
            aside = move_aside(self.file, "corrupt")
            log.warning("token file unusable, moved aside", file=str(self.file),
                        moved_to=str(aside), why=why)
        return {}

    def _write(self, tokens: dict[str, Any]) -> None:
        write_json(self.file, {"format": FILE_FORMAT, "tokens": tokens}, mode=0o600)
