"""The cost model of docs/cost-model.md, fitted to the committed CPU measurements.

    .venv/bin/python benchmarks/cost_model.py           # -> benchmarks/results/cost_model.json
    .venv/bin/python benchmarks/cost_model.py --tables  # the tables of docs/cost-model.md

Each path's time is a sum of terms whose shape follows from what the path computes (n = |D|,
c classes, p or p_t trained parameters, k CG iterations, E epochs); the constants are fitted by
least squares (non-negative) to the measurements named in each fit. Memory terms are the
engine's own memory model (forgetbox.ntk.memory), checked against the measured peaks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from forgetbox.ntk.memory import KERNEL_COPIES

RESULTS = Path(__file__).with_name("results")
P_ALLCNN = 255_175


def nnls(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Least squares with the coefficients kept >= 0 (few columns: try every support)."""
    best, best_err = torch.zeros(a.shape[1], dtype=a.dtype), float("inf")
    cols = a.shape[1]
    for mask in range(1, 2**cols):
        keep = [j for j in range(cols) if mask >> j & 1]
        sol = torch.linalg.lstsq(a[:, keep], b[:, None]).solution[:, 0]
        if (sol < 0).any():
            continue
        x = torch.zeros(cols, dtype=a.dtype)
        x[keep] = sol
        err = float((a @ x - b).norm())
        if err < best_err:
            best, best_err = x, err
    return best


def fit(rows: list[tuple[list[float], float]], names: list[str]) -> dict:
    a = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    b = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    x = nnls(a, b)
    pred = a @ x
    return {
        "coefficients": dict(zip(names, x.tolist(), strict=True)),
        "points": [
            {"measured_s": float(m), "model_s": float(q), "ratio": float(q / m)}
            for m, q in zip(b, pred, strict=True)
        ],
    }


def engine_scaling() -> list[dict]:
    return json.loads((RESULTS / "ntk_engine.json").read_text())["scaling"]


def fit_retrain_epoch() -> dict:
    """Seconds per fine-tuning epoch (All-CNN x0.4, batch 128 as the cpu profile): a + b n."""
    rows = [([1.0, r["n"]], r["retrain_epoch"]["seconds"]) for r in engine_scaling()]
    return fit(rows, ["per_epoch_s", "per_sample_epoch_s"])


def fit_dense() -> dict:
    """Dense path: the Jacobian (n c rows) + the Gram matrix ((n c)^2 p) + Cholesky ((n c)^3)."""
    rows = []
    for r in engine_scaling():
        if "dense" not in r:
            continue
        m = r["n"] * 5
        rows.append(([m, m * m * P_ALLCNN / 1e9, m**3 / 1e9], r["dense"]["seconds"]))
    return fit(rows, ["per_kernel_row_s", "per_gram_gflop_term_s", "per_cholesky_gflop_s"])


def fit_cg() -> dict:
    """Matrix-free path, two solves (D and D_r): per CG iteration one jvp and one vjp pass over
    the n samples' c outputs; per solve one residual pass over n; the Nystrom sketch the kernel
    columns of m samples (m c Jacobian rows, once per solve). Fitted to the random-input scaling
    runs and to the real fine-tuned model's runs of deletion_cpu_cg.json (plain, m = 64, 128)."""
    rows = []
    for r in engine_scaling():
        rep = r["cg_nystrom"]["reports"]
        iters = sum(x["iterations"] for x in rep)
        rows.append(([r["n"] * iters, r["n"] * 2, 64 * 5 * 2], r["cg_nystrom"]["seconds"]))
    cg = json.loads((RESULTS / "deletion_cpu_cg.json").read_text())["rows"][0]["cg_compare"]
    for key, m in (("plain", 0), ("nystrom64", 64), ("nystrom128", 128)):
        rows.append(([500 * sum(cg[key]["iterations"]), 500 * 2, m * 5 * 2], cg[key]["seconds"]))
    return fit(rows, ["per_sample_iteration_s", "per_sample_residual_s", "per_sketch_row_s"])


def scale_points() -> list[dict]:
    out = []
    for path in sorted(RESULTS.glob("scale_study-*.json")):
        d = json.loads(path.read_text())
        t = d["timings"]
        out.append(
            {
                "file": path.name,
                "n": d["n"],
                "variant": d["variant"],
                "processes": d.get("processes", 1),
                "solver": d.get("solver"),
                "iterations": [r.get("iterations") for r in d.get("reports") or []],
                "scrub_s": t["scrub_seconds"],
                "retrain_s": t.get("retrain_seconds"),
                "retrain_epochs": t.get("retrain_epochs"),
                "peak_rss_gib": t.get("peak_rss_gib"),
            }
        )
    return out


def fit_recipe() -> dict:
    """Seconds of one whole fine-tuning run (the cpu recipe: 100 epochs, each with the stop
    rule's pass over the training set) per sample-epoch, from the scale study's trainings."""
    pts = []
    for path in sorted(RESULTS.glob("scale_study-*-*.json")):
        d = json.loads(path.read_text())
        t = d["timings"]
        if "retrain_seconds" in t:
            n_r = d["n"] - d["n_forget"]
            for which, n in (("original", d["n"]), ("retrain", n_r)):
                per = t[f"{which}_seconds"] / (t[f"{which}_epochs"] * n)
                pts.append(
                    {"variant": d["variant"], "which": which, "n": n, "s_per_sample_epoch": per}
                )
    return {"points": pts}


def predict(fits: dict, budget_gib: float = 11.2) -> list[dict]:
    """Predicted seconds and memory of each path at c = 10, p = 255,560 (All-CNN x0.4)."""
    a = fits["dense"]["coefficients"]
    g = fits["cg"]["coefficients"]
    recipe = [x["s_per_sample_epoch"] for x in fits["recipe"]["points"] if x["variant"] == "full"]
    per_epoch = (
        max(recipe) if recipe else fits["retrain_epoch"]["coefficients"]["per_sample_epoch_s"]
    )
    p, c, s = 255_560, 10, 64
    rows = []
    for n in (2_000, 5_000, 10_000, 50_000):
        m = n * c
        kernel_gib = KERNEL_COPIES * 8 * m * m / 2**30
        dense_s = a["per_kernel_row_s"] * m + a["per_gram_gflop_term_s"] * m * m * p / 1e9
        row = {
            "n": n,
            "dense_kernel_gib": kernel_gib,
            "dense_fits_budget": kernel_gib <= 0.75 * budget_gib,
            "dense_s": dense_s,
            "retrain_100_epochs_s": 100 * n * per_epoch,
        }
        for k in (30, 60, 120):
            row[f"cg_s_k{k}"] = (
                g["per_sample_iteration_s"] * n * k
                + g["per_sample_residual_s"] * 2 * n
                + g["per_sketch_row_s"] * 2 * s * c
            )
        rows.append(row)
    return rows


def _f(x: float, d: int = 2) -> str:
    return f"{x:.{d}f}"


def _head(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def scale_table() -> list[str]:
    """The scale study's table of docs/cost-model.md."""
    lines = _head(
        ["|D|", "trained", "solver", "scrub", "retrain", "speed-up", "peak memory"]
        + ["D_f error: original / retrain / NTK", "D_r error (NTK)"]
        + ["L1 to retrain on D_f: original / NTK", "on D_r: original / NTK"]
        + ["attack, D_f member rate: original / retrain / NTK"]
    )
    for path in sorted(RESULTS.glob("scale_study-*.json")):
        d = json.loads(path.read_text())
        if "readouts" not in d:
            continue
        t, r = d["timings"], d["readouts"]
        o, re_, k = r["original"], r["retrain"], r["ntk"]
        lines.append(
            f"| {d['n']:,} | {d['variant']} ({d['trained_parameters']:,}) | {d['solver']} | "
            f"{t['scrub_seconds']:.0f} s | {t['retrain_seconds']:.0f} s | "
            f"{t['retrain_seconds'] / t['scrub_seconds']:.2f}× | {t['peak_rss_gib']:.1f} GiB | "
            f"{_f(o['error_forget'])} / {_f(re_['error_forget'])} / {_f(k['error_forget'])} | "
            f"{_f(k['error_retain'], 3)} | "
            f"{_f(o['l1_to_retrain_forget'], 3)} / {_f(k['l1_to_retrain_forget'], 3)} | "
            f"{_f(o['l1_to_retrain_retain'], 3)} / {_f(k['l1_to_retrain_retain'], 3)} | "
            f"{_f(o['mia_forget_member_rate'])} / {_f(re_['mia_forget_member_rate'])} / "
            f"{_f(k['mia_forget_member_rate'])} |"
        )
    return lines


def proc_table() -> list[str]:
    """The scrub-only table (fresh processes on cached models) of docs/cost-model.md."""
    lines = _head(
        ["|D|", "path", "processes × threads", "scrub"]
        + ["scrubbed weights, max difference (largest step)", "peak memory (rank 0)"]
    )
    for path in sorted(RESULTS.glob("scale_study-*proc.json")):
        d = json.loads(path.read_text())
        t = d["timings"]
        its = "; ".join(str(x.get("iterations")) for x in d.get("reports") or [])
        lines.append(
            f"| {d['n']:,} | {d['variant']}, {d['solver']} (iterations {its}) | "
            f"{d['processes']} × {d['torch_threads']} | {t['scrub_seconds']:.1f} s | "
            f"{d['max_abs_diff_to_in_process_scrub']:.1e} (step {d['max_abs_scrub_step']:.1e}) | "
            f"{t['peak_rss_gib']:.1f} GiB |"
        )
    return lines


def prediction_table(rows: list[dict]) -> list[str]:
    """The fitted predictions (the JSON's ``predictions``) as docs/cost-model.md's table."""
    out = _head(
        ["|D|", "dense: kernel (factored in place)", "dense: time"]
        + ["CG, k = 30 / 60 / 120", "retrain (100 epochs)"]
    )
    for r in rows:
        fits = "" if r["dense_fits_budget"] else " (does not fit)"
        out.append(
            f"| {r['n']:,} | {r['dense_kernel_gib']:,.0f} GiB{fits} | "
            f"{r['dense_s'] / 60:,.0f} min | "
            f"{r['cg_s_k30'] / 60:.0f} / {r['cg_s_k60'] / 60:.0f} / "
            f"{r['cg_s_k120'] / 60:.0f} min | "
            f"{r['retrain_100_epochs_s'] / 60:.0f} min |"
        )
    return out


def _within(fit_: dict) -> str:
    worst = max(abs(pt["ratio"] - 1) for pt in fit_["points"])
    return f"within {100 * worst:.0f} %"


def constants_table(fits: dict) -> list[str]:
    """The fitted constants (the JSON's ``coefficients``) as docs/cost-model.md's table."""
    e, d, g = (fits[k]["coefficients"] for k in ("retrain_epoch", "dense", "cg"))
    ns = ", ".join(f"{r['n']:,}" for r in engine_scaling() if "dense" in r)
    # the Gram term's unit is 10^9 m^2 p: seconds per 10^12 m^2 p multiply-adds on the half,
    # i.e. 10^12 flops at 2 flops each (the symmetric half of m^2 p multiply-adds)
    beta = d["per_gram_gflop_term_s"]
    return _head(["constant", "value", "fitted to"]) + [
        f"| a_E, b_E (epoch) | {e['per_epoch_s']:.2f} s + {1e3 * e['per_sample_epoch_s']:.2f} ms "
        f"per sample | retraining epochs at n = 500 … 5,000 ({_within(fits['retrain_epoch'])}) |",
        f"| α (kernel row) | {1e3 * d['per_kernel_row_s']:.1f} ms per row | dense solves at "
        f"n = {ns}, c = 5 ({_within(fits['dense'])}) |",
        f"| β (Gram) | {1e3 * beta:.1f} s per 10¹² · m² p (≈ {1 / beta:.0f} GFLOP/s on the "
        "symmetric half) | same |",
        f"| γ (CG iteration) | {1e3 * g['per_sample_iteration_s']:.1f} ms per sample per "
        f"iteration (one jvp + one vjp) | {len(fits['cg']['points'])} CG runs, random and real "
        "fine-tuned models |",
        f"| ρ, σ | {1e3 * g['per_sample_residual_s']:.0f} ms per sample per solve, "
        f"{1e3 * g['per_sketch_row_s']:.0f} ms per sketch row | same |",
    ]


def main() -> None:
    out = {
        "retrain_epoch": fit_retrain_epoch(),
        "dense": fit_dense(),
        "cg": fit_cg(),
        "scale_study": scale_points(),
        "recipe": fit_recipe(),
    }
    out["predictions"] = predict(out)
    (RESULTS / "cost_model.json").write_text(json.dumps(out, indent=2))
    if "--tables" in sys.argv:
        tables = (constants_table(out), scale_table(), prediction_table(out["predictions"]))
        for lines in (*tables, proc_table()):
            print("\n".join(lines) + "\n")
    else:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
