"""The generated parts of the results documentation, from the committed results.json and
evaluation.json files: every verdict and number in them comes from here (issue 30).

    .venv/bin/python benchmarks/results_overview.py                  # prints the overview table
    .venv/bin/python benchmarks/results_overview.py claims FOLDER    # one run's claim table
    .venv/bin/python benchmarks/results_overview.py path             # where the NTK path is
                                                                     # closest to retraining
    .venv/bin/python benchmarks/results_overview.py bounds           # bounds against the content
    .venv/bin/python benchmarks/results_overview.py cohorts          # the digits cohorts measured
    .venv/bin/python benchmarks/results_overview.py write            # rewrites every fragment

A fragment sits in a Markdown file between ``<!-- generated: results_overview.py NAME [ARG] -->``
and ``<!-- end generated -->``; ``write`` fills them all, and tests/test_results_docs.py fails
when one is stale.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from forgetbox.experiment import claims
from forgetbox.report.headline import cohort_content_nats, compute_summary, headline_rows
from forgetbox.report.lede import times

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
COHORTS = Path(__file__).with_name("results") / "digits_cohorts"
MARK = {"holds": "✓", "fails": "✗", "inconclusive": "?"}
DOCS = ("README.md", "docs/results/README.md", "docs/bounds-readouts.md", "docs/experiment.md")
BEGIN = re.compile(r"<!-- generated: results_overview\.py ([\w-]+)(?: ([\w./-]+))? -->\n")
END = "<!-- end generated -->"


def judged(folder: Path) -> dict:
    """A run's results judged with today's rules (and cross-checked as ``forgetbox report``
    does)."""
    r = json.loads((folder / "results.json").read_text())
    return claims.judge(r, folder if folder.parent == RESULTS else None)


def runs() -> list[Path]:
    """Every committed run folder."""
    return sorted(p.parent for p in RESULTS.glob("*/results.json"))


def _hardware(r: dict) -> str:
    hw = (r.get("provenance") or {}).get("hardware")
    if not hw:  # runs from before provenance was recorded: only the configured device
        device = r["config"].get("device", "cpu")
        return f"not recorded (device {device})"
    if hw.get("gpu"):
        return hw["gpu"]
    threads = hw.get("torch_threads", 2)
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def _source(r: dict) -> str:
    """The commit a run's code came from, ``+ local changes`` where the tree was dirty."""
    prov = r.get("provenance") or {}
    src = prov.get("source")
    if not src:
        late = prov.get("reconstructed") and prov.get("created")
        return "not recorded" + (f"; {late} (reconstructed, the report says how)" if late else "")
    when = prov.get("created", "")[:10]
    comp = r.get("compute") or {}
    cached = comp.get("from_cache_seconds") and not comp.get("this_run_seconds")
    return f"{src['commit'][:7]}{' + local changes' if src['dirty'] else ''}, {when}" + (
        " (rendered; stages from an earlier run's cache)" if cached else ""
    )


def verdicts(r: dict) -> str:
    """``1✓ 2? ...``."""
    return " ".join(f"{c['id']}{MARK[c['verdict']]}" for c in r["claims"])


def cross_marks(r: dict) -> str:
    """The cross-check as ``1 ?/?, 2 ✓/✓, **4 ?/✗**`` (run / ensemble; flagged in bold)."""
    cc = r.get("cross_check")
    if not cc:
        return "—"
    parts = []
    for c in cc["claims"]:
        text = f"{c['id']} {MARK[c['run']]}/{MARK[c['ensemble']]}"
        parts.append(f"**{text}**" if c["flag"] != "agrees" else text)
    return f"{cc['evaluation']}: " + ", ".join(parts)


def _what(cfg: dict) -> str:
    preset = cfg.get("preset", "forgetbox")
    what = f"{cfg['dataset']}, {cfg['model']} ×{cfg['width']}, {cfg['profile']} profile"
    if cfg["dataset"] == "digits":
        k = cfg.get("num_to_forget")
        what += ", whole class 0" if k is None else f", {k} of class {cfg['forget_class']}"
    return what + (f", preset {preset}" if preset != "forgetbox" else "")


def row(folder: Path) -> str:
    """One run's line of the overview table."""
    r = judged(folder)
    rows = {h["method"]: h for h in headline_rows(r)}
    ntk, ret = rows.get("ntk"), rows.get("retrain")
    nums = ""
    if ntk and ret and ntk["speedup"]:
        f, r_f = 100 * ntk["error_forget"][0], 100 * ret["error_forget"][0]
        dr = 100 * ntk["error_retain"][0]
        nums = (
            f"D_f err {f:.0f} % (retrain {r_f:.0f} %), D_r err {dr:.1f} %, "
            f"{times(ntk['speedup'][0])} than retraining"
        )
    comp = compute_summary(r)
    total = comp["total_seconds"]
    comp_text = (f"{total / 60:.0f} min" if total >= 90 else f"{total:.0f} s") + (
        " (recorded stages)" if comp["partial"] else ""
    )
    return (
        f"| [{folder.name}]({folder.name}/report.html) | {_what(r['config'])} "
        f"| {len(r['seeds'])} | {_hardware(r)} | {_source(r)} | {comp_text} | {verdicts(r)} "
        f"| {cross_marks(r)} | {nums} |"
    )


def overview() -> str:
    """The overview table of every committed run."""
    lines = [
        "| run | data, model, profile | seeds | hardware | source commit, date | compute "
        "| claims 1-9 | ensemble cross-check (run/ensemble) | NTK (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(lines + [row(f) for f in runs()])


def claim_table(folder: Path) -> str:
    """One run's claims as a Markdown table: verdict, the rule it was judged by, the evidence."""
    r = judged(folder)
    lines = [
        f"| # | claim | verdict ({len(r['seeds'])} seeds) | rule | evidence |",
        "|---|---|---|---|---|",
    ]
    for c in r["claims"]:
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
        end = " (end)" if best_a == pts[-1][0] else ""
        fixed = " (fixed)" if r["config"].get("step_scale") is not None else ""
        lines.append(
            f"| {folder.name} | {seed} | {scale:.2f}{fixed} | {best_a:g}{end} "
            f"| {best_a * scale:.2f} | {at_one:.3f} | {best_l1:.3f} |"
        )
    return lines


def path_table() -> str:
    """Where the NTK path comes closest to retraining, every run and seed."""
    lines = [
        "| run | seed | trapezium scale | closest alpha | × unscaled step "
        "| L1 on D_f at alpha = 1 | L1 at the closest |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in runs():
        lines += path_rows(folder)
    return "\n".join(lines)


def _closest(folder: Path) -> list[tuple[int, float, float, bool]]:
    """Per seed: ``(seed, closest alpha, x unscaled step, at the grid's end)``."""
    r = json.loads((folder / "results.json").read_text())
    scales = {p["seed"]: p.get("trapezium_scale") or 1.0 for p in r["methods"]["ntk"]["per_seed"]}
    path = [p for p in r.get("activation_path", []) if p["method"] == "ntk"]
    out = []
    for seed in sorted({p["seed"] for p in path}):
        pts = sorted((p["alpha"], p["forget"]) for p in path if p["seed"] == seed)
        best = min(pts, key=lambda t: t[1])[0]
        out.append((seed, best, best * scales[seed], best == pts[-1][0]))
    return out


def path_summary() -> str:
    """What the path table says, in words (forgetbox's direction; the authors' preset apart; a
    run at a fixed step scale left out: it repeats another run's scrubs at another length)."""
    configs = {f.name: judged(f)["config"] for f in runs()}
    ours = {f.name: _closest(f) for f in runs() if configs[f.name].get("preset", "forgetbox")
            == "forgetbox" and configs[f.name].get("step_scale") is None}  # fmt: skip
    authors = {f.name: _closest(f) for f in runs() if configs[f.name].get("preset", "forgetbox")
               != "forgetbox"}  # fmt: skip
    seeds = [x for v in ours.values() for x in v]
    steps = sorted(x[2] for x in seeds)
    median = statistics.median(steps)
    near = sum(abs(x[1] - 1.0) <= 0.25 for x in seeds)

    def where(cond, table):
        hits = [f"{n} (seed {', '.join(str(x[0]) for x in v if cond(x))})" for n, v in
                table.items() if any(cond(x) for x in v)]  # fmt: skip
        return "; ".join(hits) or "none"

    a_seeds = [x for v in authors.values() for x in v]
    return (
        f"Over the {len(seeds)} seeds of the {len(ours)} runs with forgetbox's default direction, "
        f"the closest point lies at {steps[0]:.1f}–{steps[-1]:.1f} times the unscaled step "
        f"(median {median:.1f}); in {near} of them it is within a quarter of the scaled step of "
        f"α = 1. The default overshoots where the closest point is at α ≤ 0.5: "
        f"{where(lambda x: x[1] <= 0.5, ours)}; the closest point is at the end of the grid on "
        f"{where(lambda x: x[3], ours)}. The authors' preset (unanchored direction) is closest "
        f"at the end of its grid on {sum(x[3] for x in a_seeds)} of its {len(a_seeds)} seeds."
    )


def bounds_table() -> str:
    """ntk_fisher's bounds against the cohort's raw content, every run."""
    lines = [
        "| run | \\|D_f\\| | raw content (nats) | white box, mean (largest seed) "
        "| vacuous seeds | black box per D_f query, mean | claims 6 / 7 / 9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in runs():
        r = judged(folder)
        c = cohort_content_nats(r)
        rows = r["methods"]["ntk_fisher"]["per_seed"]
        w = [x["info_weights_nats"] for x in rows]
        b = [x["info_activations_nats_forget"] for x in rows]
        n = r.get("task", {}).get("n_forget") or r["config"]["num_to_forget"]
        v = {cl["id"]: MARK[cl["verdict"]] for cl in r["claims"]}
        lines.append(
            f"| {folder.name} | {n} | {c:.3g} | {sum(w) / len(w):.3g} ({max(w):.3g}) "
            f"| {sum(x >= c for x in w)} of {len(w)} | {sum(b) / len(b):.3g} "
            f"| {v[6]} / {v[7]} / {v[9]} |"
        )
    return "\n".join(lines)


def cohort_runs() -> list[tuple[str, dict]]:
    """The digits cohorts measured for the default: the two committed runs and the candidates
    kept under benchmarks/results/digits_cohorts (results.json without the PCA points)."""
    out = [(f.name, judged(f)) for f in runs() if f.name.startswith("digits-")]
    for path in sorted(COHORTS.glob("*.json")):
        out.append((path.stem + " (candidate)", claims.judge(json.loads(path.read_text()))))
    return out


def cohorts_table() -> str:
    """What each digits cohort does to D_f, and its verdicts."""
    lines = [
        "| run | cohort | D_f error: original / retrain / ntk (mean; seeds) | retrain's test error "
        "| claims 1-9 |",
        "|---|---|---|---|---|",
    ]
    for name, r in cohort_runs():
        cfg, m = r["config"], r["methods"]
        k = cfg["num_to_forget"]
        cohort = f"whole class {cfg['forget_class']}" if k is None else f"{k} of class 0"

        def err(method, m=m):
            s = ", ".join(f"{x['error_forget']:.2f}" for x in m[method]["per_seed"])
            return f"{m[method]['mean']['error_forget']:.2f} ({s})"

        lines.append(
            f"| {name} | {cohort} | {err('original')} / {err('retrain')} / {err('ntk')} "
            f"| {m['retrain']['mean']['error_test']:.3f} | {verdicts(r)} |"
        )
    return "\n".join(lines)


def _n(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def default_paragraph() -> str:
    """README.md's "What the embedded default shows", from the two committed digits runs."""
    d, p = judged(RESULTS / "digits-default"), judged(RESULTS / "digits-paper-cohort")

    def count(r, v):
        return sum(c["verdict"] == v for c in r["claims"])

    def ids(r, v):
        got = [str(c["id"]) for c in r["claims"] if c["verdict"] == v]
        return ", ".join(got) if got else "none"

    md, mp = d["methods"], p["methods"]
    n = d["task"]["n_forget"]
    content = cohort_content_nats(d)
    nf = md["ntk_fisher"]["per_seed"]
    vacuous = all(
        x["info_weights_nats"] >= content and x["info_activations_nats_forget"] >= content
        for x in nf
    )
    bounds = (
        "NTK + Fisher's white-box bound and its black-box bound per D_f query are above the "
        "cohort's raw content on every seed (vacuous), so claims 6 and 7, which compare them, "
        "decide nothing"
        if vacuous
        else "the bounds are in each verdict's evidence"
    )
    return (
        f"**What the embedded default shows.** `make run` forgets the whole class 0 of the "
        f"embedded digits ({n} training images per seed): the retrained model misclassifies "
        f"{100 * md['retrain']['mean']['error_forget']:.0f} % of them, the original "
        f"{100 * md['original']['mean']['error_forget']:.0f} %, and NTK scrubbing "
        f"{100 * md['ntk']['mean']['error_forget']:.0f} % at a D_r error of "
        f"{100 * md['ntk']['mean']['error_retain']:.1f} %. Of the nine claims "
        f"{_n(count(d, 'holds'), 'holds', 'hold')} ({ids(d, 'holds')}), "
        f"{_n(count(d, 'fails'), 'fails', 'fail')} ({ids(d, 'fails')}) and "
        f"{_n(count(d, 'inconclusive'), 'is', 'are')} inconclusive: each verdict must "
        "clear its boundary by one image of the cohort and by the spread of the three seeds, and "
        f"{bounds} (report: "
        "[digits-default](docs/results/digits-default/report.html)). The paper's cohort, 15 "
        "random images of class 0 (`forgetbox run --num-to-forget 15`), barely changes the "
        f"model: retraining without it misclassifies "
        f"{100 * mp['retrain']['mean']['error_forget']:.0f} % of it, so the claims that need "
        f"forgetting to be visible are inconclusive ({_n(count(p, 'holds'), 'holds', 'hold')}, "
        f"{_n(count(p, 'fails'), 'fails', 'fail')}, {count(p, 'inconclusive')} inconclusive; "
        "[digits-paper-cohort](docs/results/digits-paper-cohort/report.html)). The default "
        "checks the installation and the pipeline in minutes; the paper's claims are tested on "
        "real CIFAR-10 and Tiny ImageNet below."
    )


def _shift(r: dict) -> str:
    """``D_f error 0 → 40 % (retrain 33 %), D_r error 0.0 %`` for NTK scrubbing in a run."""
    m = r["methods"]
    return (
        f"D_f error {100 * m['original']['mean']['error_forget']:.0f} → "
        f"{100 * m['ntk']['mean']['error_forget']:.0f} % (retrain "
        f"{100 * m['retrain']['mean']['error_forget']:.0f} %), D_r error "
        f"{100 * m['ntk']['mean']['error_retain']:.1f} %"
    )


def runs_paragraph() -> str:
    """README.md's paragraph on the real-image runs beside the verdict table."""
    rs = {f.name: judged(f) for f in runs()}
    holds9 = [n for n, r in rs.items() if any(c["id"] == 9 and c["verdict"] == "holds"
              for c in r["claims"])]  # fmt: skip
    out = [
        "Claim 9 (NTK + Fisher leaves less information in the weights than Fisher at the same "
        "noise) holds on "
        + (
            f"{len(holds9)} of the {len(rs)} runs ({', '.join(holds9)})"
            if holds9
            else f"none of the {len(rs)} runs"
        )  # fmt: skip
        + " — the white-box bound compares with one retrained weight vector, which the NTK step "
        "does not approach in weight space although it reaches it in function space "
        "([why](docs/bounds-readouts.md#claim-9-does-the-ntk-shift-lower-the-information-left-"
        "at-the-same-noise))."
    ]
    # the ensemble the run's cross-check read (the largest committed one of its setup)
    checked = (rs.get("cifar5-allcnn-cpu") or {}).get("cross_check") or {}
    ev = RESULTS / checked.get("evaluation", "cifar5-allcnn-evaluate") / "evaluation.json"
    if ev.is_file():
        e = json.loads(ev.read_text())
        rate, band = e["methods"]["ntk"]["readouts"]["mia_forget_member_rate"], e["bands"][
            "mia_forget_member_rate"]  # fmt: skip
        out.append(
            f"On CIFAR-5 the K = {e['config']['evaluate']['models']} ensemble of the same setup "
            f"puts the paper's entropy attack at {100 * rate['median']:.0f} % of D_f called "
            f"members on the NTK-scrubbed models, {rate['side']} the retrain band "
            f"[{100 * band['low']:.0f} %, {100 * band['high']:.0f} %]."
        )
    named = {
        "cifar5-resnet18-cpu": "ResNet-18 ×0.4 on CIFAR-5 at the CPU profile",
        "tiny5-allcnn-cpu": "On the paper's second data set, Tiny ImageNet (32×32 copy; "
        "pre-trained on its first 150 classes, fine-tuned on five others), All-CNN ×0.4",
        "tiny5-resnet18-cpu": "ResNet-18 ×0.4 on the same Tiny ImageNet split",
    }
    for name, what in named.items():
        if name not in rs:
            continue
        r, closest = rs[name], _closest(RESULTS / name)
        alphas = ", ".join(f"{a:g}" for _, a, _, _ in closest)
        mia = r["methods"]
        out.append(
            f"{what} ({_n(len(r['seeds']), 'seed', 'seeds')}): {_shift(r)}, entropy attack "
            f"{mia['original']['mean']['mia_forget_member_rate']:.2f} → "
            f"{mia['ntk']['mean']['mia_forget_member_rate']:.2f} (retrain "
            f"{mia['retrain']['mean']['mia_forget_member_rate']:.2f}); the D_f outputs come "
            f"closest to the retrained model's at α = {alphas} of the scaled step "
            f"(per seed)."
        )
    return " ".join(out)


def experiment_headline() -> str:
    """README.md's one-sentence summary of the real-image runs: NTK on CIFAR-5 with All-CNN and
    with ResNet-18, its errors and its cost against retraining."""
    out = []
    for name, what in (
        ("cifar5-allcnn-cpu", "All-CNN ×0.4"),
        ("cifar5-resnet18-cpu", "ResNet-18 ×0.4"),
    ):
        if not (RESULTS / name / "results.json").is_file():
            continue
        rows = {h["method"]: h for h in headline_rows(judged(RESULTS / name))}
        ntk, ret = rows["ntk"], rows["retrain"]
        out.append(
            f"with {what} NTK scrubbing moves the D_f error to "
            f"{100 * ntk['error_forget'][0]:.0f} % (retrain {100 * ret['error_forget'][0]:.0f} %) "
            f"at a D_r error of {100 * ntk['error_retain'][0]:.1f} %, "
            f"{times(ntk['speedup'][0])} than retraining"
        )
    return (
        "On real CIFAR-10 (the paper's CIFAR-5 split, CPU profile, 3 seeds, converged "
        "fine-tuning), " + "; ".join(out) + "."
    )


def _pc(x: float) -> str:
    return f"{100 * x:.1f} %" if 0 < abs(x) < 0.1 else f"{100 * x:.0f} %"


def _pc1(x: float) -> str:
    return f"{100 * x:.1f} %"


def _span(values: list[float], fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def run_summary(arg: str) -> str:
    """A run's measured picture in one paragraph (means over seeds and per-seed spans, or one
    seed's values for ``NAME/SEED``): what NTK scrubbing does to every readout against the
    original and retraining, what the other methods do, their seconds and the fine-tunings'
    convergence."""
    name, _, only = arg.partition("/")
    r = judged(RESULTS / name)
    m, bands = r["methods"], r["retrain_bands"]
    keep = (lambda x: x["seed"] == int(only)) if only else (lambda x: True)

    def per_seed(method: str, key: str) -> list[float]:
        return [x[key] for x in m[method]["per_seed"] if keep(x) and x.get(key) is not None]

    def mean(method: str, key: str) -> float:
        return m[method]["mean"][key] if not only else per_seed(method, key)[0]

    band = bands["error_forget"]
    band_text = "" if only else f", band [{band['low']:.2f}, {band['high']:.2f}]"
    rates = " / ".join(f"{v:.2f}" for v in per_seed("ntk", "mia_forget_member_rate"))
    out = [f"Seed {only}:"] if only else []
    out += [
        f"NTK scrubbing moves the D_f error from {_pc(mean('original', 'error_forget'))} to "
        f"{_pc(mean('ntk', 'error_forget'))} (retrain {_pc(mean('retrain', 'error_forget'))}"
        f"{band_text}), the entropy attack's member rate on D_f "
        f"from {mean('original', 'mia_forget_member_rate'):.2f} to "
        f"{mean('ntk', 'mia_forget_member_rate'):.2f} (retrain "
        f"{mean('retrain', 'mia_forget_member_rate'):.2f}"
        f"{'' if only else f', per seed {rates}'}) and the L1 "
        f"distance to the retrained outputs on D_f from "
        f"{mean('original', 'l1_to_retrain_forget'):.2f} to "
        f"{mean('ntk', 'l1_to_retrain_forget'):.2f}, with the D_r error at "
        f"{_pc1(mean('ntk', 'error_retain'))} and the test error "
        f"{_pc1(mean('original', 'error_test'))} → {_pc1(mean('ntk', 'error_test'))} (retrain "
        f"{_pc1(mean('retrain', 'error_test'))})."
    ]
    path = [q for q in r.get("activation_path", []) if q["method"] == "ntk" and keep(q)]
    if path:
        alphas = sorted({q["alpha"] for q in path})

        def curve(side: str) -> list[float]:
            return [statistics.mean(q[side] for q in path if q["alpha"] == a) for a in alphas]

        forget, retain = curve("forget"), curve("retain")
        points = ", ".join(f"{v:.2f} at α = {a:g}" for a, v in zip(alphas, forget, strict=True))
        out.append(
            f"Along the scrubbing direction (Fig. 4, mean over seeds) the L1 distance to the "
            f"retrained outputs on D_f is {points}; on D_r it moves by "
            f"{max(retain) - min(retain):.3f}."
        )
    if r["config"].get("step_scale") is not None:
        out.append(
            f"The NTK step is {r['config']['step_scale']:g} times the unscaled step (a fixed "
            f"step_scale), not the trapezium's scale."
        )
    elif "trapezium_scale" in m["ntk"]["per_seed"][0]:
        out.append(
            f"The trapezium scale is {_span(per_seed('ntk', 'trapezium_scale'), '{:.2f}'.format)}."
        )
    others = []
    for method, what in (
        ("fisher", f"Fisher at α = {r['config'].get('alpha_fisher'):g}"),
        ("ntk_fisher", f"NTK + Fisher at α = {r['config'].get('alpha_ntk_fisher'):g}"),
        ("finetune", "fine-tuning"),
        ("newton", "Newton"),
    ):
        if method in m:
            others.append(
                f"{what}: D_f {_pc(mean(method, 'error_forget'))}, D_r "
                f"{_pc1(mean(method, 'error_retain'))}, test {_pc1(mean(method, 'error_test'))}"
            )
    if others:
        lead = "Errors of" if only else "Mean errors of"
        out.append(f"{lead} the other methods — " + "; ".join(others) + ".")
    secs = [
        f"{name} {_span(per_seed(name, 'seconds'), lambda v: f'{v:.0f}')} s"
        for name in ("ntk", "ntk_fisher", "fisher", "newton")
        if name in m and per_seed(name, "seconds")
    ]
    training = [t for t in r.get("training") or [] if keep(t)]
    retrain_s = [t["retrain"]["seconds"] for t in training if t["retrain"].get("seconds")]
    if retrain_s:
        secs.append(f"retraining {_span(retrain_s, lambda v: f'{v:.0f}')} s")
    if secs:
        out.append("Seconds per seed: " + ", ".join(secs) + ".")
    if training:
        for which in ("original", "retrain"):
            errs = [t[which]["train_error"] for t in training]
            epochs = [t[which]["epochs"] for t in training]
            out.append(
                f"Fine-tuning ({which}): training error {_span(errs, _pc)} after "
                f"{_span(epochs, str)} epochs."
            )
    return " ".join(out)


def rerun_check(name: str) -> str:
    """How a provenance rerun compares with the run it replaced
    (benchmarks/results/rerun_check-NAME.json, written by benchmarks/rerun_check.py)."""
    doc = json.loads((ROOT / f"benchmarks/results/rerun_check-{name}.json").read_text())
    rows = doc["readouts"]
    exact = sorted(k for k, v in rows.items() if not v["different"])
    moved = {k: v for k, v in rows.items() if v["different"]}
    small = {k: v for k, v in moved.items() if v["max_rel"] < 1e-3}
    large = {k: v for k, v in moved.items() if k not in small}
    ident = sum(v["identical"] for v in rows.values())
    total = ident + sum(v["different"] for v in rows.values())
    same = doc["verdicts"]["replaced"] == doc["verdicts"]["rerun"]
    sec = doc["seconds"]

    def span(xs: list[float]) -> str:
        return f"{min(xs):.0f}–{max(xs):.0f} s"

    groups: dict[tuple, list[str]] = {}
    for key, v in sorted(small.items()):
        groups.setdefault(tuple(v.get("methods", [])), []).append(key)
    where = "; ".join(f"{', '.join(keys)} of {', '.join(ms)}" for ms, keys in groups.items())
    out = [
        f"Against the run it replaces (commit {doc['replaced_at']}), {ident} of {total} per-seed "
        f"readouts are bit-identical — every value of {', '.join(exact)} —"
        + (" and so is every verdict" if same else "; the verdicts differ")
        + f". The others differ by at most {max(v['max_rel'] for v in small.values()):.1e} "
        f"relative ({where})"
    ]
    for key, v in sorted(large.items()):
        out.append(
            f"; {key} differs on {v['different']} value(s) ({', '.join(v['methods'])}), by up to "
            f"{100 * v['max_rel']:.0f} % relative"
        )
    out.append(
        f". Seconds per seed, NTK against retraining: {span(sec['replaced']['ntk'])} against "
        f"{span(sec['replaced']['retrain'])} in the replaced run, {span(sec['rerun']['ntk'])} "
        f"against {span(sec['rerun']['retrain'])} in the rerun."
    )
    return "".join(out)


STUDIES = {"cifar5-resnet18-cpu-step23": "cifar5-resnet18-cpu"}
"""A study run and the committed run it repeats with one setting changed (same stage cache)."""


def step_study(name: str) -> str:
    """A fixed-step-scale study against the run it repeats: per seed, NTK's readouts at the
    fixed step and at the trapezium's, the unchanged stages checked equal, and the verdicts
    that moved."""
    study, base = judged(RESULTS / name), judged(RESULTS / STUDIES[name])
    sm, bm = study["methods"], base["methods"]
    same = all(sm[m]["per_seed"] == bm[m]["per_seed"] for m in ("original", "retrain", "finetune"))

    def seeds(methods: dict, key: str, fmt: str) -> str:
        return " / ".join(fmt.format(x[key]) for x in methods["ntk"]["per_seed"])

    scales = [x["trapezium_scale"] for x in bm["ntk"]["per_seed"]]
    rows = [  # (what, key, format, whether the retrain row's value means anything)
        ("L1 distance to the retrained outputs on D_f", "l1_to_retrain_forget", "{:.3f}", False),
        ("D_f error", "error_forget", "{:.2f}", True),
        ("entropy attack's member rate on D_f", "mia_forget_member_rate", "{:.2f}", True),
        ("D_r error", "error_retain", "{:.3f}", True),
        ("test error", "error_test", "{:.3f}", True),
    ]
    step = f"{study['config']['step_scale']:g}"
    parts = [
        f"{what} {seeds(sm, key, fmt)} at {step} against {seeds(bm, key, fmt)} with the "
        f"trapezium (means {sm['ntk']['mean'][key]:.3f} and {bm['ntk']['mean'][key]:.3f}"
        + (f"; retrain {bm['retrain']['mean'][key]:.3f})" if with_retrain else ")")
        for what, key, fmt, with_retrain in rows
    ]
    moved = [
        f"claim {a['id']} {b['verdict']} → {a['verdict']}"
        for a, b in zip(study["claims"], base["claims"], strict=True)
        if a["verdict"] != b["verdict"]
    ]
    return (
        f"The NTK step at a fixed {study['config']['step_scale']:g} times the unscaled step "
        f"instead of the trapezium's {min(scales):.2f}–{max(scales):.2f}; the original, retrained "
        f"and fine-tuned models' readouts are "
        + ("identical in both runs (one stage cache)" if same else "NOT identical in both runs")
        + ". Per seed (seeds "
        + ", ".join(str(x["seed"]) for x in sm["ntk"]["per_seed"])
        + "), NTK's "
        + "; its ".join(parts)
        + ". Verdicts that differ from the trapezium run's: "
        + ("; ".join(moved) if moved else "none")
        + "."
    )


def verdict_table() -> str:
    """Per committed run: which claims hold, fail or are inconclusive, and what the ensemble
    cross-check flags."""
    lines = [
        "| run | hold | fail | inconclusive | flagged by an ensemble of the same setup |",
        "|---|---|---|---|---|",
    ]
    for folder in runs():
        r = judged(folder)
        by = {v: [str(c["id"]) for c in r["claims"] if c["verdict"] == v] for v in MARK}
        flags = [
            f"claim {c['id']}: {c['flag']} (ensemble: {c['ensemble']})"
            for c in (r.get("cross_check") or {}).get("claims", [])
            if c["flag"] != "agrees"
        ]
        cells = [", ".join(by[v]) or "—" for v in ("holds", "fails", "inconclusive")]
        lines.append(
            f"| [{folder.name}](docs/results/{folder.name}/report.html) | "
            + " | ".join(cells)
            + f" | {'; '.join(flags) or '—'} |"
        )
    return "\n".join(lines)


FRAGMENTS = {
    "overview": lambda arg: overview(),
    "claims": lambda arg: claim_table(RESULTS / arg),
    "path": lambda arg: path_table(),
    "bounds": lambda arg: bounds_table(),
    "cohorts": lambda arg: cohorts_table(),
    "default": lambda arg: default_paragraph(),
    "verdicts": lambda arg: verdict_table(),
    "path-summary": lambda arg: path_summary(),
    "runs": lambda arg: runs_paragraph(),
    "summary": run_summary,
    "rerun-check": rerun_check,
    "step-study": step_study,
    "experiment-headline": lambda arg: experiment_headline(),
}


def render(text: str) -> str:
    """``text`` with every generated fragment filled in afresh."""
    out, pos = [], 0
    for m in BEGIN.finditer(text):
        if m.start() < pos:
            continue
        end = text.index(END, m.end())
        out.append(text[pos : m.end()])
        out.append(FRAGMENTS[m.group(1)](m.group(2)) + "\n")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def main() -> None:
    cmd, arg = (sys.argv[1:] + ["overview", None])[:2]
    if cmd == "write":
        for name in DOCS:
            path = ROOT / name
            new = render(path.read_text())
            if new != path.read_text():
                path.write_text(new)
                print(f"rewrote {name}")
        return
    print(FRAGMENTS[cmd](arg))


if __name__ == "__main__":
    main()
