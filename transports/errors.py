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
