"""Give freed large buffers back to the system (glibc's malloc only).

A round allocates and frees many large buffers (point streams, tables, the set,
the sealed record). glibc serves a request of at least M_MMAP_THRESHOLD from its
own mmap, returned to the system on free; but after each such free it raises
that threshold (up to 32 MiB), so later buffers come from the heap, where one
live block near the top pins everything below it. At 200k a side that left the
nodes 20 % above what they use (measured: peak RSS 196/167 MiB against 161/135
with a fixed threshold; docs/performance.md). Fixing the threshold at 128 KiB,
glibc's own default, turns the adjustment off; the trim threshold likewise
returns a freed heap top early. Python's small objects are unaffected (pymalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds; False where there is no glibc ``mallopt``."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, THRESHOLD) == 1 for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
