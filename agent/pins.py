"""What a node holds the hub to about sealing: pinned once, kept across restarts.

Whether a run's input is sealed, and for which key its result is sealed, come
with each run from the hub. A hub that is wrong, or compromised, could send a
run of an encrypted collaboration as plain text, or name a key of its own as
the initiating organization's and so read the result. The agent therefore pins
(in ``pins.json`` in its docker folder, ``<data>/docker`` unless
``docker.folder`` says otherwise; written atomically):

* ``encrypted``: the collaboration's setting as the enrollment answer gave it.
  Once true it stays true, whatever later answers say, until an operator
  resets the pins: a run sent as unencrypted is refused.
* ``organizations``: the public key of each organization that initiated a
  sealed run here, as first seen (trust on first use). A run that names
  another key for that organization is refused. The node's own organization
  needs no pin: its key is the public half of the private key this node holds.

Resetting the pins is an operator's decision (a legitimate key rotation, a node
moved to a collaboration that is not encrypted): stop the agent, delete the
file, start it. The next enrollment and the next sealed runs pin afresh.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec

from core.config import write_atomic
from protocol import DockerWork, sealing

PIN_FILE = "pins.json"
VERSION = 1


class Pinned(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The file's content (versioned)."""

    version: int = VERSION
    collaboration: str | None = None  # None: no enrollment pinned yet
    encrypted: bool = False
    organizations: dict[str, str] = {}  # organization id: its public key, as first seen


class Pins:
    """The node's pins. Methods that read or write the file block (call them in a
    thread) and may be called from several threads at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pinned: Pinned | None = None  # loaded on first use
        self.problem = ""  # the file cannot be read: every run is refused until it can

    def status(self) -> dict[str, Any]:
        """For status.json (what is in memory; no file access)."""
        pinned = self._pinned or Pinned()
        return {"file": str(self.path), "collaboration": pinned.collaboration,
                "encrypted": pinned.encrypted, "organizations": sorted(pinned.organizations),
                "problem": self.problem or None}

    def enrolled(self, collaboration: str | None, encrypted: bool) -> str:
        """Pin what an enrollment answer says; a warning ('' when none) when it says less
        than what is pinned (the stricter setting is kept)."""
        with self._lock:
            pinned = self._load()
            if pinned is None:
                return self._unreadable()
            warning = ""
            if pinned.encrypted and not encrypted:
                warning = (f"the hub says collaboration {collaboration} is not encrypted; "
                           f"this node enrolled in an encrypted one and keeps it encrypted "
                           f"(pinned in {self.path}) until an operator resets its pins")
            self._save(msgspec.structs.replace(pinned, collaboration=collaboration,
                                               encrypted=pinned.encrypted or encrypted))
            return warning

    def refusal(self, work: DockerWork, own_public: str | None) -> str:
        """Why the hub's word on this run's sealing cannot be taken ('' when it can). The
        key of an initiating organization seen for the first time is pinned (on disk
        before this returns)."""
        with self._lock:
            pinned = self._load()
            if pinned is None:
                return self._unreadable()
            if pinned.collaboration is None:
                return "this node has not pinned its collaboration's settings yet (no " \
                       "enrollment answer seen)"
            if pinned.encrypted and not work.encrypted:
                return (f"the hub sent this run unencrypted, but this node's collaboration "
                        f"was encrypted when it enrolled (pinned in {self.path}); it stays "
                        "encrypted until an operator resets the node's pins")
            if not work.encrypted:
                return ""  # no seal, so no key is used
            if work.initiator == work.organization:
                if own_public is not None and not _same(work.initiator_key, own_public):
                    return (f"the hub names another key for this node's own organization "
                            f"{work.organization} than the one this node holds")
                return ""
            known = pinned.organizations.get(work.initiator)
            if known is None:
                if work.initiator_key:  # trust on first use; without one nothing opens
                    self._save(msgspec.structs.replace(pinned, organizations={
                        **pinned.organizations, work.initiator: work.initiator_key}))
                return ""
            if not _same(work.initiator_key, known):
                return (f"the hub names another key for the initiating organization "
                        f"{work.initiator} than the one this node pinned (in {self.path}); "
                        "after a legitimate key rotation an operator resets the node's pins")
            return ""

    # -- under the lock
    def _load(self) -> Pinned | None:
        if self._pinned is not None or self.problem:
            return self._pinned
        try:
            self._pinned = msgspec.json.decode(self.path.read_bytes(), type=Pinned)
        except FileNotFoundError:
            self._pinned = Pinned()
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problem = str(exc)
            return None
        if self._pinned.version != VERSION:
            self.problem, self._pinned = f"unknown version {self._pinned.version}", None
        return self._pinned

    def _save(self, pinned: Pinned) -> None:
        if pinned != self._pinned:
            write_atomic(self.path, msgspec.json.format(msgspec.json.encode(pinned)))
        self._pinned = pinned

    def _unreadable(self) -> str:
        # failing closed: a damaged file may be a tampered one; the operator decides
        return (f"the pin file {self.path} cannot be read ({self.problem}); an operator "
                "deletes it to pin afresh")


def _same(given: str, pinned: str) -> bool:
    """The same key, however its base64 or PEM text is laid out."""
    return bool(given) and sealing.same_public(given, pinned)
