"""Peak memory of the dense NTK step against the engine's memory model (forgetbox.ntk.memory).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dense_memory.py [--label NAME]
        # -> benchmarks/results/dense_memory[-NAME].json

A linear model (64 inputs, 10 outputs, 650 parameters) on random data, so the kernel matrices
are all that is large: at m = n c kernel rows one float64 kernel is 8 m^2 bytes, and the peak
resident memory the step adds, divided by that, counts the kernel-sized matrices alive at once.
The memory model budgets one (the kernel, factored in its own storage). Each size runs in its own
process; the peak is sampled every 2 ms from /proc/self/statm (Linux), over the baseline taken
after the data and model are built.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
SIZES = (400, 700, 1000)  # samples; x 10 outputs = kernel rows
INPUTS, CLASSES, FORGET = 64, 10, 20


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakSampler:
    """The largest resident size seen by a background thread while it runs."""

    def __init__(self) -> None:
        self.peak = resident_bytes()
        self._on = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self._on:
            self.peak = max(self.peak, resident_bytes())
            time.sleep(0.002)

    def stop(self) -> int:
        self._on = False
        self._thread.join()
        return max(self.peak, resident_bytes())


def measure(n: int) -> dict:
    import torch

    from forgetbox.ntk import Linearization, NTKOptions, ntk_direction
    from forgetbox.ntk.memory import dense_memory_estimate, kernel_bytes

    torch.manual_seed(0)
    model = torch.nn.Linear(INPUTS, CLASSES).double()
    x = torch.randn(n, INPUTS, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (n,))
    retain, forget = (x[FORGET:], y[FORGET:]), (x[:FORGET], y[:FORGET])
    lin, dense = Linearization(anchored=False), NTKOptions(solver="dense")
    ntk_direction(model, (x[:40], y[:40]), (x[:5], y[:5]), lin, options=dense)
    m = n * CLASSES
    base = resident_bytes()
    sampler = PeakSampler()
    t = time.perf_counter()
    ntk_direction(model, retain, forget, lin, options=dense)
    seconds = time.perf_counter() - t
    added = sampler.stop() - base
    p = sum(q.numel() for q in model.parameters())
    return {
        "samples": n,
        "kernel_rows": m,
        "kernel_gib": kernel_bytes(m) / 2**30,
        "peak_added_gib": added / 2**30,
        "kernel_copies_at_peak": added / kernel_bytes(m),
        "model_estimate_gib": dense_memory_estimate(m, p, 8) / 2**30,
        "seconds": seconds,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    label = sys.argv[sys.argv.index("--label") + 1] if "--label" in sys.argv else ""
    rows = []
    for n in SIZES:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    name = f"dense_memory-{label}.json" if label else "dense_memory.json"
    (RESULTS / name).write_text(json.dumps({"label": label, "sizes": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
