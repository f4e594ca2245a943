"""Keep freed tensor memory in the process for reuse, or give it back (glibc ``mallopt``).

glibc serves large allocations with fresh ``mmap`` pages and trims freed heap back to the
system, so a forward pass over a long window page-faults on every large activation it
allocates: at sequence 4096 that was a third of a Linformer or Nyström pass on this
project's 2-core machine. Fixed thresholds make those buffers come from, and go back to,
the heap. PyTorch's CPU tuning guide gets the same effect by preloading jemalloc or
tcmalloc; this needs no extra library. The cost: the process keeps up to
``TRIM_THRESHOLD`` of freed memory instead of returning it.

Training over long windows wants the opposite: its backward pass frees and allocates
buffers of many sizes, and glibc's dynamic threshold keeps the freed ones on the heap, so
the process's peak grew with depth although the live tensors did not (Reformer's
reversible layers). :func:`return_freed_memory` maps every large buffer and unmaps it on
free, so the resident peak is the peak of live tensors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts; an activation of [8192, 512] floats is 16 MB
TRIM_THRESHOLD = 256 << 20
RETURN_THRESHOLD = 1 << 20  # buffers from 1 MB up are mapped and unmapped when training


def _mallopt(settings: tuple[tuple[int, int], ...]) -> bool:
    """Apply ``(option, value)`` pairs with glibc's ``mallopt``; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in settings)


def return_freed_memory() -> bool:
    """Serve buffers from ``RETURN_THRESHOLD`` up with their own mappings, released on free,
    and trim freed heap from the same size; True when set (glibc)."""
    return _mallopt(((M_MMAP_MAX, 1 << 16), (M_MMAP_THRESHOLD, RETURN_THRESHOLD),
                     (M_TRIM_THRESHOLD, RETURN_THRESHOLD)))


def keep_freed_memory() -> bool:
    """Serve allocations from the heap (none mmap'd in the main arena, below
    ``MMAP_THRESHOLD`` in the others) and keep up to ``TRIM_THRESHOLD`` of freed heap; True
    when set (glibc), False without ``mallopt``."""
    return _mallopt(((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_MMAP_MAX, 0),
                     (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
