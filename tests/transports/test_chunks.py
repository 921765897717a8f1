"""Chunked files: verified in place, resumable, never half-written under their name."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import small_tmpfs
from transports.chunks import (
    ChunkCorrupt,
    DiskFull,
    MiB,
    SourceFile,
    chunk_count,
    chunk_size,
    file_hash,
)
from transports.partial import PartialFile

CHUNK = 1 * MiB  # small chunks keep the tests quick; the sizes below are chunk multiples +-


def make_source(path: Path, size: int, mode: int = 0o640) -> SourceFile:
    path.write_bytes(random.randbytes(size))
    os.chmod(path, mode)
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return SourceFile(path, CHUNK)


def receiver(source: SourceFile, dest: Path) -> PartialFile:
    return PartialFile(dest, source.stat.size, source.chunk, source.stat)


def sender_hash(source: SourceFile) -> str:
    return file_hash(source.stat.size, source.chunk,
                     [source.read(i)[1] for i in range(source.count)])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_chunk_sizes() -> None:
    assert chunk_size(0) == 8 * MiB and chunk_count(0, 8 * MiB) == 0
    assert chunk_size(2 << 30) == 8 * MiB and chunk_count(2 << 30, 8 * MiB) == 256
    assert chunk_size(100 << 30) == 25 * MiB
    assert chunk_count(100 << 30, chunk_size(100 << 30)) <= 4096


def test_chunks_in_any_order_from_several_streams(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mov", 20 * MiB + 3)
    dest = tmp_path / "out" / "dst.mov"
    part = receiver(source, dest)
    assert part.open() == 0
    order = list(range(source.count))
    random.shuffle(order)

    def stream(indexes: list[int]) -> None:
        for index in indexes:
            part.write(index, *source.read(index))

    threads = [threading.Thread(target=stream, args=(order[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    assert not dest.exists(), "nothing appears under the name before it is complete"
    for thread in threads:
        thread.join()
    whole = part.commit(sender_hash(source))
    assert dest.read_bytes() == source.path.read_bytes()
    st = dest.stat()
    assert st.st_mode & 0o7777 == 0o640 and st.st_mtime_ns == 1_600_000_000_123_456_789
    assert whole == sender_hash(source)
    assert leftovers(dest.parent) == []


def test_corrupt_chunk_is_refused_and_fetched_again(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 3 * MiB)
    dest = tmp_path / "dst"
    part = receiver(source, dest)
    part.open()
    data, digest = source.read(1)
    damaged = bytearray(data)
    damaged[12345] ^= 0x01
    with pytest.raises(ChunkCorrupt, match="chunk 1 does not match its hash"):
        part.write(1, bytes(damaged), digest)
    with pytest.raises(ChunkCorrupt, match="has 10 bytes"):
        part.write(1, b"x" * 10, digest)
    for index in (0, 2):
        part.write(index, *source.read(index))
    assert part.missing() == [1]
    with pytest.raises(Exception, match="1 chunks of dst are missing"):
        part.commit()
    assert not dest.exists()
    part.write(1, data, digest)
    part.commit(sender_hash(source))
    assert dest.read_bytes() == source.path.read_bytes()


def test_resume_after_the_receiver_is_killed(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 10 * MiB + 100)
    dest = tmp_path / "dst"
    first = receiver(source, dest)
    first.open()
    for index in range(0, source.count, 2):
        first.write(index, *source.read(index))
    first.close()  # killed: nothing tidied up
    with open(first.journal, "ab") as journal:  # a record torn by the kill
        journal.write(b"\x05\x00\x00")

    second = receiver(source, dest)
    assert second.open() == len(range(0, source.count, 2))
    assert second.missing() == list(range(1, source.count, 2))
    for index in second.missing():
        second.write(index, *source.read(index))
    second.commit(sender_hash(source))
    assert dest.read_bytes() == source.path.read_bytes()
    assert leftovers(tmp_path) == []


def test_a_changed_source_starts_again(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 4 * MiB)
    dest = tmp_path / "dst"
    first = receiver(source, dest)
    first.open()
    first.write(0, *source.read(0))
    first.close()
    changed = make_source(tmp_path / "src", 4 * MiB)  # same size, new bytes, new stat
    os.utime(changed.path, ns=(1_700_000_000_000_000_000,) * 2)
    changed = SourceFile(changed.path, CHUNK)
    again = receiver(changed, dest)
    assert again.open() == 0 and len(again.missing()) == 4


def test_after_a_reboot_the_kept_chunks_are_checked_again(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 4 * MiB)
    dest = tmp_path / "dst"
    first = receiver(source, dest)
    first.open()
    for index in range(4):
        first.write(index, *source.read(index))
    first.close()
    # another boot, and chunk 2 never reached the disk
    journal = first.journal.read_bytes()
    first.journal.write_bytes(journal.replace(b'"boot":"', b'"boot":"before-', 1))
    with open(first.temp, "r+b") as fh:
        fh.seek(2 * MiB + 7)
        fh.write(b"\0" * 100)
    second = receiver(source, dest)
    assert second.open() == 3 and second.missing() == [2]
    second.write(2, *source.read(2))
    second.commit(sender_hash(source))
    assert dest.read_bytes() == source.path.read_bytes()
    # the rewritten journal was for this boot: a third open trusts it as it is


def test_whole_file_hash_mismatch_leaves_nothing(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 2 * MiB)
    dest = tmp_path / "dst"
    dest.write_bytes(b"the old version stays until a good one replaces it")
    part = receiver(source, dest)
    part.open()
    for index in range(source.count):
        part.write(index, *source.read(index))
    with pytest.raises(ChunkCorrupt, match="the file's hash does not match"):
        part.commit("0" * 64)
    assert dest.read_bytes() == b"the old version stays until a good one replaces it"
    assert leftovers(tmp_path) == []


def test_empty_file(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 0)
    dest = tmp_path / "dst"
    part = receiver(source, dest)
    assert part.open() == 0 and part.missing() == []
    part.commit(sender_hash(source))
    assert dest.read_bytes() == b""


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "tiny", "1m") as mount:
        yield mount


def test_disk_full_fails_clearly_and_leaves_nothing(tmp_path: Path, tiny_disk: Path) -> None:
    source = make_source(tmp_path / "src", 2 * MiB)
    dest = tiny_disk / "dst.mov"
    part = receiver(source, dest)
    with pytest.raises(DiskFull, match=r"destination disk full at .*tiny: 2097152 bytes are "
                                       r"needed"):
        part.open()
    assert list(tiny_disk.iterdir()) == []


def test_small_files_land_together_and_a_bad_one_stays_out(tmp_path: Path) -> None:
    from transports.chunks import chunk_hash
    from transports.small import SmallFile, land_small

    files = []
    for n in range(5):
        data = random.randbytes(100 * n)
        files.append(SmallFile(tmp_path / "out" / f"sub{n % 2}" / f"f{n}", data,
                               chunk_hash(data), 1_600_000_000_000_000_000, 0o600))
    bad = files[3]
    files[3] = SmallFile(bad.dest, bad.data + b"!", bad.digest, bad.mtime_ns, bad.mode)
    results = land_small(files)
    assert [isinstance(r, str) for r in results] == [True, True, True, False, True]
    assert "does not match its hash" in str(results[3])
    for n in (0, 1, 2, 4):
        assert files[n].dest.read_bytes() == files[n].data
        assert files[n].dest.stat().st_mode & 0o777 == 0o600
    assert not files[3].dest.exists()
    assert not [p for p in (tmp_path / "out").rglob(".*")]
