"""glibc's allocator told to keep freed memory for reuse (the command line's ``--malloc keep``).

PyTorch on a CPU allocates and frees large tensors (activations, gradients, Jacobian blocks)
at every step. glibc serves a block above its mmap threshold (adaptive, at most 32 MiB) with a
fresh mapping and unmaps it when freed, and trims free memory at the top of its heap (beyond a
threshold that starts at 128 kB and follows the mmap threshold), so the next step pays for the
same memory again in page faults (the kernel zeroes every page). With ``M_MMAP_MAX = 0`` the
main arena (the main thread's allocations, where PyTorch's large tensors come from) serves every
block from its heap, and with trimming off (``M_TRIM_THRESHOLD = -1``) freed blocks stay there
for later allocations. The arithmetic is unchanged. The cost is memory: the process keeps what
it freed until it exits, and a freed block is not always reused at once (PyTorch asks for
64-byte-aligned blocks, which glibc 2.36 does not fit into a freed hole of exactly their size),
so the heap can grow past the live peak before freed blocks are reused. Measured (speed,
page faults, peak memory, and that reuse on a loop of one large tensor) in docs/benchmarks.md,
"Keeping freed memory".

Process-wide state: only the ``forgetbox`` command line calls :func:`keep_freed_memory` (when
given ``--malloc keep``); the library never does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_MAX = -4
NO_TRIM = -1  # M_TRIM_THRESHOLD's value that turns trimming off (mallopt(3))


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None  # musl and others: left alone
    return libc


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve the main arena's blocks from its heap and to keep freed
    blocks there (module docstring). False where the C library is not glibc (nothing changed)
    or refuses a setting (one made before the refusal stays). An allocator preloaded in front of
    glibc's (jemalloc, tcmalloc) ignores it."""
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    if not libc.mallopt(M_TRIM_THRESHOLD, NO_TRIM):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0))
