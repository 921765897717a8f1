"""The servers that ship with the package, and the fingerprint of that set.

Change ``PREDEFINED`` and every servers database is upgraded at its next use
(upgrade.py): predefined servers are replaced by these, names that disappear stay
reserved, and a user-defined server whose name becomes predefined is renamed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from servers.model import Server

# the embedded hub's address with hub/config.py's defaults (ip 127.0.0.1, port 7700)
LOCAL_HUB = "http://127.0.0.1:7700"

PREDEFINED: tuple[Server, ...] = (
    Server.define("local", LOCAL_HUB, predefined=True),
)


def predefined_set(servers: Iterable[Server]) -> str:
    """A fingerprint of the definitions (not the statuses) of ``servers``: a database
    stamped with another one was written for another predefined list."""
    definitions = [[s.name, s.authentication.url, s.authentication.protocol,
                    s.application.url, s.application.protocol] for s in servers]
    text = json.dumps(definitions, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
