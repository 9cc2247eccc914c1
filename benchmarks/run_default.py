"""Wall time of `forgetbox run` on the embedded default (cold cache), and of the rerun.

.venv/bin/python benchmarks/run_default.py     # writes benchmarks/results/run_default.json
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).with_name("results") / "run_default.json"


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    exe = str(Path(sys.executable).with_name("forgetbox"))
    keep = len(sys.argv) > 1
    run = Path(sys.argv[1]) if keep else Path(tempfile.mkdtemp()) / "run"
    if run.exists():
        shutil.rmtree(run)
    try:
        cold = timed([exe, "run", "--out", str(run)])
        warm = timed([exe, "run", "--out", str(run)])
        results = json.loads((run / "results.json").read_text())
    finally:
        shutil.rmtree(run / "cache" if keep else run.parent)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "command": "forgetbox run",
                "cold_seconds": cold,
                "cached_rerun_seconds": warm,
                "seeds": results["seeds"],
                "methods": list(results["methods"]),
                "method_seconds_mean": {
                    m: b["mean"].get("seconds") for m, b in results["methods"].items()
                },
            },
            indent=2,
        )
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
