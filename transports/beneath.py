"""A share's folder held open by descriptor, and its files opened, made, renamed and
removed relative to it, never by a path someone could swap underneath.

``shares.resolve`` says where a share path really is (symlinks inside the share followed,
ones that lead out refused). Between that check and the moment a file is opened, someone
who may write in the share could swap a folder or a part file for a symlink to elsewhere.
So a ``Folder`` is reached by walking from the share's real root down the real path one
name at a time, each opened ``O_NOFOLLOW | O_DIRECTORY`` relative to the one before
(openat); its files are opened ``O_NOFOLLOW`` relative to it, renamed and removed with
``dir_fd``. A symlink met on the way is refused (``PathRefused``): it was not there when
the path was resolved, so someone put it there.

Windows has no ``dir_fd`` (``os.supports_dir_fd`` is empty there): a ``Folder`` then
keeps its path and joins names to it, with the checks ``resolve`` made just before. A
junction swapped in between is not caught there; on POSIX it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from protocol.paths import PathRefused, join

AT = os.name != "nt" and {os.open, os.mkdir, os.unlink, os.rename, os.stat} <= os.supports_dir_fd
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Folder:
    """A folder of a share, open. ``path`` names it in messages (and, without ``dir_fd``,
    is what names are joined to); ``fd`` is -1 there. Close it (or use ``with``)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def beneath(cls, root: Path, place: Path, *, create: bool = False) -> Folder:
        """The folder ``place`` (a real path inside the share rooted at ``root``, as
        ``resolve`` gives it), reached from the root one folder at a time without
        following a symlink; missing folders are made when ``create``. The root itself is
        the admin's word: it may be a symlink, and is made when missing and ``create``."""
        real_root = Path(os.path.realpath(root))
        try:
            parts = Path(place).relative_to(real_root).parts
        except ValueError:
            raise PathRefused(str(place), "is outside its share") from None
        if ".." in parts:  # a walk up is out of the share, whatever follows
            raise PathRefused(str(place), "'..' would leave the share")
        if create:
            real_root.mkdir(parents=True, exist_ok=True)
        if not AT:
            folder = real_root.joinpath(*parts)
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            return cls(folder, -1)
        fd = os.open(real_root, os.O_RDONLY | DIRECTORY | CLOEXEC)
        for n, name in enumerate(parts):
            fd = _step(fd, name, parts[:n + 1], create)  # closes the one it was given
        return cls(real_root.joinpath(*parts), fd)

    def _name(self, name: str) -> str | Path:
        return name if AT else self.path / name

    def _at(self) -> dict[str, int]:
        return {"dir_fd": self.fd} if AT else {}

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """A file of this folder; a symlink in its place is refused, not followed."""
        try:
            return os.open(self._name(name), flags | NOFOLLOW | CLOEXEC, mode, **self._at())
        except OSError as exc:
            if NOFOLLOW and exc.errno == errno.ELOOP:
                raise PathRefused(str(self.path / name), "became a symlink") from None
            raise

    def lstat(self, name: str) -> os.stat_result | None:
        """The name itself (a symlink is not followed); None when nothing is there."""
        try:
            return os.stat(self._name(name), follow_symlinks=False, **self._at())
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        """Remove the name (a symlink itself, never what it points to); gone already is
        fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(name), **self._at())

    def replace(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` within this folder, replacing what ``dst`` was."""
        if AT:
            os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        else:
            os.replace(self.path / src, self.path / dst)

    def sync(self) -> None:
        """Renames and removals in it on disk (POSIX: fsync the folder)."""
        with contextlib.suppress(OSError):
            if AT:
                os.fsync(self.fd)
                return
            fd = os.open(self.path, os.O_RDONLY | DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def folder_of(dest: Path, root: Path | None, *, create: bool = False) -> Folder:
    """The folder a file of a share lands in (``dest`` as ``resolve`` gives it), reached
    from the share's ``root``; without one, the folder is trusted as it is."""
    if root is None:
        place = Path(os.path.realpath(dest.parent))
        return Folder.beneath(place, place, create=create)
    return Folder.beneath(root, dest.parent, create=create)


def _step(fd: int, name: str, walked: tuple[str, ...], create: bool) -> int:
    """Open ``name`` below the folder ``fd`` as a folder, not through a symlink; made
    first when missing and ``create``. ``fd`` is closed here, whatever happens."""
    try:
        try:
            return os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        with contextlib.suppress(FileExistsError):  # another transfer made it meanwhile
            os.mkdir(name, 0o777, dir_fd=fd)
        return os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        raise PathRefused(join(walked), "became a symlink" if link else
                          "is not a folder") from None
    finally:
        os.close(fd)
