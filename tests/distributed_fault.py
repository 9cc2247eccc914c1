"""``forgetbox`` with a fault injected on one rank, for tests/test_distributed_cli.py:

    torchrun --standalone --nproc-per-node 2 tests/distributed_fault.py WHERE scrub ...

On rank 1 only, ``WHERE`` decides what fails: ``collective`` (the third all-reduce of the NTK
step runs out of device memory while rank 0 waits in it) or ``finished`` (a disk error once
rank 1 has computed its whole share, when rank 0 is ready to write). Then the command line runs
as ``python -m forgetbox`` would.
"""

import errno
import os
import sys

import torch

from forgetbox import cli, parallel
from forgetbox.deletion import serve


def _fail_in_collective() -> None:
    real, calls = parallel.all_sum, []

    def all_sum(t):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(t)

    parallel.all_sum = all_sum


def _fail_when_finished() -> None:
    real = serve._scrub

    def scrub(plan):
        real(plan)
        raise OSError(errno.EIO, "Input/output error", "/scratch/rank-1/kernel.tmp")

    serve._scrub = scrub


if __name__ == "__main__":
    where, argv = sys.argv[1], sys.argv[2:]
    if os.environ.get("RANK") == "1":
        {"collective": _fail_in_collective, "finished": _fail_when_finished}[where]()
    sys.exit(cli.main(argv))
