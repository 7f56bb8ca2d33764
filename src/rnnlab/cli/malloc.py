"""The C allocator keeps freed memory for reuse: rnnlab-train's ``keep_freed_memory``.

glibc's malloc (Linux) serves a block above its mmap threshold (128 KiB at first, rising to at most
32 MiB as such blocks are freed) as a mapping of its own, unmapped when the block is freed, and
gives the free top of its heap back to the system beyond its trim threshold. A training step frees
and allocates the same large activations, gradients and optimizer temporaries every step, so every
step faults their pages in afresh: about 30,000 page faults per step of the BBC News classifier,
a quarter of its time on a CPU. With no mappings and no trimming a step reuses the memory the
previous one freed, as PyTorch's caching allocator does on a GPU and jemalloc or tcmalloc set-ups
do on CPUs. The price: the process holds on to its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt(3) parameters, from <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """From now on, glibc's malloc serves every block from its heap (a block it cannot fit there
    still gets a mapping) and never trims the heap. True where it took effect; False where the C
    library is not glibc (macOS, musl), which changes nothing."""
    libc = glibc()
    if libc is None:
        return False
    # A trim threshold of -1 turns trimming off (mallopt(3)).
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, -1) == 1
