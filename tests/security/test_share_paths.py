"""Share paths against a writer of the share who swaps things for symlinks (issue 14,
finding 8): a folder on the way, a part file, a journal. The agent must never write, read
or truncate through one: it refuses, or it replaces the planted name with its own file.

The helpers are tested in process (fast); the planted part file and journal also against
a real pulling agent."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from core import refusals
from hub import Session
from protocol.paths import PathRefused
from tests.conftest import Sites
from tests.helpers import ended, wait_for
from transports.beneath import Folder
from transports.chunks import MiB, SourceFile, TransferError, chunk_hash, file_hash
from transports.partial import PartialFile
from transports.shares import files_below, resolve
from transports.small import SmallFile, land_small

CHUNK = MiB
KEEP = b"the test's own file, outside the share: it must stay as it is\n"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "shots" / "a").mkdir(parents=True)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_bytes(KEEP)
    return folder


def swap_for_link(path: Path, target: Path) -> None:
    """What a writer of the share does between the agent's check and its use."""
    if path.is_dir() and not path.is_symlink():
        path.rename(path.with_name(path.name + ".moved"))
    else:
        path.unlink(missing_ok=True)
    os.symlink(target, path)


def test_the_walk_refuses_a_folder_swapped_for_a_symlink(share: Path, outside: Path) -> None:
    place = resolve(share, "shots/a/new.exr")  # checked: inside the share
    swap_for_link(share / "shots", outside)  # then swapped
    with pytest.raises(PathRefused, match=r"'shots' refused: became a symlink"):
        Folder.beneath(share, place.parent, create=True)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"], "nothing made out there"
    # reading through it is refused the same way
    (outside / "a").mkdir()
    (outside / "a" / "secret.exr").write_bytes(b"secret")
    with pytest.raises(PathRefused, match="became a symlink"):
        SourceFile(place.with_name("secret.exr"), root=share)
    # and small files do not land through it
    data = b"x" * 100
    [result] = land_small([SmallFile(place, data, chunk_hash(data), 1, 0o644)], root=share)
    assert isinstance(result, TransferError) and "became a symlink" in str(result)
    assert not (outside / "a" / "new.exr").exists()
    # a listing does not follow it either
    with pytest.raises(PathRefused, match="became a symlink"):
        list(files_below(share, share / "shots" / "a"))


def test_a_file_name_swapped_for_a_symlink_is_neither_opened_nor_followed(
        share: Path, outside: Path) -> None:
    os.symlink(outside / "victim", share / "shots" / "a" / "plate.exr")
    with Folder.beneath(share, share / "shots" / "a") as folder:
        with pytest.raises(PathRefused, match="became a symlink"):
            folder.open("plate.exr", os.O_WRONLY | os.O_TRUNC)
        folder.unlink("plate.exr")  # the link goes, not what it points to
        assert folder.lstat("plate.exr") is None
    assert (outside / "victim").read_bytes() == KEEP


def test_a_folder_outside_the_share_is_not_reached(share: Path, outside: Path) -> None:
    with pytest.raises(PathRefused, match="outside its share"):
        Folder.beneath(share, outside)


def interrupted_receive(src: Path, dest: Path, root: Path, chunks: int) -> SourceFile:
    """A receive of ``src`` into ``dest`` that stopped after ``chunks`` chunks (killed:
    its part file and journal stay)."""
    src.write_bytes(random.randbytes(4 * CHUNK + 123))
    source = SourceFile(src, CHUNK)
    first = PartialFile(dest, source.stat.size, source.chunk, source.stat, root=root)
    first.open()
    for index in range(chunks):
        first.write(index, *source.read(index))
    first.close()
    return source


def whole(source: SourceFile, part: PartialFile) -> str:
    for index in part.missing():
        part.write(index, *source.read(index))
    return part.commit(file_hash(source.stat.size, source.chunk,
                                 [source.read(i)[1] for i in range(source.count)]))


@pytest.mark.parametrize("planted", ["journal", "part", "both"])
def test_a_planted_journal_or_part_file_is_replaced_not_followed(
        tmp_path: Path, share: Path, outside: Path, planted: str) -> None:
    dest = share / "shots" / "a" / "plate.exr"
    source = interrupted_receive(tmp_path / "src.exr", dest, share, chunks=2)
    part = PartialFile(dest, source.stat.size, source.chunk, source.stat, root=share)
    if planted in ("journal", "both"):
        swap_for_link(part.journal, outside / "victim")
    if planted in ("part", "both"):
        swap_for_link(part.temp, outside / "victim")
    before = refusals.counts().get("share_path", 0)
    assert part.open() == 0, "nothing of a planted file is trusted: it starts afresh"
    assert whole(source, part)
    assert dest.read_bytes() == source.path.read_bytes()
    assert (outside / "victim").read_bytes() == KEEP
    assert not part.journal.exists() and not part.temp.exists()
    assert refusals.counts().get("share_path", 0) == before + 1


def test_a_journal_swapped_after_it_was_opened_is_never_written_through(
        tmp_path: Path, share: Path, outside: Path) -> None:
    """The old hole: the journal was checked, then opened again by name for writing. Now
    the descriptor opened (and checked) once is the one written: a swap changes nothing."""
    dest = share / "shots" / "a" / "plate.exr"
    source = interrupted_receive(tmp_path / "src.exr", dest, share, chunks=2)
    part = PartialFile(dest, source.stat.size, source.chunk, source.stat, root=share)
    assert part.open() == 2  # resumed: the kept journal is ours
    swap_for_link(part.journal, outside / "victim")
    for index in part.missing():
        part.write(index, *source.read(index))
    assert (outside / "victim").read_bytes() == KEEP
    # the part file swapped before the rename: refused, and nothing lands
    swap_for_link(part.temp, outside / "victim")
    with pytest.raises(TransferError, match="was replaced while it was written"):
        part.commit()
    part.close()
    assert not dest.exists()
    assert (outside / "victim").read_bytes() == KEEP
    # what is left is removed by name: the links themselves, not what they point to
    assert PartialFile.remove(dest, share)
    assert (outside / "victim").read_bytes() == KEEP
    assert sorted(p.name for p in dest.parent.iterdir()) == []


def test_a_real_pull_does_not_follow_a_planted_part_file_or_journal(
        session: Session, two_sites: Sites, tmp_path: Path) -> None:
    """A writer of the destination share plants symlinks where the agent's part file and
    journal go, pointing at a file outside the share; the pull replaces them with its own
    files, the file lands, and the outside file is untouched."""
    victim = tmp_path / "victim"
    victim.write_bytes(KEEP)
    film = random.randbytes(9 * MiB + 17)
    (two_sites.projects / "film.mov").write_bytes(film)
    incoming = two_sites.backup / "incoming"
    incoming.mkdir()
    os.symlink(victim, incoming / ".film.mov.ferry-part")
    os.symlink(victim, incoming / ".film.mov.ferry-state")
    job = session.create("Job", {"source": "share=projects/film.mov",
                                 "destination": "share=backup/incoming/", "retries": 0})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="the pull")
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert done["status"] == "done", task["message"]
    assert (incoming / "film.mov").read_bytes() == film
    assert victim.read_bytes() == KEEP
    assert sorted(p.name for p in incoming.iterdir()) == ["film.mov"]
    log = two_sites.dest_agent.log()
    assert "what=share_path" in log and ".film.mov.ferry-state is a symlink" in log


def test_without_dir_fd_the_fallback_still_moves_files(tmp_path: Path, share: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no dir_fd: there a Folder joins names to its path. The same calls must
    work (what they cannot catch there is a swap in between)."""
    import transports.beneath
    import transports.shares

    monkeypatch.setattr(transports.beneath, "AT", False)
    monkeypatch.setattr(transports.shares, "AT", False)
    dest = share / "shots" / "b" / "plate.exr"
    source = interrupted_receive(tmp_path / "src.exr", dest, share, chunks=1)
    part = PartialFile(dest, source.stat.size, source.chunk, source.stat, root=share)
    assert part.open() == 1
    assert whole(source, part)
    assert dest.read_bytes() == source.path.read_bytes()
    data = b"small"
    assert isinstance(land_small([SmallFile(dest.with_name("s.txt"), data, chunk_hash(data),
                                            1, 0o644)], root=share)[0], str)
    assert [rel for _, rel, _ in files_below(share, share / "shots")] == [
        ("b", "plate.exr"), ("b", "s.txt")]
    landed = SourceFile(dest, root=share)
    assert landed.stat.size == source.stat.size
    landed.close()
    assert PartialFile.remove(dest, share)
