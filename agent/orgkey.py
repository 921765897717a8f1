"""The organization's key pair, on a node of a collaboration.

The private key lives in a file only the agent's user reads (``organization_key_file``,
by default ``organization-key.pem`` in the agent's data folder); the hub keeps the public
half in ``Organization.public_key``. At enrollment the agent compares them:

* no key anywhere: it makes one and publishes its public half;
* a key here, none at the hub: it publishes this one;
* the same key: nothing to do;
* a key at the hub but not here, or another one here: it says so, loudly, and runs no
  sealed work. It never replaces the organization's key: runs sealed for that key
  would open for nobody. Copy the key file from the node that published it.

Each enrollment answer's word on the collaboration (is it encrypted?) is also pinned,
when the node runs docker work (``pins``, agent/pins.py): the hub is held to it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from agent.hubclient import HubClient, Retryable
from agent.pins import Pins
from core.errors import ApiError
from protocol import EnrollResponse, OrganizationKeyRequest, sealing

log = structlog.get_logger("agent.orgkey")

KEY_FILE = "organization-key.pem"


class OrgKey:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.private: bytes | None = None
        self.organization: str | None = None
        self.public: str | None = None  # the public half of ``private``
        self.problem: str | None = None  # why sealed work cannot run here
        self.pins: Pins | None = None  # where enrollments are pinned (set by docker runs)

    @property
    def ready(self) -> bool:
        return self.private is not None and self.problem is None

    def status(self) -> dict[str, object]:
        return {"organization": self.organization, "file": str(self.path),
                "ready": self.ready, "problem": self.problem}

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, pem: bytes) -> None:
        """Owner-only from the first byte; never over an existing file."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())

    async def settle(self, hub: HubClient, answer: EnrollResponse) -> None:
        """Compare the key here with the one the hub publishes; publish one when the hub
        has none. Problems are kept in ``problem`` and logged as errors."""
        self.organization = answer.organization
        if answer.organization is None or answer.collaboration is None:
            return  # not a node of a collaboration: no key needed
        if self.pins is not None:  # first: runs are held to it from now on
            try:
                warning = await asyncio.to_thread(self.pins.enrolled, answer.collaboration,
                                                  answer.encrypted)
            except OSError as exc:  # not pinned: runs are refused until it is
                warning = f"cannot write {self.pins.path}: {exc.strerror or exc}"
            if warning:
                log.warning("the hub's word on the collaboration differs from the pin",
                            problem=warning)
        try:
            local = await asyncio.to_thread(self._read)
        except OSError as exc:
            self._fail(f"cannot read the organization key file {self.path}: "
                       f"{exc.strerror or exc}")
            return
        published = answer.organization_key
        if local is None and published:
            self._fail(f"organization {answer.organization} has a published key, but this node "
                       f"has no private key at {self.path}: copy the organization key file from "
                       "the node that published it (Ferry never replaces an organization's key)")
            return
        if local is None:
            local = await asyncio.to_thread(sealing.new_private_key)
            try:
                await asyncio.to_thread(self._write, local)
            except FileExistsError:  # another agent of this data folder was quicker
                local = await asyncio.to_thread(self.path.read_bytes)
            log.info("made the organization's key pair", organization=answer.organization,
                     file=str(self.path))
        try:
            mine = sealing.public_key(local)
        except sealing.SealError as exc:
            self._fail(f"{self.path}: {exc}")
            return
        if published and not sealing.same_key(local, published):
            self._fail(f"key mismatch: the private key at {self.path} is not the one whose "
                       f"public half organization {answer.organization} published; this node "
                       "runs no sealed work until the right key file is in place (Ferry never "
                       "replaces an organization's key)")
            return
        if not published:
            try:
                await hub.request("POST", "/agent/organization_key",
                                  OrganizationKeyRequest(public_key=mine), dict, attempts=5)
            except (ApiError, Retryable) as exc:  # another node published first, or no hub
                self._fail(f"could not publish the organization's public key: {exc}")
                return
            log.info("published the organization's public key", organization=answer.organization)
        self.private, self.public, self.problem = local, mine, None

    def _fail(self, problem: str) -> None:
        self.private, self.public, self.problem = None, None, problem
        log.error("organization key", problem=problem)
