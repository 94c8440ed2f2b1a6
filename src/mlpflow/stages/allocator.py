"""The C allocator told to keep the memory a training step frees, for the next step.

glibc's malloc returns a freed block of its (dynamic) mmap threshold or more to the kernel, and
trims the free top of its heap past twice that threshold. A step of a wide network frees
hundreds of MiB of activations (TabM: 16 MiB each), so every step faulted them in again, page by
page: a quarter of a TabM step on a 2-core CPU (benchmarks/README.md, "Facts measured here").
Fixing both thresholds ends that: blocks up to 32 MiB (glibc's largest mmap threshold) come from
the heap, and the heap keeps up to 1 GiB free at its top. The process's resident memory stays
near its peak instead of shrinking between steps; larger blocks (a big table's arrays) still go
back to the kernel. Elsewhere than glibc (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


@functools.cache
def reuse_freed_memory() -> bool:
    """Set glibc's two thresholds, once per process; whether they are set."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
