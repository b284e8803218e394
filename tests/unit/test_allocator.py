"""Freed large buffers go back to the system once the allocator is tuned (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node.ops.allocator import return_large_buffers

# One large buffer freed (glibc then raises its mmap threshold to its size), then 200 of
# 1 MiB, all freed but the last: untuned they sit in the heap below the live one.
PROGRAM = """
import sys
import numpy as np
from node.ops.allocator import return_large_buffers
if sys.argv[1] == "tuned":
    assert return_large_buffers()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
base = rss()
big = np.ones(24 * 2**20, np.uint8)
del big
bufs = [np.ones(2**20, np.uint8) for _ in range(200)]
keep = bufs[-1]
del bufs
print(rss() - base)
"""


def grown(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_returns_freed_buffers_untuned_keeps_them():
    assert return_large_buffers()
    assert grown("untuned") > 150  # MiB still resident after the free
    assert grown("tuned") < 20
