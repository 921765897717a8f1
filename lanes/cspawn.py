"""``posix_spawn`` through ctypes, so that the GIL is free while the child starts.

``os.posix_spawn`` holds the GIL for the whole call, and with vfork semantics
that includes the child's ``execve``: on a busy host that is most of a
millisecond per task during which no other lane, and not the agent's event
loop, can run Python. A ctypes call releases the GIL. glibc only (the flags
below are its values); anything else keeps ``os.posix_spawn``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import sys

# glibc's flags (spawn.h)
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# Python ignores these, and an ignored signal stays ignored across exec: a task gets the
# default, as a shell would give it (and as subprocess's restore_signals does)
RESET = (signal.SIGPIPE, signal.SIGXFSZ)


class _Opaque(ctypes.Structure):
    # larger than glibc's posix_spawn_file_actions_t (80 bytes), posix_spawnattr_t (336)
    # and sigset_t (128) on every architecture
    _fields_ = [("_", ctypes.c_byte * 1024)]


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        gnu = libc.gnu_get_libc_version
        gnu.restype = ctypes.c_char_p
        major, minor = (int(x) for x in gnu().decode().split(".")[:2])
    except (OSError, AttributeError, ValueError):
        return None
    if (major, minor) < (2, 26):  # POSIX_SPAWN_SETSID came with 2.26
        return None
    libc.posix_spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                 ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.POINTER(ctypes.c_char_p),
                                 ctypes.POINTER(ctypes.c_char_p)]
    return libc


_libc = _load()
AVAILABLE = _libc is not None


_pairs: dict[tuple[str, str], bytes] = {}  # "NAME=value", encoded: most repeat every task


def _pair(name: str, value: str) -> bytes:
    pair = _pairs.get((name, value))
    if pair is None:
        pair = os.fsencode(name) + b"=" + os.fsencode(value)
        if b"\0" in pair:
            raise OSError(errno.EINVAL, f"embedded null byte in the environment ({name})")
        if len(_pairs) >= 4096:  # per-task values (ids, items) would grow it without end
            _pairs.clear()
        _pairs[(name, value)] = pair
    return pair


def _check(err: int) -> None:
    if err:
        raise OSError(err, os.strerror(err))


def posix_spawn(program: str, argv: list[str], env: dict[str, str], stdout: int) -> int:
    """Start ``program`` in a new session: stdin from /dev/null, stdout and stderr to
    ``stdout``, no signal blocked, SIGPIPE and SIGXFSZ at their default; returns its pid.
    Raises OSError like ``os.posix_spawn``."""
    libc = _libc
    assert libc is not None
    args = [os.fsencode(a) for a in argv]
    if any(b"\0" in a for a in args):  # C would cut the string short
        raise OSError(errno.EINVAL, "embedded null byte in the command")
    pairs = [_pair(k, v) for k, v in env.items()]
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    c_env = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
    actions, attr, default, empty = _Opaque(), _Opaque(), _Opaque(), _Opaque()
    ref = ctypes.byref
    _check(libc.posix_spawn_file_actions_init(ref(actions)))
    try:
        _check(libc.posix_spawnattr_init(ref(attr)))
        try:
            _check(libc.posix_spawn_file_actions_addopen(
                ref(actions), 0, os.fsencode(os.devnull), os.O_RDONLY, 0))
            _check(libc.posix_spawn_file_actions_adddup2(ref(actions), stdout, 1))
            _check(libc.posix_spawn_file_actions_adddup2(ref(actions), stdout, 2))
            libc.sigemptyset(ref(default))
            for sig in RESET:
                libc.sigaddset(ref(default), int(sig))
            libc.sigemptyset(ref(empty))
            _check(libc.posix_spawnattr_setsigdefault(ref(attr), ref(default)))
            _check(libc.posix_spawnattr_setsigmask(ref(attr), ref(empty)))
            _check(libc.posix_spawnattr_setflags(
                ref(attr), ctypes.c_short(_SETSID | _SETSIGDEF | _SETSIGMASK)))
            pid = ctypes.c_int()
            err = libc.posix_spawn(ref(pid), os.fsencode(program), ref(actions), ref(attr),
                                   c_argv, c_env)
            if err:
                raise OSError(err, os.strerror(err), program)
            return pid.value
        finally:
            libc.posix_spawnattr_destroy(ref(attr))
    finally:
        libc.posix_spawn_file_actions_destroy(ref(actions))
