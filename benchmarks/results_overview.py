"""The overview table at the top of docs/results/README.md, from the committed results.json
files (verdicts, headline numbers, hardware, compute).

    .venv/bin/python benchmarks/results_overview.py                  # prints the Markdown table
    .venv/bin/python benchmarks/results_overview.py claims FOLDER    # one run's claim table
    .venv/bin/python benchmarks/results_overview.py path             # where the NTK path is
                                                                     # closest to retraining
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from forgetbox.experiment import claims
from forgetbox.report.headline import compute_summary, headline_rows

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
MARK = {"holds": "✓", "fails": "✗", "inconclusive": "?"}


def _hardware(r: dict) -> str:
    hw = (r.get("provenance") or {}).get("hardware") or {}
    if hw.get("gpu"):
        return hw["gpu"]
    if r["config"].get("device", "cpu").startswith("cuda"):
        return "GPU (H200)"
    threads = hw.get("torch_threads", 2)
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def row(folder: Path) -> str:
    r = json.loads((folder / "results.json").read_text())
    cfg = r["config"]
    verdicts = " ".join(f"{c['id']}{MARK[c['verdict']]}" for c in claims.evaluate(r))
    rows = {h["method"]: h for h in headline_rows(r)}
    ntk, ret = rows.get("ntk"), rows.get("retrain")
    nums = ""
    if ntk and ret and ntk["speedup"]:
        f, r_f = 100 * ntk["error_forget"][0], 100 * ret["error_forget"][0]
        dr = 100 * ntk["error_retain"][0]
        nums = (
            f"D_f err {f:.0f} % (retrain {r_f:.0f} %), D_r err {dr:.1f} %,"
            f" {ntk['speedup'][0]:.1f}× faster than retraining"
        )
    comp = compute_summary(r)
    minutes = comp["total_seconds"] / 60
    comp_text = f"{minutes:.0f} min" + (" (recorded stages)" if comp["partial"] else "")
    preset = cfg.get("preset", "forgetbox")
    what = f"{cfg['dataset']}, {cfg['model']} ×{cfg['width']}, {cfg['profile']} profile"
    if preset != "forgetbox":
        what += f", preset {preset}"
    return (
        f"| [{folder.name}]({folder.name}/report.html) | {what} "
        f"| {len(r['seeds'])} | {_hardware(r)} | {comp_text} | {verdicts} | {nums} |"
    )


def claim_table(folder: Path) -> str:
    """One run's claims as a Markdown table: verdict, the rule it was judged by, the evidence."""
    r = json.loads((folder / "results.json").read_text())
    n = len(r["seeds"])
    lines = [
        f"| # | claim | verdict ({n} seeds) | rule | evidence |",
        "|---|---|---|---|---|",
    ]
    for c in claims.evaluate(r):
        cells = [str(c["id"]), c["text"], c["verdict"], c["rule"], c["evidence"]]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def path_rows(folder: Path) -> list[str]:
    """Per seed: the trapezium scale, and where along the NTK path (Fig. 4's alpha grid, in units
    of the scaled step) the D_f outputs come closest to the retrained model's (mean L1)."""
    r = json.loads((folder / "results.json").read_text())
    scales = {p["seed"]: p.get("trapezium_scale") for p in r["methods"]["ntk"]["per_seed"]}
    path = [p for p in r.get("activation_path", []) if p["method"] == "ntk"]
    lines = []
    for seed in sorted({p["seed"] for p in path}):
        pts = sorted((p["alpha"], p["forget"]) for p in path if p["seed"] == seed)
        best_a, best_l1 = min(pts, key=lambda t: t[1])
        at_one = dict(pts).get(1.0, float("nan"))
        scale = scales.get(seed) or 1.0
        lines.append(
            f"| {folder.name} | {seed} | {scale:.2f} | {best_a:g} | {best_a * scale:.2f} "
            f"| {at_one:.3f} | {best_l1:.3f} |"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["claims"]:
        for name in sys.argv[2:]:
            print(claim_table(RESULTS / name))
        return
    if sys.argv[1:2] == ["path"]:
        print(
            "| run | seed | trapezium scale | closest alpha | × unscaled step "
            "| L1 on D_f at alpha = 1 | L1 at the closest |"
        )
        print("|---|---|---|---|---|---|---|")
        for folder in sorted(p.parent for p in RESULTS.glob("*/results.json")):
            print("\n".join(path_rows(folder)))
        return
    print("| run | data, model, profile | seeds | hardware | compute | claims 1-9 | NTK (mean) |")
    print("|---|---|---|---|---|---|---|")
    for folder in sorted(p.parent for p in RESULTS.glob("*/results.json")):
        print(row(folder))


if __name__ == "__main__":
    main()
