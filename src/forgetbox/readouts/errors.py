"""Error and loss readouts (section 5.4 i-iii)."""

from __future__ import annotations

from ..training import evaluate

# top-1 error (fraction) and mean cross-entropy (nats) of a model on (x, y)
error_and_loss = evaluate
