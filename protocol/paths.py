"""Share paths as users write them (jobs.rst: ``share=projects/thefilm/latest_edit.mov``),
checked as text before anything touches a disk.

A share path names a share and a path inside it, with forward slashes. The
hub checks every path of a job when it is created, and the agent that serves
the share checks it again, together with the disk (``transports/shares.py``):
a path that could name anything outside its share never gets that far.

Refused: NUL and other control characters, absolute paths, ``..``, back
slashes (two meanings across systems), Windows drive letters, device names
(``CON``, ``nul.txt``, ``COM1``…) and names ending in a dot or a space (which
Windows strips, so that two names would mean one file). With ``windows=True``
also the characters Windows cannot store (``<>:"|?*``).
"""

from __future__ import annotations

import re

from core.errors import FerryError

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

_DRIVE = re.compile(r"^[A-Za-z]:")
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|"
                     r"conin\$|conout\$|clock\$)(\..*)?$", re.IGNORECASE)
_DEVICE_STARTS = {"con", "prn", "aux", "nul", "com", "lpt", "clo"}  # _DEVICE's, lowered
_WINDOWS_ONLY = set('<>:"|?*')
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class PathRefused(FerryError, ValueError):
    """A path that is not allowed; the message says what is wrong with it."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"path {path!r} refused: {why}")


def share_parts(path: str, *, windows: bool = False) -> tuple[str, ...]:
    """The names of a path inside a share, in order (empty: the share's root)."""
    if not isinstance(path, str):
        raise PathRefused(repr(path), "a path is a string")
    shown = path if len(path) <= 200 else path[:200] + "…"
    # lengths in UTF-8: a character is at most 4 bytes, so only long text is encoded
    if len(path) > MAX_PATH_BYTES // 4 and \
            len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PathRefused(shown, f"longer than {MAX_PATH_BYTES} bytes")
    control = _CONTROL.search(path)
    if control:
        char = control.group()
        what = "a NUL character" if char == "\0" else f"control character {ord(char):#04x}"
        raise PathRefused(shown, f"contains {what}")
    if "\\" in path:
        raise PathRefused(shown, "contains a back slash: write paths with '/'")
    if path.startswith("/"):
        raise PathRefused(shown, "is absolute: write it relative to its share")
    if _DRIVE.match(path):
        raise PathRefused(shown, "starts with a drive letter: write it relative to its share")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    for name in parts:
        if name == "..":
            raise PathRefused(shown, "'..' would leave the share")
        if len(name) > MAX_NAME_BYTES // 4 and \
                len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise PathRefused(shown, f"a name is longer than {MAX_NAME_BYTES} bytes")
        if name[-1] in ". ":
            raise PathRefused(shown, f"name {name!r} ends in a dot or a space")
        if name[:3].lower() in _DEVICE_STARTS and _DEVICE.match(name):
            raise PathRefused(shown, f"{name!r} is a device name on Windows")
        if windows and _WINDOWS_ONLY & set(name):
            bad = "".join(sorted(_WINDOWS_ONLY & set(name)))
            raise PathRefused(shown, f"name {name!r} has characters Windows cannot store ({bad})")
    return parts


def split_share_path(text: str) -> tuple[str, tuple[str, ...]]:
    """``share=projects/thefilm/a.mov`` (or ``projects/thefilm/a.mov``) as the share's name
    and the parts of the path inside it."""
    body = text[len("share="):] if text.startswith("share=") else text
    name, _, rest = body.partition("/")
    if not name:
        raise PathRefused(text, "names no share: write share=<share>/<path>")
    check_share_name(name)
    return name, share_parts(rest)


_SHARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_share_name(name: str) -> str:
    if not _SHARE_NAME.match(name):
        raise PathRefused(name, "a share name is 1 to 64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def join(parts: tuple[str, ...]) -> str:
    return "/".join(parts)
