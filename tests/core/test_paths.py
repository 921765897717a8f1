"""Share paths: the text rules (hub and agent) and the disk rules (the serving agent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol.paths import PathRefused, share_parts, split_share_path
from transports.shares import open_beneath, resolve

GOOD = {
    "thefilm/latest_edit.mov": ("thefilm", "latest_edit.mov"),
    "a//b/./c.exr": ("a", "b", "c.exr"),
    "": (),
    ".": (),
    "shot 010/v001 (final).mov": ("shot 010", "v001 (final).mov"),
    "räksmörgås/ファイル.txt": ("räksmörgås", "ファイル.txt"),
    "a..b/..c": ("a..b", "..c"),
    "console.log": ("console.log",),
}

BAD = {
    "../etc/passwd": "'..' would leave the share",
    "a/../../b": "'..' would leave the share",
    "a/..": "'..' would leave the share",
    "/etc/passwd": "absolute",
    "C:/Windows/system32": "drive letter",
    "c:evil": "drive letter",
    "a\\..\\b": "back slash",
    "a\0b": "NUL",
    "a\nb": "control character",
    "CON": "device name",
    "x/nul.txt": "device name",
    "x/com1.mov": "device name",
    "LPT9": "device name",
    "x/trailing.": "ends in a dot or a space",
    "x/trailing ": "ends in a dot or a space",
    "a/" + "x" * 256: "longer than 255 bytes",
    "a/" * 3000: "longer than 4096 bytes",
}


@pytest.mark.parametrize(("text", "parts"), GOOD.items())
def test_good_paths(text: str, parts: tuple[str, ...]) -> None:
    assert share_parts(text) == parts


@pytest.mark.parametrize(("text", "why"), BAD.items())
def test_bad_paths_say_why(text: str, why: str) -> None:
    with pytest.raises(PathRefused) as info:
        share_parts(text)
    assert why in str(info.value)


def test_windows_characters_only_where_windows_stores() -> None:
    assert share_parts("shot:01.exr") == ("shot:01.exr",)
    with pytest.raises(PathRefused, match="Windows cannot store"):
        share_parts("shot:01.exr", windows=True)


def test_share_path_syntax() -> None:
    assert split_share_path("share=projects/thefilm/a.mov") == ("projects", ("thefilm", "a.mov"))
    assert split_share_path("projects") == ("projects", ())
    for text in ("share=/x", "share=", "share=../x/y", "share=pro jects/a"):
        with pytest.raises(PathRefused):
            split_share_path(text)


def test_symlinks_inside_are_followed_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "share"
    outside = tmp_path / "outside"
    (root / "shots").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("no")
    (root / "shots" / "a.exr").write_text("a")
    os.symlink(root / "shots", root / "latest")  # inside: fine
    os.symlink(outside, root / "escape")  # a folder that leads out
    os.symlink(outside / "secret", root / "shots" / "secret.exr")  # a file that leads out
    os.symlink("../../outside", root / "shots" / "up")  # relative, out

    assert resolve(root, "latest/a.exr") == (root / "shots" / "a.exr").resolve()
    assert resolve(root, "shots/new/b.exr") == (root / "shots" / "new" / "b.exr").resolve()
    assert resolve(root, "") == root.resolve()
    for path in ("escape/secret", "escape", "shots/secret.exr", "shots/up/secret",
                 "escape/new-file"):
        with pytest.raises(PathRefused, match="leads outside its share"):
            resolve(root, path)
    # a share whose root is itself a symlink: judged by where it really is
    linked = tmp_path / "linked"
    os.symlink(root, linked)
    assert resolve(linked, "shots/a.exr") == (root / "shots" / "a.exr").resolve()


def test_open_beneath_refuses_a_swapped_in_symlink(tmp_path: Path) -> None:
    target = resolve(tmp_path, "file")
    os.symlink("/etc/hostname", target)
    with pytest.raises(PathRefused, match="became a symlink"):
        open_beneath(target, os.O_RDONLY)


def test_resolving_with_a_folder_cache_gives_the_same_answers(tmp_path: Path) -> None:
    root = tmp_path / "share"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "a" / "b" / "f1").write_text("1")
    os.symlink(tmp_path / "outside", root / "a" / "b" / "out")
    folders: dict[tuple[str, ...], Path] = {}
    assert resolve(root, "a/b/f1", folders) == resolve(root, "a/b/f1")
    assert ("a", "b") in folders
    assert resolve(root, "a/b/new", folders) == (root / "a" / "b" / "new").resolve()
    with pytest.raises(PathRefused, match="leads outside"):
        resolve(root, "a/b/out", folders)  # a symlink in a cached folder is still followed
