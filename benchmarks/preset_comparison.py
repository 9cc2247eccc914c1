"""forgetbox's defaults against the authors' preset on the same split, cohorts and seeds: the
table of docs/deviations.md ("The two presets side by side"), from two committed runs.

    .venv/bin/python benchmarks/preset_comparison.py \\
        docs/results/cifar5-allcnn-cpu docs/results/cifar5-allcnn-cpu-authors
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

COLUMNS = (
    ("error_forget", "D_f err", 3),
    ("error_retain", "D_r err", 3),
    ("error_test", "test err", 3),
    ("mia_forget_member_rate", "attack", 2),
    ("l1_to_retrain_forget", "L1 D_f", 3),
    ("relearn_epochs", "re-learn", 1),
    ("info_weights_nats", "white box", 2),
    ("seconds", "s", 1),
)


def _cell(rows: list[dict], key: str, digits: int) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "—"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    if key == "info_weights_nats":
        return f"{m:.{digits}g}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def table(a: Path, b: Path) -> str:
    runs = [json.loads((p / "results.json").read_text()) for p in (a, b)]
    common = sorted(set(runs[0]["seeds"]) & set(runs[1]["seeds"]))
    names = [r["config"].get("preset", "forgetbox") for r in runs]
    head = "| method | preset | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for method in runs[0]["methods"]:
        for name, r in zip(names, runs, strict=True):
            m = r["methods"].get(method)
            if m is None:
                continue
            rows = [row for row in m["per_seed"] if row["seed"] in common]
            cells = [_cell(rows, k, d) for k, _, d in COLUMNS]
            lines.append(f"| {method} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nmean ± standard deviation over the common seeds {common}"


if __name__ == "__main__":
    print(table(Path(sys.argv[1]), Path(sys.argv[2])))
