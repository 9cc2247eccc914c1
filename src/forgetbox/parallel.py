"""Data-parallel passes over ``torch.distributed``: each rank takes one contiguous block of the
rows, and sums meet in an all-reduce. Without a process group (the usual case) every function
here is the single-process identity, so the engine's code is the same either way.

Launch with ``torchrun --nproc-per-node N -m forgetbox scrub|prepare ...`` (gloo on CPU, NCCL on
GPU; :func:`init_from_env`), or call the API inside a process group of your own. Rank 0 writes,
and only once every rank has finished (:func:`barrier`).

A rank that fails does not leave the others waiting: its error ends the process (the command
line), which closes its connections, so the collective the others wait in fails at once; that
failure is raised as :class:`PeerError` (never mistaken for an error of the rank's own), and
rank 0, stopped before its writes, writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


class PeerError(Exception):
    """A collective operation failed because another rank stopped (its own error says why).
    Not a ``RuntimeError``, so that no handler of a model's or a solver's errors takes it for
    one of its own."""


def active() -> bool:
    """Whether a ``torch.distributed`` process group is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 without a group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes outputs (rank 0)."""
    return rank() == 0


def block(n: int) -> tuple[int, int]:
    """``[lo, hi)``: this rank's contiguous block of ``n`` rows (the whole range alone)."""
    size, r = world_size(), rank()
    per, extra = divmod(n, size)
    lo = r * per + min(r, extra)
    return lo, lo + per + (1 if r < extra else 0)


def all_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the ranks, in place (returns it)."""
    if active():
        _collective(lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    return t


def all_min(value: int) -> int:
    """The least of ``value`` over the ranks: a setting every rank must share (a memory budget
    from each rank's own free memory), so that all take the same path to the same collectives."""
    if not active():
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.int64, device=device)
    _collective(lambda: dist.all_reduce(t, op=dist.ReduceOp.MIN))
    return int(t.item())


def barrier() -> None:
    """Wait for every rank (nothing without a group); :class:`PeerError` when one stopped."""
    if active():
        _collective(dist.barrier)


def _collective(op: Callable[[], object]) -> None:
    try:
        op()
    except RuntimeError as exc:  # gloo: "Connection closed by peer"; NCCL: a remote error
        raise PeerError("stopped: another rank failed (its error is printed above)") from exc


def rows_of(
    fn: Callable[[int, int], Tensor], n: int, step: int, shape_of: Callable[[], Tensor]
) -> Tensor:
    """``fn(i, j)`` over this rank's rows in steps of ``step``, assembled into the full ``(n,
    ...)`` result on every rank (zeros elsewhere, then summed). ``shape_of()`` gives one row's
    result when this rank has none (for the shape and dtype)."""
    lo, hi = block(n)
    parts = [fn(i, min(hi, i + step)) for i in range(lo, hi, step)]
    if not active():
        return torch.cat(parts) if parts else shape_of()[:0]
    like = parts[0] if parts else shape_of()
    out = torch.zeros(n, *like.shape[1:], dtype=like.dtype, device=like.device)
    if parts:
        out[lo:hi] = torch.cat(parts)
    return all_sum(out)


_JOINED: list[bool] = []  # whether init_from_env made the process group (shutdown leaves it)


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), gloo on CPU and
    NCCL on GPU; True when this process is now part of one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        _JOINED.append(True)
    return active()


def shutdown() -> None:
    """Leave the process group :func:`init_from_env` joined (its connections close, so no
    other rank waits on this one); a group made by the caller is left alone."""
    if _JOINED and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED.clear()
