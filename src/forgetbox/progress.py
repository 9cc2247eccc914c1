"""Progress bars (tqdm) for long stages; silent when stderr is not a terminal or when
``FORGETBOX_PROGRESS=0``, and forced on with ``FORGETBOX_PROGRESS=1``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def enabled() -> bool:
    """Whether progress bars are shown (standard error is a terminal)."""
    flag = os.environ.get("FORGETBOX_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return sys.stderr.isatty()


def progress(iterable: Iterable, *, desc: str, total: int | None = None, leave: bool = False):
    """Wrap ``iterable`` in a progress bar named ``desc``."""
    return tqdm(
        iterable, desc=desc, total=total, leave=leave, disable=not enabled(), dynamic_ncols=True
    )
