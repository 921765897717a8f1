"""The one exception of ``servers``, in a module of its own so that every module
of the package (protocols included) can raise it without importing the database."""

from __future__ import annotations

from core.errors import FerryError


class ServersError(FerryError):
    """A server definition, a request to a server, or the servers database is wrong.

    The message names what is wrong and, where there is one, what to do about it;
    the ``ferry`` command prints it as it is.
    """
