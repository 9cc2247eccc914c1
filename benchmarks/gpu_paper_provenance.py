"""Write into the two paper-profile GPU runs (``docs/results/*-paper-gpu``), which predate
provenance, what is known of where they ran, marked as reconstructed: the GPU, its driver and
the CPU count from the session's log (``benchmarks/results/gpu_paper_run_env.txt``), the date
of that session (the day of commit 8cc4173, which added the runs, their log and their SVGs'
render times). The source commit stays not recorded: the runs were made from a session's
working tree. The numbers are not touched; re-render the folders afterwards
(``forgetbox report docs/results/<run>``).

    .venv/bin/python benchmarks/gpu_paper_provenance.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from forgetbox.atomic import atomic_write_json  # noqa: E402

RUNS = ("cifar5-allcnn-paper-gpu", "cifar5-resnet18-paper-gpu")
ENV = "benchmarks/results/gpu_paper_run_env.txt"
SESSION_DATE = "2026-11-26"  # commit 8cc4173 (2026-11-26 23:49 UTC) added the runs and log


def session_hardware(text: str) -> dict:
    """The GPU, its memory and driver, and the CPU count from the session's log lines
    (``nvidia-smi --query-gpu=name,memory.total,driver_version``, ``cpus N``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    name, memory, driver = (x.strip() for x in lines[1].split(","))
    cpus = next(int(line.split()[1]) for line in lines if line.startswith("cpus "))
    return {
        "cpu_count": cpus,
        "device": "cuda",
        "gpu": name,
        "gpu_memory": memory,
        "gpu_driver": driver,
    }


def main() -> int:
    hardware = session_hardware((ROOT / ENV).read_text())
    for run in RUNS:
        path = ROOT / "docs/results" / run / "results.json"
        results = json.loads(path.read_text())
        if (results.get("provenance") or {}).get("source"):
            raise SystemExit(f"{path}: records its own provenance; nothing to reconstruct")
        results["provenance"] = {
            "created": SESSION_DATE,
            "hardware": hardware,
            "reconstructed": (
                f"from the session's log ({ENV}) and the date of commit 8cc4173, which added "
                "the run; the run itself recorded neither"
            ),
        }
        atomic_write_json(path, results)
        print(f"wrote the reconstructed provenance of {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
