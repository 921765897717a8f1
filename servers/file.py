"""The servers database's file through its life: created at first use, upgraded,
repaired, read, and changed under its lock.

Reading needs no lock (files are replaced whole, store.py) unless the file must be
created, upgraded or repaired: then that happens once, under the lock, and is written
at once. A change is a read-modify-write under the lock. A folder we may not write
(the system database, for a user) is used read-only, as this Ferry would settle it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from servers.errors import ServersError
from servers.model import Server
from servers.store import Unreadable, locked, move_aside, read_json, save_aside, write_json
from servers.upgrade import FORMAT, Corrupt, Document, Settled, backup_record, settle

log = structlog.get_logger("ferry.servers")


class ServersFile:
    """The file at ``path`` as this package's predefined servers want it; what the user
    must know goes to ``warn``."""

    def __init__(self, path: Path, package: Sequence[Server], package_set: str, *,
                 lock_timeout: float, system: bool, warn: Callable[[str], None]) -> None:
        self.path = path
        self.package = package
        self.package_set = package_set
        self.lock_timeout = lock_timeout
        self.system = system
        self._warn = warn

    def _fresh(self) -> Document:
        empty = {"format": FORMAT, "predefined_set": self.package_set, "servers": []}
        return settle(empty, self.package, self.package_set).document

    def _settle(self, raw: Any) -> Settled:
        return settle(raw, self.package, self.package_set)

    def read(self) -> Document:
        """The database as it is, settled; a file that needs creating, repairing or
        upgrading is fixed (and written) under the lock first."""
        try:
            raw = read_json(self.path)
            settled = self._settle(raw)
            if not settled.removed and settled.document.encode() == raw:
                return settled.document
        except (FileNotFoundError, Unreadable, Corrupt):
            pass
        try:
            with locked(self.path, self.lock_timeout):
                return self._load_locked()
        except PermissionError as exc:
            self._warn(f"cannot update the servers database {self.path} ({exc.strerror}); "
                       "using it read-only as this Ferry reads it")
            try:
                return self._settle(read_json(self.path)).document
            except (FileNotFoundError, Unreadable, Corrupt):
                return self._fresh()

    @contextlib.contextmanager
    def change(self) -> Iterator[Document]:
        """The database to change in place, under the lock; written if it changed.
        Nothing is written when the block raises."""
        try:
            with locked(self.path, self.lock_timeout):
                doc = self._load_locked()
                before = doc.encode()
                yield doc
                if doc.encode() != before:
                    write_json(self.path, doc.encode())
        except PermissionError as exc:
            hint = " (the system database is written by root)" if self.system else ""
            raise ServersError(f"cannot write the servers database {self.path}: "
                               f"{exc.strerror or exc}{hint}") from None

    def _load_locked(self) -> Document:
        try:
            raw = read_json(self.path)
        except FileNotFoundError:
            doc = self._fresh()
            write_json(self.path, doc.encode())
            log.info("created the servers database", file=str(self.path))
            return doc
        except Unreadable as exc:
            return self._start_again(str(exc))
        try:
            settled = self._settle(raw)
        except Corrupt as exc:
            return self._start_again(str(exc))
        for note in settled.notes:
            self._warn(note)
        if settled.removed:
            # the backup is written before the database, so a crash between the two
            # repeats the upgrade rather than losing the servers
            backup = save_aside(self.path, "removed", backup_record(raw, settled.removed))
            for entry, why in settled.removed:
                label = f"'{entry['name']}'" if isinstance(entry, dict) and "name" in entry \
                    else "an entry"
                self._warn(f"server {label} was removed from the servers database: {why}; its "
                           f"definition is saved in {backup}: define it again ('ferry servers "
                           "add')")
        if settled.upgraded:
            log.info("upgraded the servers database", file=str(self.path),
                     old_format=settled.old_format, format=FORMAT)
        doc = settled.document
        if settled.removed or doc.encode() != raw:
            write_json(self.path, doc.encode())
        return doc

    def _start_again(self, why: str) -> Document:
        aside = move_aside(self.path, "corrupt")
        self._warn(f"the servers database {self.path} could not be used: {why}; it was moved to "
                   f"{aside} and a new one was made: add your servers again")
        doc = self._fresh()
        write_json(self.path, doc.encode())
        return doc
