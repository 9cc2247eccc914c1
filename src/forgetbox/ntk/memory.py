"""The engine's memory model: one budget, and what each path needs of it.

Dense path (kernel built, then factored in its own storage): one kernel-sized float64 matrix
of ``m = n rows`` rows plus the Jacobian of one parameter group over all n samples;
a quarter of the budget is left for one sample chunk's Jacobian and its autograd intermediates.
The group width follows from what is left, and at most :data:`MAX_GROUPS` groups are allowed
(beyond that the matrix-free solver is the better choice), which gives the least budget.

Matrix-free path (CG): a few parameter vectors, one Jacobian chunk plus the Nystrom columns,
and the Nystrom factor.
"""

from __future__ import annotations

import os

import torch


class MemoryBudgetError(MemoryError):
    """No solver fits in the memory budget."""


MAX_GROUPS = 64  # more Jacobian recomputations than this: use the matrix-free solver
KERNEL_COPIES = 1  # the dense path factors the kernel in place (solvers.cholesky_)


def default_memory_budget(device: torch.device | str | None = None) -> int:
    """Half of the machine's physical memory (or of the GPU's free memory, counting what
    PyTorch's caching allocator holds but does not use as free), in bytes."""
    if device is not None and torch.device(device).type == "cuda":
        dev = torch.device(device)
        free, _ = torch.cuda.mem_get_info(dev)
        idle = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int((free + idle) * 0.5)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def itemsize(dtype: torch.dtype) -> int:
    """Bytes per element of ``dtype``."""
    return torch.finfo(dtype).bits // 8


def default_chunk(
    p: int, c: int, dtype: torch.dtype, budget: int, device: torch.device | str = "cpu"
) -> int:
    """Samples per Jacobian chunk so one chunk (chunk * c * p values) uses <= budget/8, at most
    32 on a CPU (measured: All-CNN x0.4, |D| = 500, dense: 23.7 s with chunks of 32 against
    32.2 s with 256; larger vmap batches are less cache-friendly) and 256 on a GPU."""
    per_sample = c * p * itemsize(dtype)
    cap = 256 if torch.device(device).type == "cuda" else 32
    return int(max(1, min(cap, (budget // 8) // max(per_sample, 1))))


def kernel_bytes(m: int) -> int:
    """Bytes of one float64 kernel-sized matrix of ``m`` rows."""
    return m * m * 8


def dense_group_columns(m: int, item: int, budget: int) -> int:
    """Jacobian columns per parameter group that fit beside the dense path's kernels."""
    room = budget - KERNEL_COPIES * kernel_bytes(m) - budget // 4
    return room // (m * item) if room > 0 else 0


def least_group_columns(p: int) -> int:
    """Columns per parameter group at :data:`MAX_GROUPS` groups."""
    return -(-p // MAX_GROUPS)


def dense_memory_estimate(m: int, p: int, item: int = 4) -> int:
    """Least budget (bytes) of the dense path for ``m`` kernel rows and ``p`` parameters: the
    one for which :func:`dense_group_columns` reaches ``p / MAX_GROUPS``."""
    return (KERNEL_COPIES * kernel_bytes(m) + m * item * least_group_columns(p)) * 4 // 3


def cg_memory_estimate(n: int, c: int, p: int, item: int, chunk: int, rank: int) -> int:
    """Bytes the CG solver needs: a few parameter vectors, one Jacobian chunk and the Nystrom
    columns, and the Nystrom factor."""
    return 8 * p * item + (chunk + rank) * c * p * item + n * c * rank * c * 8


def recording_chunk(
    act_numel: int, widest: int, k: int, item: int, budget: int, device: torch.device | str = "cpu"
) -> int:
    """Samples per recording pass of the per-layer kernel build (:mod:`.structured`): per
    sample, the recorded layers' inputs and outputs (``act_numel`` values) with their k output
    gradients and about three more copies (the forward's graph, clones, unfolded patches), and
    the widest layer's temporaries (``widest`` values: its per-sample gradients or factors), in
    a quarter of the budget (the part :func:`dense_group_columns` leaves free); at most 64 on a
    CPU, 256 on a GPU."""
    per_sample = (act_numel * (k + 3) + widest) * item
    cap = 256 if torch.device(device).type == "cuda" else 64
    return int(max(1, min(cap, (budget // 4) // max(per_sample, 1))))


def ghost_block_elems(budget: int, item: int) -> int:
    """Values of one structured-form block product (:func:`.ghost.ghost_block`): a 16th of
    the budget, between 2^16 and 2^24 (64 MB in float32: large enough for BLAS)."""
    return int(min(1 << 24, max(1 << 16, budget // 16 // item)))
