"""The hubs ("servers") clients name: their definitions, statuses, caches and tokens.

See db.py for the rules (servers-database.rst) and cli.py for ``ferry servers``.
"""

from ferry.servers.db import CACHE_KEYS, ServersDB, answered
from ferry.servers.errors import ServersError
from ferry.servers.model import CacheEntry, Server, ServiceAccess, Status
from ferry.servers.predefined import PREDEFINED
from ferry.servers.protocols import PROTOCOLS, Protocol, require
from ferry.servers.secrets import SecretStore

__all__ = ["CACHE_KEYS", "PREDEFINED", "PROTOCOLS", "CacheEntry", "Protocol", "SecretStore",
           "Server", "ServersDB", "ServersError", "ServiceAccess", "Status", "answered",
           "require"]
