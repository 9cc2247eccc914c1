"""How a rerun of a committed run compares with the run it replaces (issue 30's provenance
reruns): per readout, how many per-seed values are bit-identical and the largest relative
difference of the others; the verdicts of both; the two runs' seconds.

    git show 88feee5:docs/results/cifar5-allcnn-cpu/results.json > /tmp/old.json
    python benchmarks/rerun_check.py /tmp/old.json docs/results/cifar5-allcnn-cpu/results.json \
        --replaced-at 88feee5 --out benchmarks/results/rerun_check-cifar5-allcnn-cpu.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from forgetbox.atomic import atomic_write_json


def compare(old: dict, new: dict) -> dict:
    """Per readout and method: identical per-seed values, differing ones and their largest
    relative difference (``seconds`` apart: timings are compared on their own)."""
    readouts: dict[str, dict] = defaultdict(
        lambda: {"identical": 0, "different": 0, "max_rel": 0.0}
    )
    methods: dict[str, set] = defaultdict(set)
    for method, entry in old["methods"].items():
        for a, b in zip(entry["per_seed"], new["methods"][method]["per_seed"], strict=True):
            for key, x in a.items():
                y = b.get(key)
                if key in ("seed", "seconds") or not isinstance(x, (int, float)):
                    continue
                if not isinstance(y, (int, float)):
                    continue
                row = readouts[key]
                if x == y:
                    row["identical"] += 1
                    continue
                row["different"] += 1
                row["max_rel"] = max(row["max_rel"], abs(x - y) / max(abs(x), 1e-12))
                methods[key].add(method)
    for key, ms in methods.items():
        readouts[key]["methods"] = sorted(ms)

    def seconds(r: dict, method: str) -> list[float]:
        return [x["seconds"] for x in r["methods"][method]["per_seed"] if x.get("seconds")]

    def retrain(r: dict) -> list[float]:
        return [t["retrain"]["seconds"] for t in r.get("training", [])]

    return {
        "readouts": dict(readouts),
        "verdicts": {
            "replaced": [c["verdict"] for c in old["claims"]],
            "rerun": [c["verdict"] for c in new["claims"]],
        },
        "seconds": {
            "replaced": {"ntk": seconds(old, "ntk"), "retrain": retrain(old)},
            "rerun": {"ntk": seconds(new, "ntk"), "retrain": retrain(new)},
        },
        "provenance": {"replaced": old.get("provenance"), "rerun": new.get("provenance")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--replaced-at", required=True, help="the commit holding the replaced run")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc = compare(json.loads(args.old.read_text()), json.loads(args.new.read_text()))
    doc["replaced_at"] = args.replaced_at
    atomic_write_json(args.out, doc)


if __name__ == "__main__":
    main()
