"""Full-precision matrix products inside the engine (no TF32 on GPUs)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def full_precision():
    """Turn TF32 off (cuDNN convolutions and CUDA matrix products) inside the engine.

    cuDNN convolutions default to TF32 on Ampere and later GPUs: Jacobian entries then carry
    ~1e-3 relative error, which the kernel's conditioning amplifies (measured on an H100: 1-8 %
    in delta_w). The previous settings are restored on exit. No effect on the CPU.
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul
