"""What goes wrong when files move, as one tree; the message of each says why, for the
task's report::

    TransferError         a file cannot be read, written or moved
     ├── ChunkCorrupt     bytes that do not match their hash (fetched or sent again)
     ├── SourceChanged    the source file changed while it was sent
     ├── DiskFull         the destination's disk has no room for it
     ├── TooLarge         a file listed as small is no longer: it travels in chunks
     └── PeerLied         the other agent answered what no honest peer would (more bytes
                          than asked, a chunk of another length, an answer that never ends
                          or drips, a listing over the quota): the transfer fails at once

``PathRefused`` (``protocol.paths``) is apart: a path that is not allowed, or a share's
folder swapped for a symlink under a running transfer (``transports.beneath``).

The endpoint's connections fail in ways of their own, never a task's report (the
endpoint answers, or closes the connection)::

    WireError             a connection that did not carry a request or its answer
     ├── Disconnected     the peer closed it, or the socket failed
     ├── TooSlow          a read or a write past its deadline
     └── Malformed        what arrived is not HTTP/1.1 (answered 400, then closed)
"""

from __future__ import annotations

from core.errors import FerryError


class TransferError(FerryError):
    """A file cannot be read or written; the message says why, for the task's report."""


class ChunkCorrupt(TransferError):
    pass


class SourceChanged(TransferError):
    pass


class DiskFull(TransferError):
    pass


class TooLarge(TransferError):
    """A file listed as small is no longer: it must travel in chunks."""


class PeerLied(TransferError):
    """The other agent's answer breaks the protocol or this agent's quotas: not retried
    (an honest peer never sends it), and counted as a refusal of that peer."""


TOO_LARGE = "send it in chunks"  # ends the answer's error for such a file


class WireError(FerryError):
    """A connection of the endpoint that did not carry a request or its answer."""


class Disconnected(WireError):
    """The peer closed the connection (or the socket failed) before the request or its
    answer was whole."""


class TooSlow(WireError):
    """A read or a write that did not end within its deadline."""


class Malformed(WireError):
    """Bytes that are not an HTTP/1.1 request (its line, its headers, a chunked body's
    framing): answered 400, and the connection is closed."""
