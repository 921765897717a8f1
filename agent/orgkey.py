"""The organization's key pair, on a node of a collaboration.

The private key lives in a file only the agent's user reads (``organization_key_file``,
by default ``organization-key.pem`` in the agent's data folder); the hub keeps the public
half in ``Organization.public_key``. At enrollment the agent compares them
(agent/collaboration.py):

* no key anywhere: it makes one and publishes its public half;
* a key here, none at the hub: it publishes this one;
* the same key: nothing to do;
* a key at the hub but not here, or another one here: it says so, loudly, and runs no
  sealed work. It never replaces the organization's key: runs sealed for that key
  would open for nobody. Copy the key file from the node that published it.

This module holds the key and its file; it imports no cryptography, so an agent that
is no node of a collaboration never loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("agent.orgkey")

KEY_FILE = "organization-key.pem"


class OrgKey:
    """The key as this node has it: settled (``ready``), or the ``problem`` why not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.private: bytes | None = None
        self.organization: str | None = None
        self.public: str | None = None  # the public half of ``private``
        self.problem: str | None = None  # why sealed work cannot run here

    @property
    def ready(self) -> bool:
        return self.private is not None and self.problem is None

    def status(self) -> dict[str, object]:
        return {"organization": self.organization, "file": str(self.path),
                "ready": self.ready, "problem": self.problem}

    def read(self) -> bytes | None:
        """The key file's bytes; None when there is none. Blocks."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, pem: bytes) -> None:
        """Owner-only from the first byte; never over an existing file. Blocks."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())

    def settled(self, private: bytes, public: str) -> None:
        """The key here is the organization's: sealed work may run."""
        self.private, self.public, self.problem = private, public, None

    def fail(self, problem: str) -> None:
        """No usable key: sealed work is refused, saying ``problem``."""
        self.private, self.public, self.problem = None, None, problem
        log.error("organization key", problem=problem)
