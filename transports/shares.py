"""Where a share path is on this agent's disk, and never outside its share.

The text of the path is checked first (``protocol.paths``); then the disk:
every symlink on the way is followed, and the place it leads to must still
be inside the share's real root. A symlink that stays inside is fine (studios
link shot folders around); one that leads out is refused, whether it is the
file itself or a folder on the way.

Between this check and the moment a file is opened, someone who can write in
the share could swap a folder for a symlink. So files are not opened by the
path ``resolve`` gives: they are reached from the share's root one folder at a
time, none followed if it is a symlink, and opened relative to their folder
(``transports.beneath``; Windows, which has no ``dir_fd``, keeps opening by name).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from protocol.paths import PathRefused, join, share_parts
from transports.beneath import AT, Folder


def resolve(root: Path, path: str | tuple[str, ...],
            folders: dict[tuple[str, ...], Path] | None = None) -> Path:
    """The real, absolute place of ``path`` (text, or parts from ``share_parts``) inside
    the share rooted at ``root``. Parts that do not exist yet are kept as named.

    ``folders`` caches the real places of folders already resolved (one dict per batch of
    files in the same folders): then a file costs one ``lstat``, not a walk of its path.
    """
    parts = share_parts(path, windows=sys.platform == "win32") if isinstance(path, str) \
        else path
    if folders is not None and parts and parts[:-1] in folders:
        candidate = folders[parts[:-1]] / parts[-1]
        try:
            if not os.path.islink(candidate):
                return candidate
        except OSError:
            pass
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root.joinpath(*parts)))
    if real != real_root and real_root not in real.parents:
        raise PathRefused(join(parts), "leads outside its share (through a symlink)")
    if folders is not None and parts:
        parent = Path(os.path.realpath(real_root.joinpath(*parts[:-1])))
        if parent == real_root or real_root in parent.parents:
            folders[parts[:-1]] = parent
    return real


def open_beneath(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink in the file's own name (swapped in after
    ``resolve`` looked)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags | nofollow | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if nofollow and exc.errno == errno.ELOOP:
            raise PathRefused(str(path), "became a symlink") from None
        raise


def files_below(root: Path, place: Path, bound: Path | None = None
                ) -> Iterator[tuple[Path, tuple[str, ...], os.stat_result]]:
    """The files of the folder ``place`` in the share rooted at ``root``, in name order:
    (path, names below ``place``, stat). Part files being received, and symlinks that lead
    out of ``bound`` (default: the share), are left out. The folders are walked by
    descriptor from the share's root (``os.fwalk``): one swapped for a symlink while it is
    listed is not entered."""
    inside = Path(os.path.realpath(bound or root))
    if not AT:  # no dir_fd (Windows): by name, as resolve checked it
        for folder, dirs, names in os.walk(place):
            dirs.sort()
            yield from _files(inside, place, Path(folder).relative_to(place).parts, names,
                              functools.partial(_lstat_in, Path(folder)))
        return
    with Folder.beneath(root, place) as top:
        for folder, dirs, names, fd in os.fwalk(".", dir_fd=top.fd):
            dirs.sort()
            yield from _files(inside, place, Path(folder).parts, names,
                              functools.partial(_lstat_at, fd))


def _lstat_in(folder: Path, name: str) -> os.stat_result:
    return os.lstat(folder / name)


def _lstat_at(fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=fd, follow_symlinks=False)


def _files(inside: Path, place: Path, below: tuple[str, ...], names: list[str],
           lstat: Callable[[str], os.stat_result]
           ) -> Iterator[tuple[Path, tuple[str, ...], os.stat_result]]:
    for name in sorted(names):
        if name.endswith((".ferry-part", ".ferry-state")):
            continue
        rel = (*below, name)
        path = place.joinpath(*rel)
        try:
            info = lstat(name)
            if stat.S_ISLNK(info.st_mode):  # followed only if it stays inside
                real = Path(os.path.realpath(path))
                if inside not in real.parents:
                    continue
                info = os.stat(real)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            yield path, rel, info
