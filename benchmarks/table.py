"""Print the markdown tables of docs/benchmarks.md from benchmarks/results/*.json."""

import json
from pathlib import Path

RES = Path(__file__).with_name("results")


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def main() -> None:
    d = json.loads((RES / "ntk_engine.json").read_text())
    print(
        "| model | p | reference: s / GB | forgetbox dense: s / GB | speed-up | memory | rel. diff δw (fp32) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in d.get("compare", []):
        if row.get("float64"):
            continue
        ref, den = row["reference"], row["dense"]
        if "error" in ref or "error" in den:
            print(f"| {row['model']} | | {ref.get('error', '')} | {den.get('error', '')} | | | |")
            continue
        print(
            f"| {row['model']} | {den['p']:,} | {fmt(ref['seconds'])} / {fmt(ref['peak_rss_gb'], 2)} | "
            f"{fmt(den['seconds'])} / {fmt(den['peak_rss_gb'], 2)} | "
            f"{ref['seconds'] / den['seconds']:.1f}x | {den['peak_rss_gb'] / ref['peak_rss_gb']:.2f}x | "
            f"{row.get('dense_vs_reference_rel_diff_float32', float('nan')):.1e} |"
        )
    for row in d.get("compare", []):
        if row.get("float64"):
            print(
                f"\nfloat64, All-CNN x0.4, |D| = {row['n']}: relative difference of δw, dense vs "
                f"reference = {row['dense_vs_reference_rel_diff_float64']:.1e}"
            )
    print(
        "\n| |D| | dense: s / GB | CG + Nyström: s / GB / iterations (D, D_r) | CG plain: s / iterations | retrain: s per epoch |"
    )
    print("|---|---|---|---|---|")
    for row in d.get("scaling", []):
        den = row.get("dense")
        cg = row.get("cg_nystrom")
        cap = row.get("cg_nystrom_capped")
        plain = row.get("cg_plain")
        cg_s = "—"
        if cg and "error" not in cg:
            its = ", ".join(str(r["iterations"]) for r in cg["reports"])
            cg_s = f"{fmt(cg['seconds'])} / {fmt(cg['peak_rss_gb'], 2)} / {its}"
        elif cap and "error" not in cap:
            cg_s = (
                f"{fmt(cap['seconds_per_iteration'])} s per iteration, preconditioner "
                f"{fmt(cap['preconditioner_seconds'])} s / {fmt(cap['peak_rss_gb'], 2)} GB"
            )
        plain_s = "—"
        if plain and "error" not in plain:
            plain_s = f"{fmt(plain['seconds'])} / " + ", ".join(
                str(r["iterations"]) for r in plain["reports"]
            )
        den_s = (
            "—"
            if not den or "error" in den
            else f"{fmt(den['seconds'])} / {fmt(den['peak_rss_gb'], 2)}"
        )
        ep = row.get("retrain_epoch", {})
        print(f"| {row['n']:,} | {den_s} | {cg_s} | {plain_s} | {fmt(ep.get('seconds'), 2)} |")
    for row in d.get("large", []):
        print(
            f"\nResNet-18 x0.4, |D| = {row['n']:,}: matrix-free CG peak {fmt(row.get('peak_rss_gb'), 2)} GB, "
            f"{fmt(row.get('seconds_per_iteration'))} s per iteration, preconditioner "
            f"{fmt(row.get('preconditioner_seconds'))} s"
        )


if __name__ == "__main__":
    main()
