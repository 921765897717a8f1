"""The Ferry hub: the coordinator agents check in with, and its Python client.

``from hub import Session`` is all a script needs; importing it does not load
the server (SQLAlchemy, aiohttp's server) at all.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.session import Session

__all__ = ["Session"]


def __getattr__(name: str) -> Any:
    if name == "Session":
        # on first use: a hub process, which imports this package too, never loads it
        from hub.session import Session  # noqa: PLC0415 - see above

        return Session
    raise AttributeError(name)
