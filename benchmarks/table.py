"""Print the markdown tables of docs/benchmarks.md from benchmarks/results/*.json."""

import json
from pathlib import Path

RES = Path(__file__).with_name("results")


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def gpu_engine(path: Path) -> None:
    """The engine table from benchmarks/gpu_session.py (seconds / peak GPU GiB)."""
    rows = json.loads(path.read_text())
    print(
        "| |D| | reference: s / GiB | dense: s / GiB | speed-up | CG + Nyström: s / GiB / its "
        "| rel. diff δw (dense, CG) | 3 retrain epochs: s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ref, den, cg = r.get("reference", {}), r.get("dense", {}), r.get("cg", {})
        ep = r.get("retrain_epoch", {})
        key = "rel_diff_vs_reference" if "seconds" in ref else "rel_diff_vs_dense"
        ref_s = (
            f"{fmt(ref['seconds'], 2)} / {fmt(ref['peak_gpu_gib'], 2)}" if "seconds" in ref else "—"
        )
        sp = f"{ref['seconds'] / den['seconds']:.0f}x" if "seconds" in ref else "—"
        its = ", ".join(str(x["iterations"]) for x in cg.get("reports", []))
        diffs = (
            f"{den.get(key, float('nan')):.1e}, {cg.get(key, float('nan')):.1e}"
            if key == "rel_diff_vs_reference"
            else f"—, {cg.get(key, float('nan')):.1e} (vs dense)"
        )
        print(
            f"| {r['n']:,} | {ref_s} | {fmt(den.get('seconds'), 2)} / {fmt(den.get('peak_gpu_gib'), 2)}"
            f" | {sp} | {fmt(cg.get('seconds'), 2)} / {fmt(cg.get('peak_gpu_gib'), 2)} / {its} "
            f"| {diffs} | {fmt(ep.get('seconds'), 2)} |"
        )


def deletion(path: Path) -> None:
    """Prepared requests vs retraining, and the pseudo-NTK vs the exact kernel."""
    doc = json.loads(path.read_text())
    rows = doc["rows"] if isinstance(doc, dict) else doc
    print(
        "| model | |D| | retrain on D_r: s (epochs) | kernel | prepare: s | request: s "
        "| request / retrain | from scratch: s | prepared vs scratch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "retrain_seconds" not in r:
            continue
        for k in ("exact", "pseudo"):
            if k not in r:
                continue
            e = r[k]
            print(
                f"| {r['model']} | {r['n']:,} | {fmt(r['retrain_seconds'])} ({r['retrain_epochs']}) "
                f"| {k} | {fmt(e['prepare_seconds'], 2)} | {fmt(e['request_seconds'], 3)} "
                f"| 1/{1 / e['request_vs_retrain']:.0f} | {fmt(e.get('from_scratch_seconds'), 2)} "
                f"| {e.get('prepared_vs_scratch_rel_diff', float('nan')):.1e} |"
            )
    print(
        "\n| model | |D| | scrubbed by | err D_f | err D_r | err test | L1→retrain D_f | "
        "L1→retrain D_r | attack: D_f member rate | δw vs exact: rel. err / cos |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "retrain_seconds" not in r:
            continue
        for name in ("original", "retrain", "exact", "pseudo"):
            if name not in r:
                continue
            ro = r[name].get("readouts", r[name])
            cmp = "—"
            if name == "pseudo" and "delta_cosine_vs_exact" in r[name]:
                cmp = f"{r[name]['delta_rel_error_vs_exact']:.1f} / {r[name]['delta_cosine_vs_exact']:.2f}"
            print(
                f"| {r['model']} | {r['n']:,} | {name} | {ro['error_forget']:.2f} | "
                f"{ro['error_retain']:.2f} | {ro['error_test']:.2f} | "
                f"{ro['l1_to_retrain_forget']:.2f} | {ro['l1_to_retrain_retain']:.2f} | "
                f"{ro['mia_member_rate']:.2f} | {cmp} |"
            )


def allocator(rows: list[dict]) -> None:
    """Reference and engine with glibc's defaults and with freed memory kept (medians)."""
    if not rows:
        return
    ref = {r.get("malloc", "default"): r for r in rows if r["approach"] == "reference"}
    print(
        "\n| run | glibc malloc | seconds (median) | peak GB | vs reference (same malloc): speed / memory |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        mode = r.get("malloc", "default")
        what = "reference" if r["approach"] == "reference" else f"dense{_budget_label(r)}"
        if r.get("chunk"):
            what += f", chunks of {r['chunk']}"
        base = ref.get(mode)
        vs = (
            f"{base['seconds'] / r['seconds']:.2f}x / {r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x"
            if base and r["approach"] != "reference"
            else ""
        )
        runs = ", ".join(fmt(t) for t in r.get("seconds_runs", []))
        print(
            f"| {what} | {mode} | {fmt(r['seconds'])} ({runs}) | {fmt(r['peak_rss_gb'], 2)} | {vs} |"
        )


def _median(xs):
    xs = sorted(xs)
    return (
        None
        if not xs
        else (xs[len(xs) // 2] if len(xs) % 2 else sum(xs[len(xs) // 2 - 1 : len(xs) // 2 + 1]) / 2)
    )


def structured(path: Path) -> None:
    """The per-layer kernel (benchmarks/structured_kernel.py): build time, peak memory, rates."""
    d = json.loads(path.read_text())
    blas = d.get("blas", {}).get("gflops")
    print(
        "| model | |D| | budget | contraction: s (CPU s) / GB | auto: s (CPU s) / GB | speed-up: wall (CPU) "
        "| auto passes | rel. diff K (fp32) | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for key, row in d.get("cases", {}).items():
        runs = row["runs"]
        if any("error" in r for rs in runs.values() for r in rs):
            print(f"| {key} | {row['n']} | error | | | | | | |")
            continue
        med = {m: _median([r["seconds"] for r in rs]) for m, rs in runs.items()}
        cpu = {m: _median([r["cpu_seconds"] for r in rs]) for m, rs in runs.items()}
        peak = {m: max(r["peak_rss_gb"] for r in rs) for m, rs in runs.items()}
        loads = ", ".join(f"{r['load_before']:.1f}" for rs in runs.values() for r in rs)
        budget = f"{row['budget'] / 2**30:.0f} GiB" if row.get("budget") else "default"
        print(
            f"| {key} | {row['n']} | {budget} | {med['contraction']:.1f} ({cpu['contraction']:.0f}) / "
            f"{peak['contraction']:.2f} | {med['auto']:.1f} ({cpu['auto']:.0f}) / {peak['auto']:.2f} "
            f"| {med['contraction'] / med['auto']:.2f}x ({cpu['contraction'] / cpu['auto']:.2f}x) "
            f"| {runs['auto'][0].get('passes', 0) or 'contraction path'} "
            f"| {row.get('auto_vs_contraction_rel_diff_float32', float('nan')):.1e} "
            f"| {loads} |"
        )
    print(
        "\n| model | structured form: GMAC / s / GFLOP/s | contracted form (formation + Gram): "
        "GMAC / s / GFLOP/s | recording: s | contraction path, whole build: GMAC / s / GFLOP/s | BLAS GFLOP/s |"
    )
    print("|---|---|---|---|---|---|")
    for key, row in d.get("cases", {}).items():
        runs = row["runs"]
        if any("error" in r for rs in runs.values() for r in rs):
            continue
        a = min(runs["auto"], key=lambda r: r["seconds"])
        c = min(runs["contraction"], key=lambda r: r["seconds"])
        if "structured_macs" not in a:
            print(
                f"| {key} | auto: {a.get('note', 'the contraction path')} | | | | {fmt(blas, 0)} |"
            )
            continue
        st = a["stage_seconds"]
        s_sec, c_sec = st.get("structured", 0.0), st.get("contract", 0.0) + st.get("gram", 0.0)
        s_mac, c_mac, t_mac = a["structured_macs"], a["contracted_macs"], a["contraction_path_macs"]

        def rate(mac, sec):
            return f"{2 * mac / sec / 1e9:.0f}" if sec and mac >= 1e9 else "—"

        print(
            f"| {key} | {s_mac / 1e9:.1f} / {s_sec:.1f} / {rate(s_mac, s_sec)} "
            f"| {c_mac / 1e9:.0f} / {c_sec:.1f} / {rate(c_mac, c_sec)} | {st.get('record', 0):.1f} "
            f"| {t_mac / 1e9:.0f} / {c['seconds']:.1f} / {rate(t_mac, c['seconds'])} | {fmt(blas, 0)} |"
        )
    print(
        "\n| model | small |D| | contraction: s | auto: s | structured: s | structured at the full |D|: "
        "GMAC, predicted s | rel. diff K vs contraction (auto, structured) |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, row in d.get("cases", {}).items():
        sm = row.get("small", {})
        if not sm or any("error" in sm.get(m, {}) for m in ("contraction", "auto", "structured")):
            continue
        s_run = sm["structured"]
        # every factored weight structured at the full |D|: the flop model's count
        n, n0 = row["n"], row["small_n"]
        macs = (
            sum(lay["structured_macs"] for lay in s_run["layers"]) * (n * (n + 1)) / (n0 * (n0 + 1))
        )
        s_rate = (
            2 * s_run["structured_macs"] / max(s_run["stage_seconds"].get("structured", 0), 1e-9)
        )
        pred = 2 * macs / s_rate
        print(
            f"| {key} | {n0} | {sm['contraction']['seconds']:.1f} | {sm['auto']['seconds']:.1f} "
            f"| {s_run['seconds']:.1f} | {macs / 1e9:,.0f} GMAC, {pred:,.0f} s (at {s_rate / 1e9:.0f} GFLOP/s) "
            f"| {sm.get('auto_vs_contraction_rel_diff_float32', float('nan')):.1e}, "
            f"{sm.get('structured_vs_contraction_rel_diff_float32', float('nan')):.1e} |"
        )
    if d.get("step"):
        st = d["step"]
        c, a = st["contraction"], st["auto"]
        print("\n| model | |D| (|D_f|) | NTK step, contraction: s / GB | auto: s / GB | speed-up |")
        print("|---|---|---|---|---|")
        print(
            f"| {st['model']} | {st['n']} ({st['forget']}) | {c['seconds']:.1f} / "
            f"{c['peak_rss_gb']:.2f} | {a['seconds']:.1f} / {a['peak_rss_gb']:.2f} "
            f"| {c['seconds'] / a['seconds']:.2f}x |"
        )
    if d.get("exactness"):
        print("\n| model | |D| | δw vs brute force (float64): contraction | auto | structured |")
        print("|---|---|---|---|---|")
        for row in d["exactness"]:
            vals = [
                row.get(f"{m}_vs_reference_rel_diff_float64")
                for m in ("contraction", "auto", "structured")
            ]
            print(
                f"| {row['model']} | {row['n']} | "
                + " | ".join("—" if v is None else f"{v:.1e}" for v in vals)
                + " |"
            )


def _budget_label(run: dict) -> str:
    return f" ({run['budget'] / 2**30:.2f} GB budget)" if run.get("budget") else ""


def main() -> None:
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "--gpu-engine":
        return gpu_engine(Path(sys.argv[2]))
    if len(sys.argv) > 2 and sys.argv[1] == "--deletion":
        return deletion(Path(sys.argv[2]))
    if len(sys.argv) > 2 and sys.argv[1] == "--structured":
        return structured(Path(sys.argv[2]))
    d = json.loads((RES / "ntk_engine.json").read_text())
    print(
        "| model | p | reference: s / GB | forgetbox dense: s / GB | speed-up | memory | rel. diff δw (fp32) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in d.get("compare", []):
        if row.get("float64"):
            continue
        ref, den = row["reference"], row["dense"]
        if "error" in den:
            print(f"| {row['model']} | | {ref.get('error', '')} | {den.get('error', '')} | | | |")
            continue
        if "error" in ref:
            print(
                f"| {row['model']} | {den['p']:,} | {ref['error']} | "
                f"{fmt(den['seconds'])} / {fmt(den['peak_rss_gb'], 2)} | | < 0.25x | |"
            )
            continue
        for label, den in (
            (_budget_label(row["dense"]), row["dense"]),
            (" (0.45 GB budget, chunks of 8)", row.get("dense_least_memory")),
            (" (default budget)", row.get("dense_default_budget")),
        ):
            if not den or "error" in den:
                continue
            print(
                f"| {row['model']}{label} | {den['p']:,} | {fmt(ref['seconds'])} / {fmt(ref['peak_rss_gb'], 2)} | "
                f"{fmt(den['seconds'])} / {fmt(den['peak_rss_gb'], 2)} | "
                f"{ref['seconds'] / den['seconds']:.2f}x | {den['peak_rss_gb'] / ref['peak_rss_gb']:.2f}x | "
                f"{row.get('dense_vs_reference_rel_diff_float32', float('nan')):.1e} |"
            )
        for key in ("reference", "dense", "dense_least_memory", "dense_default_budget"):
            if "seconds_runs" in row.get(key, {}):
                runs = ", ".join(fmt(t) for t in row[key]["seconds_runs"])
                print(f"<!-- {row['model']} {key} runs: {runs} s -->")
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
    allocator(d.get("allocator", []))
    for row in d.get("large", []):
        print(
            f"\nResNet-18 x0.4, |D| = {row['n']:,}: matrix-free CG peak {fmt(row.get('peak_rss_gb'), 2)} GB, "
            f"{fmt(row.get('seconds_per_iteration'))} s per iteration, preconditioner "
            f"{fmt(row.get('preconditioner_seconds'))} s"
        )


if __name__ == "__main__":
    main()
