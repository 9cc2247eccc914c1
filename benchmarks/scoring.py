"""How long an evaluation's scores take, from its stored inputs (``forgetbox report --rescore``
without the rendering), and which part takes it; run once with this checkout and once with an
earlier one to compare, the two results checked equal.

    forgetbox evaluate --config docs/results/digits-evaluate.toml --out runs/ev/digits-evaluate
    .venv/bin/python benchmarks/scoring.py runs/ev/digits-evaluate --label after \\
        --out benchmarks/results/scoring.json
    PYTHONPATH=<older checkout>/src .venv/bin/python benchmarks/scoring.py \\
        runs/ev/digits-evaluate --label before --out benchmarks/results/scoring.json

Each call adds (or replaces) its label's row: the commit and whether its tree was clean, the
seconds of the whole rescore and of its parts (cProfile's cumulative time of the score
functions, which adds its own overhead to both), the machine and its load, and the SHA-256 of
the rescored results (every number of ``evaluation.json`` but the rescore's own record), so
that rows of equal scores show equal digests.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import time
from pathlib import Path

from forgetbox.atomic import atomic_write_json, strict_json

try:
    from forgetbox.evaluation.rescore import rescore
except ImportError:  # an older checkout, where rescore lived in evaluation.run
    from forgetbox.evaluation.run import rescore
from forgetbox.versions import hardware, source_commit

PARTS = {  # label: (file suffix, function) whose cumulative time is reported
    "two-level bootstrap": ("evaluation/two_level.py", "two_level_bootstrap"),
    "challenge epsilons": ("audit/challenge.py", "example_epsilons"),
    "KLoM": ("audit/klom.py", "klom"),
    "population attacks": ("evaluation/scores.py", "population"),
    "U-LiRA": ("evaluation/scores.py", "ulira_part"),
}


def _parts(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(PARTS, 0.0)
    for (path, _, name), row in stats.stats.items():
        for label, (suffix, func) in PARTS.items():
            if name == func and path.endswith(suffix):
                out[label] += row[3]  # cumulative seconds
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="an evaluation folder with evaluation-inputs.npz")
    p.add_argument("--label", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    t0 = time.perf_counter()
    results = rescore(args.folder)
    plain = time.perf_counter() - t0
    profile = cProfile.Profile()
    profile.runcall(rescore, args.folder)
    results.pop("rescored")
    digest = hashlib.sha256(strict_json(results).encode()).hexdigest()
    row = {
        "label": args.label,
        "source": source_commit(),
        "folder": str(args.folder),
        "inputs_sha256": results["inputs"]["sha256"],
        "seconds": plain,
        "profiled_parts_seconds": _parts(pstats.Stats(profile)),
        "results_sha256": digest,
        "hardware": hardware("cpu"),
        "models_per_side": results["config"]["evaluate"]["models"],
        "methods": list(results["methods"]),
    }
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    doc["rows"] = [r for r in doc["rows"] if r["label"] != args.label] + [row]
    doc["command"] = "python benchmarks/scoring.py FOLDER --label LABEL --out FILE"
    atomic_write_json(args.out, doc)
    print(json.dumps({k: row[k] for k in ("label", "seconds", "profiled_parts_seconds")}))


if __name__ == "__main__":
    main()
