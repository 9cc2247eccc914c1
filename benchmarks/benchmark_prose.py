"""The measured sentences of docs/benchmarks.md outside its tables, generated from their JSON
(issue 30: prose that cannot drift). ``PROSE`` maps a fragment name (``prose-NAME`` in the docs,
written by ``benchmarks/fragments.py``) to a function returning markdown; each reads only
committed files under ``benchmarks/results/`` or ``docs/results/``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from statistics import mean

from forgetbox.report.lede import times

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict | list:
    return json.loads((RESULTS / name).read_text())


def _span(xs: list[float], fmt: Callable[[float], str]) -> str:
    """``a–b`` from the least and the largest of ``xs`` (one value where they print the same)."""
    lo, hi = fmt(min(xs)), fmt(max(xs))
    return lo if lo == hi else f"{lo}–{hi}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _sci(x: float) -> str:
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e")


def structured_exactness() -> str:
    """δw in float64 against the brute force per strategy, and what forcing the structured form
    on every layer costs (``structured_kernel.json``)."""
    d = _load("structured_kernel.json")
    per = {e["model"]: e for e in d["exactness"]}
    modes = ("contraction", "auto", "structured")

    def diffs(e: dict) -> str:
        return ", ".join(_sci(e[f"{m}_vs_reference_rel_diff_float64"]) for m in modes)

    r18, acnn = per["resnet18-0.4"], per["allcnn-0.4"]
    case = d["cases"]["resnet18-0.4"]
    small = case["small"]
    layers = case["small"]["auto"]["layers"]
    big = sum(x["structured_macs"] for x in case["runs"]["auto"][0]["layers"])
    rate = sum(x["structured_macs"] for x in layers) / small["structured"]["seconds"]
    return (
        f"Exactness: δw in float64 at |D| = {r18['n']} against the brute force "
        f"(`reference.dense_delta`): contraction, auto, structured {diffs(r18)} on ResNet-18 ×0.4; "
        f"{diffs(acnn)} on All-CNN ×0.4. Forcing the structured form on every layer is far "
        f"slower where T is large: at |D| = {case['small_n']} (float32) it took "
        f"{small['structured']['seconds']:.1f} s on ResNet-18 ×0.4 against "
        f"{small['auto']['seconds']:.1f} s for `auto`, and the flop model puts it at "
        f"{big / 1e9:,.0f} GMAC at |D| = {case['n']} — about {big / rate / 3600:.0f} hours at "
        "the rate of that small run — which is why `auto` chooses per layer.\n"
    )


def structured_allcnn_rule() -> str:
    """All-CNN ×0.4 under the ``AUTO_MIN_SAVING`` rule, before and after."""
    d = _load("structured_kernel.json")
    before = d["allcnn-0.4 per layer, before AUTO_MIN_SAVING"]["runs"]
    runs = d["cases"]["allcnn-0.4"]["runs"]
    best = {m: min(r["seconds"] for r in runs[m]) for m in ("contraction", "auto")}

    def each(m: str) -> str:
        return " and ".join(f"{r['seconds']:.1f}" for r in runs[m])

    return (
        "- All-CNN ×0.4: every layer but the last is at high resolution, so the structured form "
        "saves under 10 % of the multiply-adds and `auto` takes the contraction path itself (the "
        "same kernel bit for bit; `AUTO_MIN_SAVING` in `ntk/layer_plan.py`). Before that rule "
        f"`auto` built it per layer, all contracted, in {before['auto']['seconds']:.1f} s against "
        f"{before['contraction']['seconds']:.1f} s (the JSON keeps that run). Since, `auto` runs "
        f"the contraction path's code, so the table's ratio ({each('contraction')} s for "
        f"contraction against {each('auto')} s for `auto`, "
        f"{best['contraction'] / best['auto']:.2f}× best to best) is this machine's drift between "
        "runs, which the same code cannot cause.\n"
    )


def _seconds(run: dict, method: str) -> list[float]:
    return [x["seconds"] for x in run["methods"][method]["per_seed"] if x.get("seconds")]


def structured_end_to_end() -> str:
    """The committed ResNet-18 CIFAR-5 run's NTK step against retraining in the same run,
    before the per-layer kernel (``resnet18_cifar5_contraction_run.json``) and with it."""
    before = _load("resnet18_cifar5_contraction_run.json")
    run = json.loads((ROOT / "docs/results/cifar5-resnet18-cpu/results.json").read_text())
    retrain = [t["retrain"]["seconds"] for t in run["training"] if t["retrain"].get("seconds")]
    ntk, ntk_fisher = _seconds(run, "ntk"), _seconds(run, "ntk_fisher")
    epochs = [t["retrain"]["epochs"] for t in run["training"] if t["retrain"].get("seconds")]
    per_epoch = [s / e for s, e in zip(retrain, epochs, strict=True)]
    sec = lambda v: f"{v:.1f}"  # noqa: E731
    then = (
        f"Before it, the committed run (commit {before['run_commit'][:7]}, on an "
        f"{before['hardware']['processor']}) took {_span(before['ntk_seconds'], sec)} s for the "
        f"NTK step against {_span(before['retrain_seconds'], sec)} s for retraining "
        f"(means: the step {times(mean(before['retrain_seconds']) / mean(before['ntk_seconds']))} "
        "than retraining)."
    )
    if run["provenance"]["source"]["commit"] == before["run_commit"]:
        return f"- End to end on real CIFAR-5: not rerun yet. {then}\n"
    hw = run["provenance"]["hardware"]["processor"]
    return (
        "- End to end on real CIFAR-5, rerun with the per-layer kernel (`auto`; commit "
        f"{run['provenance']['source']['commit'][:7]}, {hw}, 2 cores; "
        "[results](results/cifar5-resnet18-cpu/report.html)): the NTK step took "
        f"{_span(ntk, sec)} s (mean {mean(ntk):.1f} s) and NTK + Fisher "
        f"{_span(ntk_fisher, sec)} s, against {_span(retrain, sec)} s (mean "
        f"{mean(retrain):.1f} s) for retraining on D_r in the same run "
        f"({_span(per_epoch, lambda v: f'{v:.2f}')} s per epoch over "
        f"{_span(epochs, lambda v: f'{v:.0f}')} epochs): the step is "
        f"{times(mean(retrain) / mean(ntk))} than retraining (means). "
        f"{then} The two runs ran on different machines, so compare each step with its own "
        "run's retraining, not the seconds across runs.\n"
    )


def scaling_retrain() -> str:
    """Retraining against the NTK step over |D| (``ntk_engine.json`` "scaling")."""
    rows = _load("ntk_engine.json")["scaling"]
    retrain = ", ".join(f"{100 * r['retrain_epoch']['seconds']:,.0f} s at {r['n']:,}" for r in rows)
    ntk = [min(v["seconds"] for k, v in r.items() if k in ("dense", "cg_nystrom")) for r in rows]
    cg_mem = [r["cg_nystrom"]["peak_rss_gb"] for r in rows]
    cross = next(
        r["n"] for r in rows if r["cg_nystrom"]["seconds"] < r.get("dense", {}).get("seconds", 1e30)
    )
    return (
        "Retraining runs up to 100 epochs (the `cpu` profile's cosine schedule uses all of "
        f"them), 100 × the measured epoch: about {retrain}, against "
        f"{_span(ntk, lambda v: f'{v:.0f}')} s for the faster NTK step. From |D| = {cross:,} on "
        "in this table the matrix-free solver is the faster one, and its memory stays flat "
        f"({_span(cg_mem, lambda v: f'{v:.1f}')} GB, most of it the "
        "Nyström columns).\n"
    )


def scaling_inplace() -> str:
    """The dense cells after the in-place factor (``ntk_engine-inplace-factor.json``)."""
    after = {r["n"]: r["dense"] for r in _load("ntk_engine-inplace-factor.json")["scaling"]
             if "dense" in r}  # fmt: skip
    before = {r["n"]: r["dense"] for r in _load("ntk_engine.json")["scaling"] if "dense" in r}
    cells = ", ".join(
        f"{a['seconds']:.1f} s / {a['peak_rss_gb']:.2f} GB at |D| = {n:,}" for n, a in after.items()
    )
    top = max(after)
    gain = 1 - after[top]["seconds"] / before[top]["seconds"]
    return (
        "After the in-place factor ([below](#peak-memory-of-the-dense-solve)) the dense cells "
        "were re-measured (`--only scaling-dense`, then the file moved to "
        "`benchmarks/results/ntk_engine-inplace-factor.json`, so that `ntk_engine.json` keeps "
        f"the cells the cost model is fitted to): {cells}. The peak barely moves at {top:,} "
        "because the budget freed by the second kernel copy now goes to wider Jacobian groups "
        f"(fewer recomputations), which is where the {100 * gain:.0f} % speed-up at {top:,} "
        "comes from.\n"
    )


def nystrom_real() -> str:
    """Plain against Nyström-preconditioned CG on the fine-tuned model (``deletion_cpu_cg``)."""
    cg = _load("deletion_cpu_cg.json")["rows"][0]["cg_compare"]
    plain = cg["plain"]
    its = mean(plain["iterations"])
    pre = [cg[k] for k in cg if k.startswith("nystrom")]
    cut = [its / mean(p["iterations"]) for p in pre]
    time = [plain["seconds"] / p["seconds"] for p in pre]
    return (
        "On a real fine-tuned network the kernel is badly conditioned (random inputs needed 6 "
        f"plain iterations; this one needs ~{its:.0f}), and the Nyström preconditioner cuts the "
        f"iterations {_span(cut, lambda v: f'{v:.0f}')}× and the time "
        f"{_span(time, lambda v: f'{v:.0f}')}×. At this size dense is still faster "
        f"({cg['dense_seconds']:.0f} s); the matrix-free solver is for sizes where the kernel "
        "does not fit (its memory does not grow with |D|²).\n"
    )


def resnet_5000() -> str:
    """The capped matrix-free run on ResNet-18 ×0.4 at |D| = 5,000 (``ntk_engine.json``)."""
    r = _load("ntk_engine.json")["large"][0]
    dense_gb = (r["n"] * 5) ** 2 * 8 / 1e9
    jac_gb = r["n"] * 5 * r["p"] * 4 / 1e9
    return (
        f"The matrix-free solver (Nyström rank from {r['rank']} samples, data chunks of "
        f"{r['chunk']}) ran within **{r['peak_rss_gb']:.1f} GB** peak memory: "
        f"{r['preconditioner_seconds']:.0f} s to build the preconditioner (one Jacobian pass over "
        f"the {r['n']:,} inputs) and {r['seconds_per_iteration']:.1f} s per CG iteration (one vjp "
        f"and one jvp pass). The dense kernel alone would be {r['n'] * 5:,}² float64 = "
        f"{dense_gb:.0f} GB and the reference approach's float32 Jacobian {jac_gb:.0f} GB. Only "
        f"{r['iterations']} iterations were run (to bound the session's time); on this random "
        f"problem the residual was already {_sci(r['relative_residual_after'])}.\n"
    )


def fisher_targets() -> str:
    """The one-pass Fisher diagonal against the scale issue's targets (``fisher_pass.json``)."""
    rows = {r["model"]: r for r in _load("fisher_pass.json")["rows"]}
    r18, acnn = rows["resnet18 x0.4"], rows["allcnn x0.4"]

    def met(x: float, target: float, unit: str = "") -> str:
        return f"{'met' if x <= target else 'not met'}, by {abs(x - target):.2f}{unit}"

    return (
        f"Against the targets of the scale issue: the ResNet-18 ×0.4 Fisher diagonal at |D_r| = "
        f"{r18['n_retain']} took {r18['fisher_one_pass_seconds']:.1f} s for the one pass and "
        f"{r18['fisher_at_scrubbed_point_seconds']:.1f} s at the scrubbed point (target 20 s: "
        f"{met(r18['fisher_one_pass_seconds'], 20.0, ' s')}, inside this machine's spread); the "
        "Jacobian-block "
        f"path, extrapolated from {r18['jacobian_path_samples']} samples, would take "
        f"{r18['fisher_jacobian_path_seconds_extrapolated']:.0f} s. `ntk_fisher` costs "
        f"{r18['ntk_fisher_over_ntk']:.2f}× `ntk` on ResNet-18 (target ≤ 1.3×, "
        f"{met(r18['ntk_fisher_over_ntk'], 1.3)}) and {acnn['ntk_fisher_over_ntk']:.2f}× on "
        f"All-CNN ({met(acnn['ntk_fisher_over_ntk'], 1.3)}: the All-CNN's NTK step is cheap, "
        f"{acnn['ntk_step_seconds']:.0f} s, while its Fisher runs 32×32 convolutions over every "
        "sample). The one pass and the Jacobian-block path agree to float32 rounding "
        f"({_sci(max(r['one_pass_vs_jacobian_relative_difference'] for r in rows.values()))} "
        "at most; float64 agreement with the brute force is tested in `tests/test_fisher.py`).\n"
    )


def deletion_unanchored() -> str:
    """The authors' unanchored linearization on CPU (``deletion_cpu_unanchored.json``)."""
    r = _load("deletion_cpu_unanchored.json")["rows"][0]
    ex, ps = r["exact"], r["pseudo"]
    return (
        "CPU, the authors' unanchored linearization (`--unanchored`, "
        f"`benchmarks/results/deletion_cpu_unanchored.json`): exact request "
        f"{ex['request_seconds']:.2f} s against {r['retrain_seconds']:.0f} s of retraining "
        f"(1/{1 / ex['request_vs_retrain']:.0f}); the pseudo-NTK's δw has cosine "
        f"{ps['delta_cosine_vs_exact']:.2f} with the exact one and the scrubbed model's D_r error "
        f"is {ps['readouts']['error_retain']:.2f} (exact: {ex['readouts']['error_retain']:.2f}, "
        f"retrain: {r['retrain']['error_retain']:.2f}).\n"
    )


def gpu_scale50k() -> str:
    """The 50,000-image pseudo-NTK deletion on an H200 (``gpu_scale50k.json``)."""
    d = _load("gpu_scale50k.json")
    return (
        f"**{d['n']:,} images, pseudo-NTK, H200** (`benchmarks/results/gpu_scale50k.json`): the "
        "10,000 real CIFAR-10 training images of `cifar10.npz` and 4 augmented views of each "
        "(flips, 4-pixel crops) — the full CIFAR-10 training set is not on this machine — "
        f"{d['classes']} classes, All-CNN ×0.4 fine-tuned {d['finetune_epochs']} epochs (capped to "
        f"fit the device time; training error {100 * d['finetune_train_error']:.0f} %). Prepare "
        f"{d['prepare_seconds']:.1f} s ({d['kernel_gib']:.1f} GiB float64 factor, "
        f"{d['prepare_peak_gpu_gib']:.1f} GiB peak); a {d['n_forget']}-image request "
        f"{d['request_seconds']:.1f} s ({d['request_iterations']} PCG iterations, residual "
        f"{_sci(d['request_relative_residual'])}), a second request "
        f"{d['second_request_seconds']:.1f} s; retraining on D_r with the same "
        f"{d['retrain_epochs']} epochs {d['retrain_seconds']:.1f} s (request / retrain = "
        f"1/{1 / d['request_vs_retrain']:.0f}).\n"
    )


def _sanity(name: str) -> str:
    d = _load(name)
    return (
        f"CG vs dense {_sci(d['cuda_cg_vs_dense'])}, prepared vs dense "
        f"{_sci(d['cuda_prepared_vs_dense'])}, GPU vs CPU {_sci(d['cuda_vs_cpu_dense'])}"
    )


def gpu_sanity_h200() -> str:
    """The H200 session's float64 sanity line (``gpu_sanity_h200.json``)."""
    return (
        "**H200, current engine** (2026-11-26; `benchmarks/results/gpu_engine_h200.json`, "
        f"float64 sanity in `gpu_sanity_h200.json`: {_sanity('gpu_sanity_h200.json')}):\n"
    )


def _speedups(name: str) -> list[float]:
    return [r["reference"]["seconds"] / r["dense"]["seconds"] for r in _load(name)
            if "seconds" in r.get("reference", {})]  # fmt: skip


def _prepared_diffs(name: str) -> list[float]:
    key = "prepared_vs_scratch_rel_diff"
    return [r[k][key] for r in _load(name) for k in ("exact", "pseudo") if key in r.get(k, {})]


def _dense_vs_reference(name: str) -> list[float]:
    key = "rel_diff_vs_reference"
    return [r["dense"][key] for r in _load(name) if "seconds" in r.get("reference", {})]


def gpu_bullets() -> str:
    """What the GPU tables say, in words (the three GPU sessions' JSON)."""
    off = "gpu_tf32_off/"
    ref_off, ref_on = (
        _dense_vs_reference(off + "gpu_engine.json"),
        _dense_vs_reference("gpu_engine.json"),
    )

    def times(name: str) -> str:
        return _span(_speedups(name), lambda v: f"{v:.0f}")

    h100_big = next(r for r in _load("gpu_engine.json") if r["n"] == 5000)
    out = [
        f"- The batched engine against the per-sample loop: **{times('gpu_engine.json')}× "
        f"faster** on the H100 (first run, TF32 on), {times(off + 'gpu_engine.json')}× on the "
        f"H200 after the TF32 fix, {times('gpu_engine_h200.json')}× with the current engine; "
        "the reference approach is not run past |D| = 1,000 (its Jacobian grows as |D|·c·p). "
        f"On the H100, |D| = 5,000 took {h100_big['dense']['seconds']:.1f} s dense and "
        f"{h100_big['cg']['seconds']:.1f} s matrix-free ({h100_big['cg']['peak_gpu_gib']:.1f} GiB)."
    ]
    pct = [100 * x for x in _prepared_diffs("gpu_deletion.json")]
    fixed = _prepared_diffs(off + "gpu_deletion.json")
    out.append(
        f"- **TF32.** The first run's δw differed from the reference by "
        f"{_span(ref_on, lambda v: f'{100 * v:.1f} %')} and the prepared request from the "
        f"from-scratch scrub by {_span(pct, lambda v: f'{v:.1f}')} %: cuDNN runs float32 "
        "convolutions in TF32 by default on these GPUs, and the kernel's conditioning amplifies "
        "that rounding. The engine now turns TF32 off for its own work (`ntk.full_precision`, "
        "restored afterwards); with it the H200 run agrees with the reference to "
        f"{_span(ref_off, _sci)} and prepared with from-scratch to {_span(fixed, _sci)}, as on "
        "the CPU."
    )
    out.append(
        f"- float64 on the GPU (sanity check, MLP, H100): {_sanity('gpu_sanity.json')} "
        "(`benchmarks/results/gpu_sanity.json`)."
    )
    return "\n".join(out) + "\n"


def gpu_h200_5000() -> str:
    """Dense against matrix-free at |D| = 5,000 on the H200 (``gpu_engine_h200.json``)."""
    h200 = next(r for r in _load("gpu_engine_h200.json") if r["n"] == 5000)
    h100 = next(r for r in _load("gpu_engine.json") if r["n"] == 5000)
    m = 5 * h200["n"]
    flops = 2 * h200["p"] * m**2
    its = max(x["iterations"] for x in h200["cg"]["reports"])
    return (
        "(|D| = 5,000 came from a second call on the same warm machine, `--engine-sizes 5000`: "
        "the first call's deadline rule skipped it. At 5,000 the dense solver is "
        f"{h200['dense']['seconds'] / h200['cg']['seconds']:.1f}× slower than CG on this GPU: it "
        f"forms the whole {m:,} × {m:,} kernel (2 · {h200['p'] / 1e6:.2f} M · {m:,}² ≈ "
        f"{_sci(flops)} flops in float32 with TF32 off; the H100 run with TF32 on took "
        f"{h100['dense']['seconds']:.1f} s), while CG needs "
        f"{_count(its, 'preconditioned iteration')} on "
        "these well-conditioned random inputs. Not broken down further.)\n"
    )


PROSE: dict[str, Callable[[], str]] = {
    "structured-exactness": structured_exactness,
    "structured-allcnn-rule": structured_allcnn_rule,
    "structured-end-to-end": structured_end_to_end,
    "scaling-retrain": scaling_retrain,
    "scaling-inplace": scaling_inplace,
    "nystrom-real": nystrom_real,
    "resnet-5000": resnet_5000,
    "fisher-targets": fisher_targets,
    "deletion-unanchored": deletion_unanchored,
    "gpu-scale50k": gpu_scale50k,
    "gpu-sanity-h200": gpu_sanity_h200,
    "gpu-bullets": gpu_bullets,
    "gpu-h200-5000": gpu_h200_5000,
}
