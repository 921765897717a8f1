"""How the C allocator gives memory back, for a process that moves files on threads.

glibc's malloc adapts its mmap threshold upwards each time a large block is freed, after
which blocks of that size come from the heap and stay with the process once freed; and
it gives each thread an arena of its own, up to eight per core. A transfer's threads
allocate and free buffers of megabytes: with both defaults an agent's resident memory
grows with the transfers it has run, not with what it holds. ``limit_malloc`` fixes the
threshold at 1 MiB (larger blocks are mapped and unmapped) and the arenas at two.
Elsewhere (another libc, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8


def limit_malloc() -> bool:
    """Tune glibc's allocator for this process; True when it was."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 20)) and bool(mallopt(M_ARENA_MAX, 2))
