"""The hubs ("servers") clients name: their definitions, statuses, caches and tokens.

See db.py for the rules (servers-database.rst) and cli.py for ``ferry servers``.
"""

from servers.db import CACHE_KEYS, ServersDB, answered
from servers.errors import ServersError
from servers.model import CacheEntry, Server, ServiceAccess, Status, require
from servers.predefined import PREDEFINED
from servers.protocols import PROTOCOLS, Protocol
from servers.secrets import SecretStore

__all__ = ["CACHE_KEYS", "PREDEFINED", "PROTOCOLS", "CacheEntry", "Protocol", "SecretStore",
           "Server", "ServersDB", "ServersError", "ServiceAccess", "Status", "answered",
           "require"]
