"""The C allocator's policy in processes that train or encode: keep freed blocks for reuse.

glibc serves every allocation above 32 MB (its largest automatic threshold) with a fresh
``mmap`` and returns it to the system when it is freed, so each such tensor costs a page fault
per 4 KB page, every time it is made again: at S=224 a trained ViT block's MLP activations
(8,224 tokens x 1,536 x 4 bytes, 50 MB) are made and freed at every step, forward and backward.
``reuse_freed_memory`` raises both thresholds (from the heap instead of ``mmap`` up to
``REUSE_MB``; the heap's free top kept up to ``REUSE_MB`` too), so later steps reuse them.
The numbers computed are the same (torch aligns its buffers itself, 64 bytes either way:
the losses and trained weights of three S=224 steps were bitwise equal with and without it);
only the kernel's page work goes. Measured (benchmarks/trunk_cache.py, ViT-S/14, T=8, batches
of 4, one thread, two rounds alternating, benchmarks/results/speedup/trunk_cache_allocator.txt):
at S=224 in fp32, a step through the whole network 7-12 % faster, one from cached trunk tokens
12-24 % faster. The price is memory: the heap grows by a few such blocks before it reuses them
(where small allocations land decides how many: four to eight 64 MB tensors in
tests/test_memory.py), and the benchmark's peak RSS rose 3-13 %.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

REUSE_MB = 256
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def reuse_freed_memory() -> bool:
    """Set this process's allocator to keep freed blocks up to ``REUSE_MB`` (glibc on Linux
    only: elsewhere nothing changes). Once per process; True when the setting holds."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): leave it
        return False
    size = REUSE_MB << 20
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, size))
