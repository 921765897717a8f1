"""Where a share path is on this agent's disk, and never outside its share.

The text of the path is checked first (``protocol.paths``); then the disk:
every symlink on the way is followed, and the place it leads to must still
be inside the share's real root. A symlink that stays inside is fine (studios
link shot folders around); one that leads out is refused, whether it is the
file itself or a folder on the way.

Between this check and the moment a file is opened, someone who can write in
the share could swap a folder for a symlink. Opening with ``O_NOFOLLOW``
(``open_beneath``) closes that for the file's own name; Linux's
``openat2(RESOLVE_BENEATH)`` would close it for the folders too, but Python
does not expose it. Shares are written by the agent and by people trusted
with the share, so this is the line drawn.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from protocol.paths import PathRefused, join, share_parts


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


def files_below(root: Path, place: Path) -> Iterator[tuple[Path, tuple[str, ...], os.stat_result]]:
    """The files of the folder ``place`` in the share rooted at ``root``, in name order:
    (path, names below ``place``, stat). Part files being received, and symlinks that lead
    out of the share, are left out."""
    real_root = Path(os.path.realpath(root))
    for folder, dirs, names in os.walk(place):
        dirs.sort()
        for name in sorted(names):
            if name.endswith((".ferry-part", ".ferry-state")):
                continue
            path = Path(folder) / name
            try:
                real = Path(os.path.realpath(path))
                if real_root not in real.parents:
                    continue
                info = os.stat(real)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, path.relative_to(place).parts, info
