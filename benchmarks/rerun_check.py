"""How a rerun of a committed run compares with the run it replaces (issue 30's provenance
reruns): per readout, how many per-seed values are bit-identical and the largest relative
difference of the others; the verdicts of both; the two runs' seconds. Two evaluations
(``evaluation.json``) are compared likewise, per model, with every judgement of both
(:func:`compare_evaluations`), and two ``evaluation-inputs.npz`` array by array
(:func:`compare_inputs`).

    git show 88feee5:docs/results/cifar5-allcnn-cpu/results.json > /tmp/old.json
    python benchmarks/rerun_check.py /tmp/old.json docs/results/cifar5-allcnn-cpu/results.json \
        --replaced-at 88feee5 --out benchmarks/results/rerun_check-cifar5-allcnn-cpu.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

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


def _rel(x: float, y: float) -> float:
    return abs(x - y) / max(abs(x), 1e-12)


def compare_evaluations(old: dict, new: dict) -> dict:
    """Two ``evaluation.json`` of one configuration: per readout, the per-model values that are
    bit-identical and the largest relative difference of the others; per method, the headline
    scores of both; and every judgement of both (band sides, the "distinguishable" flags
    against the retrain row, the certificate's verdicts), with those that changed listed."""
    readouts: dict[str, dict] = defaultdict(
        lambda: {
            "identical": 0,
            "different": 0,
            "max_rel": 0.0,
            "max_abs": 0.0,
            "max_abs_method": None,
            "medians_identical": 0,
            "medians_different": 0,
            "median_max_abs": 0.0,
        }
    )
    sides, flags, scores = [], [], {}
    for method, block in old["methods"].items():
        other = new["methods"][method]
        for key, r in block["readouts"].items():
            s = other["readouts"][key]
            row = readouts[key]
            for x, y in zip(r["values"], s["values"], strict=True):
                if x == y:
                    row["identical"] += 1
                elif x is not None and y is not None:
                    row["different"] += 1
                    row["max_rel"] = max(row["max_rel"], _rel(x, y))
                    if abs(x - y) > row["max_abs"]:
                        row["max_abs"], row["max_abs_method"] = abs(x - y), method
            if r["median"] == s["median"]:
                row["medians_identical"] += 1
            else:
                row["medians_different"] += 1
                if r["median"] is not None and s["median"] is not None:
                    gap = abs(r["median"] - s["median"])
                    row["median_max_abs"] = max(row["median_max_abs"], gap)
            sides.append([method, key, r["side"], s["side"]])
        scores[method] = {
            "challenge_forget_quality": [
                block["challenge"]["forget_quality"],
                other["challenge"]["forget_quality"],
            ],
            "klom_forget_median": [
                block["klom"]["forget"]["median"],
                other["klom"]["forget"]["median"],
            ],
        }
        if "ulira" in block:
            scores[method]["ulira_balanced_accuracy"] = [
                block["ulira"]["balanced_accuracy"],
                other["ulira"]["balanced_accuracy"],
            ]
    for part in ("against_retrain", "against_paired_retrain"):
        for method, rows in (old.get(part) or {}).items():
            for key, r in rows.items():
                theirs = new[part][method][key]["distinguishable"]
                flags.append([part, method, key, r["distinguishable"], theirs])
    certificate = []
    if old.get("certificate"):
        checks = dict(old["certificate"]["methods"])
        checks["control_original_with_noise"] = old["certificate"]["control_original_with_noise"]
        theirs = dict(new["certificate"]["methods"])
        theirs["control_original_with_noise"] = new["certificate"]["control_original_with_noise"]
        certificate = [[m, c["verdict"], theirs[m]["verdict"]] for m, c in checks.items()]
    return {
        "kind": "evaluation",
        "readouts": dict(readouts),
        "scores": scores,
        "band_sides": {
            "judged": len(sides),
            "changed": [x for x in sides if x[2] != x[3]],
        },
        "distinguishable": {
            "judged": len(flags),
            "changed": [x for x in flags if x[3] != x[4]],
        },
        "certificate": {
            "verdicts": certificate,
            "changed": [x for x in certificate if x[1] != x[2]],
        },
        "compute_seconds": {
            "replaced": old["compute"]["total_seconds"],
            "rerun": new["compute"]["total_seconds"],
        },
        "provenance": {"replaced": old.get("provenance"), "rerun": new.get("provenance")},
    }


def compare_inputs(old: Path, new: Path) -> dict:
    """Two ``evaluation-inputs.npz`` array by array (timings apart): which are bit-identical."""
    with np.load(old, allow_pickle=False) as a, np.load(new, allow_pickle=False) as b:
        keys = sorted(k for k in a.files if "seconds" not in k.split("/"))
        same = [
            k
            for k in keys
            if k in b.files and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
        ]
    return {
        "kind": "inputs",
        "arrays": len(keys),
        "identical": len(same),
        "different": sorted(set(keys) - set(same)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--replaced-at", required=True, help="the commit holding the replaced run")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.old.suffix == ".npz":
        doc = compare_inputs(args.old, args.new)
    else:
        old, new = json.loads(args.old.read_text()), json.loads(args.new.read_text())
        evaluation = old.get("kind") == "forgetbox-evaluation/1"
        doc = (compare_evaluations if evaluation else compare)(old, new)
    doc["replaced_at"] = args.replaced_at
    atomic_write_json(args.out, doc)


if __name__ == "__main__":
    main()
