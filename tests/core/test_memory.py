"""core.memory: glibc's allocator tuned for a process that moves files on threads."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_freed_large_buffers_go_back_to_the_system() -> None:
    """With the threshold fixed, a freed 8 MiB buffer is unmapped, also after a larger
    one was freed (glibc's own rule would have raised the threshold past it and kept
    later buffers on the heap)."""
    code = """
import sys
from core.memory import limit_malloc

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

tuned = sys.argv[1] == "tuned"
if tuned:
    assert limit_malloc()
big = bytearray(16 << 20)
del big  # a large block freed: glibc raises its threshold to 16 MiB (it goes up to 32)
before = rss()
held, kept = [], []
for _ in range(16):  # 128 MiB in 8 MiB buffers, between small blocks that stay
    held.append(bytearray(8 << 20))
    kept.append(bytearray(100 << 10))
del held
print(rss() - before)
"""
    grew = {mode: int(subprocess.run([sys.executable, "-c", code, mode], check=True,
                                     capture_output=True, text=True).stdout)
            for mode in ("plain", "tuned")}
    assert grew["tuned"] < 16, grew  # what was freed is not held
    assert grew["plain"] > 64, grew  # what the default does, the reason for it
