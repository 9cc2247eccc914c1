"""glibc's allocator told to keep freed memory for reuse (the command line's default).

PyTorch on a CPU allocates and frees large tensors (activations, gradients, Jacobian blocks)
at every step. glibc serves every block above its mmap threshold (at most 32 MB) with a fresh
mapping and returns it to the kernel when freed, and trims the top of its heap beyond 128 kB,
so the next step pays for the same memory again in page faults (the kernel zeroes every page;
on a virtual machine a page handed back may also have been returned to the host). With
``M_MMAP_MAX = 0`` every block comes from the heap and with a large ``M_TRIM_THRESHOLD`` freed
blocks stay there for the next allocation. The arithmetic is unchanged; the process keeps the
memory of its peak until it exits. Measured in docs/benchmarks.md ("glibc's allocator").

Process-wide state: only the ``forgetbox`` command line calls :func:`keep_freed_memory` (its
``--malloc`` flag); the library never does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # bytes; the largest value of mallopt's int argument


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
    """Tell glibc's malloc to serve every block from its heap and to keep freed blocks there
    (module docstring); False, changing nothing, where the C library is not glibc or refuses."""
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    if not libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0))
