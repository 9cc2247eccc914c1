"""Prose that cannot drift: every fragment of the docs that quotes measured numbers is generated
from its JSON here, between markers

    <!-- fragment: NAME -->
    ...generated text...
    <!-- /fragment -->

``python benchmarks/fragments.py`` rewrites every fragment in place; ``--check`` exits 1 naming
each fragment that differs from what its JSON gives (``tests/test_docs_fragments.py`` runs the
same check, so a change of code or data cannot leave a stale sentence). Each generator is a
function of the repository root returning markdown; ratios below 1 read "N× slower".
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean

from forgetbox.audit.band import EDGE
from forgetbox.evaluation.config import PAIRED_RETRAIN as PAIRED
from forgetbox.report.evaluation_page import ROWS_NOT_TIMED, judged_interval

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(
    r"(<!-- fragment: (?P<name>[a-z0-9_-]+) -->\n)(?P<body>.*?)(<!-- /fragment -->)", re.S
)
GENERATORS: dict[str, Callable[[Path], str]] = {}


def fragment(name: str):
    """Register a generator of the fragment ``name``."""

    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        GENERATORS[name] = fn
        return fn

    return register


def speed(ratio: float) -> str:
    """``4.2× faster`` or ``1.3× slower`` (never "0.8× faster"); within 5 %: ``as fast``."""
    if 1 / 1.05 <= ratio <= 1.05:
        return "as fast"
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"


def secs(x: float) -> str:
    """Seconds with two significant digits below 10 s."""
    return f"{x:.2f} s" if x < 1 else f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def n_seeds(n: int) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} seed" + ("" if n == 1 else "s")


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _load(root: Path, rel: str) -> dict | None:
    path = root / rel
    return json.loads(path.read_text()) if path.is_file() else None


def _certified_rows(doc: dict) -> list[str]:
    rows = []
    for eps in sorted({r["epsilon"] for r in doc["certification"]}):
        rs = [r for r in doc["certification"] if r["epsilon"] == eps]
        rel = mean(r["errors_released"]["test"] for r in rs)
        ref = mean(r["errors_exact_retrain"]["test"] for r in rs)
        req = mean(r["request_seconds"] for r in rs)
        fast = mean(r["prepared_request_seconds"] for r in rs)
        lin = mean(r["linearized_retrain_seconds"] for r in rs)
        std = mean(r["standard_retrain_seconds"] for r in rs)
        rows.append(
            f"| {eps:g} | {rs[0]['mu']:.3f} | {rs[0]['sigma']:.2e} | {pct(rel)} | {pct(ref)} | "
            f"{secs(req)} ({speed(std / req)}) | {secs(fast)} ({speed(std / fast)}) | "
            f"{secs(lin)} | {secs(std)} |"
        )
    return rows


@fragment("certified-cost")
def certified_cost(root: Path) -> str:
    """The certification table of docs/certified.md, from every certified study's JSON."""
    out = []
    for path in sorted((root / "benchmarks/results").glob("certified_*.json")):
        doc = json.loads(path.read_text())
        setup = doc["setup"]
        seeds = sorted({r["seed"] for r in doc["certification"]})
        out.append(
            f"**{setup['model']} ×{setup['width']:g} on {setup['dataset']}** ({setup['profile']} "
            f"profile, {'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}; "
            f"`{path.relative_to(root)}`):\n"
        )
        out.append(
            "| ε (δ = 1e-5) | μ | σ | test error released | exact linearized retrain | "
            "one-off request (vs standard retrain) | prepared request | linearized retrain | "
            "standard retrain |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        out += _certified_rows(doc)
        out.append("")
    return "\n".join(out) if out else "No certified study has been committed yet.\n"


@fragment("linearization-cost")
def linearization_cost(root: Path) -> str:
    """Standard against linearized fine-tuning's test error, from the certified studies."""
    out = []
    for path in sorted((root / "benchmarks/results").glob("certified_*.json")):
        doc = json.loads(path.read_text())
        setup = doc["setup"]
        out.append(f"**{setup['model']} ×{setup['width']:g} on {setup['dataset']}**:\n")
        out.append(
            "| trained | parameters | standard test error | linearized test error "
            "| D_r error: standard / linearized |"
        )
        out.append("|---|---|---|---|---|")
        for trained in dict.fromkeys(r["trained"] for r in doc["linearization"]):
            rs = [r for r in doc["linearization"] if r["trained"] == trained]
            std = [r["errors"]["test"] for r in rs if r["fine-tuning"] == "standard"]
            lin = [r["errors"]["test"] for r in rs if r["fine-tuning"] == "linearized"]
            fit = {
                ft: pct(mean(r["errors"]["retain"] for r in rs if r["fine-tuning"] == ft))
                for ft in ("standard", "linearized")
            }
            out.append(
                f"| {trained} | {rs[0]['parameters']:,} | {pct(mean(std))} ({n_seeds(len(std))}) | "
                f"{pct(mean(lin))} ({n_seeds(len(lin))}) "
                f"| {fit['standard']} / {fit['linearized']} |"
            )
        out.append("")
    return "\n".join(out) if out else "No certified study has been committed yet.\n"


def _verdicts(evaluation: dict, link: str, lead: str = "Judged") -> str:
    """The certificate check's verdicts of a linearized evaluation, in words; ``link``: the
    evaluation's page, relative to the document; ``lead``: the sentence's first words."""
    check = evaluation["certificate"]
    cert = check["methods"]["certified"]
    control = check["control_original_with_noise"]
    k = cert["models"]
    return (
        f"{lead} by attacks (`forgetbox evaluate`, {k} certified releases against {k} of the "
        f"reference mechanism, exact linearized retrains with the same noise): the mean-margin "
        f"attack finds them **{cert['mean_margin_attack']['verdict']}** the (ε, δ) region, the "
        f"per-example attacks on each of the {cert['per_example']['examples']} images of D_f "
        f"{_per_example_words(cert['per_example'])}; the "
        f"negative control — the original model released with the same noise — is "
        f"**{control['mean_margin_attack']['verdict']}** it, so the check can fail "
        f"([the evaluation]({link}))."
    )


def _per_example_words(per: dict) -> str:
    """The per-example attacks' verdict as a predicate: "find them **inside** it (0 refuted)",
    or, where K is too small to refute even a perfect attack, "have **no power** at this K"."""
    if per["verdict"] == "no power":
        return f"have **no power** at this K ({per['refuted']} refuted)"
    return f"find them **{per['verdict']}** it ({per['refuted']} refuted)"


def _certified_evaluation(root: Path, name: str, what: str) -> str:
    """The certificate check of the committed linearized evaluation ``name`` (docs/evaluate.md)."""
    evaluation = _load(root, f"docs/results/{name}/evaluation.json")
    if evaluation is None:
        return f"The certified evaluation of {what} is not committed yet.\n"
    cert = evaluation["certificate"]["methods"]["certified"]
    mm, pe = cert["mean_margin_attack"], cert["per_example"]["worst"]
    sigma = evaluation["certificate"]["sigma"]
    return (
        f"At ε = {cert['epsilon']:g}, δ = {cert['delta']:g}, σ = {sigma:.2e}. "
        + _verdicts(evaluation, f"results/{name}/evaluation.html")
        + f" The mean-margin attack's margin is {mm['margin']:+.3f} where a perfect attack's "
        f"would be {mm['perfect_attack_margin']:+.3f} (positive: refuted); the worst example's "
        f"{pe['margin']:+.3f} against {pe['perfect_attack_margin']:+.3f}.\n"
    )


@fragment("certified-attacks")
def certified_attacks(root: Path) -> str:
    """docs/certified.md: the certificate check of every committed linearized evaluation."""
    out = []
    runs = {
        "digits-certified-evaluate": "On the digits default, judged",
        "cifar5-allcnn-certified-evaluate": "On real CIFAR-5, judged",
    }
    for name, what in runs.items():
        evaluation = _load(root, f"docs/results/{name}/evaluation.json")
        if evaluation is not None:
            link = f"results/{name}/evaluation.html"
            out.append(
                "- "
                + _verdicts(evaluation, link, lead=what)
                + _ulira_words(evaluation)
                + _paired_words(evaluation)
            )
    return "\n".join(out) + "\n" if out else "No certified evaluation is committed yet.\n"


@fragment("evaluate-certified-digits")
def evaluate_certified_digits(root: Path) -> str:
    """The certificate check on the digits default (docs/evaluate.md)."""
    return _certified_evaluation(root, "digits-certified-evaluate", "the digits default")


def largest_balanced_accuracy(eps: float, delta: float) -> float:
    """The largest balanced accuracy of any membership test against an (ε, δ) mechanism:
    TPR <= e^ε FPR + δ and 1 - FPR <= e^ε (1 - TPR) + δ, both tight."""
    fpr = (1 - delta) / (math.exp(eps) + 1)
    return (1 + delta + fpr * (math.exp(eps) - 1)) / 2


def certified_scores(root: Path, name: str) -> str:
    """A certified evaluation's methods table, and its U-LiRA against the certificate's bound."""
    evaluation = _load(root, f"docs/results/{name}/evaluation.json")
    if evaluation is None:
        return "Not committed yet.\n"
    cert = evaluation["certificate"]["methods"]["certified"]
    ulira = evaluation["methods"]["certified"].get("ulira")
    out = methods_table(root, name)
    if ulira:
        cap = largest_balanced_accuracy(cert["epsilon"], cert["delta"])
        out += (
            f"\nThe retrain row here is releases of the reference mechanism from independent "
            f"seeds; the certificate promises no indistinguishability from it, only that no "
            f"membership test beats (ε, δ) = ({cert['epsilon']:g}, {cert['delta']:g}), i.e. a "
            f"balanced accuracy of at most {cap:.3f}: U-LiRA's on the certified releases is "
            f"{ulira['balanced_accuracy']:.3f}"
            + (" (inside).\n" if ulira["balanced_accuracy"] <= cap else " (OUTSIDE).\n")
        )
    out += _pairing_words(evaluation)
    return out


def _both_scores(rows: dict) -> str:
    """A row's challenge points and D_f KLoM against its base, with their intervals."""
    return (
        f"{_vs(rows['challenge_points'], 3)} on the challenge's points and "
        f"{_vs(rows['klom_forget'], 2)} on KLoM over D_f"
    )


def _paired_words(evaluation: dict) -> str:
    """certified.md: the certified row against the paired retrain row, where one was scored."""
    paired = evaluation.get("against_paired_retrain")
    if not paired:
        return ""
    null = evaluation["certificate"]["methods"][PAIRED]["verdict"]
    rows = paired["certified"]
    apart = [k for k in ("challenge_points", "klom_forget") if rows[k]["distinguishable"]]
    told = "both intervals include 0" if not apart else "an interval excludes 0 (≠)"
    return (
        f" Against the paired retrain row (the references' own exact retrains with fresh "
        f"noise, so the same seeds) the certified releases differ by "
        f"{_both_scores(rows)} ({told}); that row's own certificate check, a null control of "
        f"the test, reads **{null}**."
    )


def _pairing_words(evaluation: dict) -> str:
    """Why the certified row is compared with a paired retrain row too, and what it shows (or,
    for an evaluation scored before the paired row existed, that it is missing)."""
    points = evaluation["against_retrain"]["certified"]["challenge_points"]
    (lo, _), _ = judged_interval(points)
    lead = (
        "\nEach certified release shares its seed (the new head's initialisation, hence the "
        "point the network is linearized at) with one reference, and the "
        "retrain row's releases do not: against the references the certified row is paired "
        "and the retrain row is not. That can favour the certified row on the per-example "
        f"scores (here the challenge's points: {_vs(points, 3)}), so a difference in that "
        "direction may be a property of the protocol rather than evidence about D_f"
        + ("; this one is resolved" if lo > 0 else "")
        + ". Every unlearning method is paired so (each unlearns the original of its seed)."
    )
    paired = evaluation.get("against_paired_retrain")
    if not paired:
        return lead + (
            " A paired retrain row (the references' exact retrains with fresh noise) would "
            "settle it; this evaluation was scored before forgetbox had one.\n"
        )
    cert, own = paired["certified"], evaluation["against_retrain"][PAIRED]

    labels = (("challenge_points", "points"), ("klom_forget", "KLoM"))
    resolved = [label for key, label in labels if cert[key]["distinguishable"]]
    missing = [label for key, label in labels if cert[key]["distinguishable"] is None]
    verdict = (
        f" — resolved on {' and '.join(resolved)}"
        if resolved
        else " — both intervals include 0, as they should for the same mechanism up to the residual"
        if not missing
        else f" — not computable on {' and '.join(missing)}"
    )
    return lead + (
        f" The paired retrain row ({PAIRED}: reference k's own exact retrain, released with "
        f"fresh noise) shares those seeds, so against it the seeds are no longer a difference "
        f"(what remains is D_f, up to the residual, and the noise draws): the certified row "
        f"differs from it by {_both_scores(cert)}{verdict}. The paired row against the retrain "
        f"row, the most the pairing can do (the references' own models with other noise) plus the "
        f"retrain row's sampling error: {_both_scores(own)}.\n"
    )


for _fragment, _name in (
    ("evaluate-certified-digits-table", "digits-certified-evaluate"),
    ("evaluate-certified-cifar5-table", "cifar5-allcnn-certified-evaluate"),
):
    GENERATORS[_fragment] = lambda root, n=_name: certified_scores(root, n)


@fragment("evaluate-certified-cifar5")
def evaluate_certified_cifar5(root: Path) -> str:
    """The certificate check on real CIFAR-5 (docs/evaluate.md)."""
    return _certified_evaluation(root, "cifar5-allcnn-certified-evaluate", "CIFAR-5")


@fragment("readme-certified")
def readme_certified(root: Path) -> str:
    """README's headline for the certified path: the digits study and evaluation."""
    doc = _load(root, "benchmarks/results/certified_digits.json")
    evaluation = _load(root, "docs/results/digits-certified-evaluate/evaluation.json")
    if doc is None or evaluation is None:
        return "The certified path's measurements on the embedded default are not committed yet.\n"
    eps = evaluation["certificate"]["methods"]["certified"]["epsilon"]
    rs = [r for r in doc["certification"] if r["epsilon"] == eps]
    seeds = len({r["seed"] for r in rs})

    def test_error(fine_tuning: str) -> float:
        rows = [r for r in doc["linearization"] if r["trained"] == "all"]
        return mean(r["errors"]["test"] for r in rows if r["fine-tuning"] == fine_tuning)

    req, prep, retrain = _request_times(rs)
    link = "docs/results/digits-certified-evaluate/evaluation.html"
    return (
        f"**Measured on the embedded default** (the small CNN, every parameter trained, {seeds} "
        f"seeds, ε = {eps:g}, δ = 1e-5; `benchmarks/results/certified_digits.json`): fine-tuned "
        f"linearized its test error is {pct(test_error('linearized'))} against "
        f"{pct(test_error('standard'))} fine-tuned as usual; after forgetting the whole class 0 "
        f"the released model's test error is {pct(mean(r['errors_released']['test'] for r in rs))}"
        f" against {pct(mean(r['errors_exact_retrain']['test'] for r in rs))} for the exact "
        "linearized retrain (both now miss class 0's test images). A request takes "
        f"{req:.2f} s one-off, {prep:.2f} s from a prepared kernel, against {retrain:.2f} s for "
        "retraining the standard network — on this tiny problem retraining is as cheap as "
        "forgetting. "
        + _verdicts(evaluation, link)
        + _ulira_words(evaluation)
        + _paired_words(evaluation)
        + _cifar_certified(root, eps)
    )


def _ulira_words(evaluation: dict) -> str:
    """U-LiRA on the certified releases and on the retrain row, against the certificate's cap."""
    ulira = evaluation["methods"]["certified"].get("ulira")
    if not ulira:
        return ""
    cert = evaluation["certificate"]["methods"]["certified"]
    cap = largest_balanced_accuracy(cert["epsilon"], cert["delta"])
    retrain = evaluation["methods"]["retrain"]["ulira"]["balanced_accuracy"]
    return (
        f" U-LiRA's balanced accuracy on the certified releases is "
        f"{ulira['balanced_accuracy']:.3f} (the retrain row's {retrain:.3f}; at most "
        f"{cap:.3f} under the certificate)."
    )


def _request_times(rows: list[dict]) -> tuple[float, float, float]:
    """Mean seconds of a one-off request, a prepared one and retraining the standard network."""
    keys = ("request_seconds", "prepared_request_seconds", "standard_retrain_seconds")
    return tuple(mean(r[k] for r in rows) for k in keys)


def _study_words(doc: dict, eps: float) -> str:
    """A certified study's linearization cost, release error and request times at ``eps``."""
    rs = [r for r in doc["certification"] if r["epsilon"] == eps]
    lin = [r for r in doc["linearization"] if r["trained"] == "all"]

    def err(ft: str, subset: str = "test") -> str:
        return pct(mean(r["errors"][subset] for r in lin if r["fine-tuning"] == ft))

    req, prep, retrain = _request_times(rs)
    return (
        f"linearized fine-tuning reaches {err('linearized')} test error against "
        f"{err('standard')} (but {err('linearized', 'retain')} training error on D_r against "
        f"{err('standard', 'retain')}); at ε = {eps:g} the release's test error is "
        f"{pct(mean(r['errors_released']['test'] for r in rs))} against "
        f"{pct(mean(r['errors_exact_retrain']['test'] for r in rs))} for the exact linearized "
        f"retrain, and a request takes {secs(req)} one-off ({speed(retrain / req)} than "
        f"retraining the standard network, {secs(retrain)}), {secs(prep)} prepared "
        f"({speed(retrain / prep)})."
    )


def _cifar_certified(root: Path, eps: float) -> str:
    """README's sentences on the CIFAR-5 certified studies, where they are committed."""
    doc = _load(root, "benchmarks/results/certified_allcnn.json")
    if doc is None:
        return ""
    seeds = len({r["seed"] for r in doc["certification"]})
    words = (
        f" On real CIFAR-5 (All-CNN ×0.4, cpu profile, {n_seeds(seeds)}; "
        f"`benchmarks/results/certified_allcnn.json`) {_study_words(doc, eps)} "
        + _cifar_attacks(root)
    )
    resnet = _load(root, "benchmarks/results/certified_resnet18.json")
    if resnet is not None:
        seeds = len({r["seed"] for r in resnet["certification"]})
        words += (
            f" With ResNet-18 ×0.4 on the same split ({n_seeds(seeds)}; "
            f"`benchmarks/results/certified_resnet18.json`) {_study_words(resnet, eps)}"
        )
    return words


def _cifar_attacks(root: Path) -> str:
    """README's sentence on the CIFAR-5 certified evaluation, where one is committed."""
    evaluation = _load(root, "docs/results/cifar5-allcnn-certified-evaluate/evaluation.json")
    if evaluation is None:
        return "No attack evaluation on CIFAR-5 yet."
    link = "docs/results/cifar5-allcnn-certified-evaluate/evaluation.html"
    return (
        _verdicts(evaluation, link, lead="On CIFAR-5, judged")
        + _ulira_words(evaluation)
        + _paired_words(evaluation)
    )


@fragment("default-run-time")
def default_run_time(root: Path) -> str:
    """The default run's wall time, cold and cached (benchmarks/run_default.py)."""
    doc = _load(root, "benchmarks/results/run_default.json")
    return (
        f"Cold cache: **{doc['cold_seconds']:.0f} s** wall on 2 cores (pre-training, 6 "
        f"fine-tunings, {len(doc['methods'])} methods × {len(doc['seeds'])} seeds, every readout "
        f"and bound, figures and report); an identical rerun: {doc['cached_rerun_seconds']:.0f} s "
        "(everything from the cache). Target: at most about 5 minutes.\n"
    )


SCORES = {  # against_retrain key -> how the summary names it
    "ulira_balanced_accuracy": "U-LiRA",
    "challenge_points": "the challenge's points",
    "klom_forget": "KLoM on D_f",
}


def _vs(entry: dict, digits: int) -> str:
    """The difference from the retrain row with the interval it is judged by (``*``: over the
    examples only) and ≠ where that interval excludes 0."""
    (lo, hi), over = judged_interval(entry)
    star = "" if over == "models and examples" else "*"
    mark = " ≠" if entry["distinguishable"] else ""
    diff = f"{entry['difference']:+.{digits}f}".replace(f"-{0:.{digits}f}", f"±{0:.{digits}f}")
    return f"{diff} [{lo:.{digits}f}, {hi:.{digits}f}]{star}{mark}"


INTERVALS = (
    "95 % interval from a two-level bootstrap (the ensemble indices, model k of a method "
    "with reference k and the retrain row's models on their own, then the "
    "examples; the draws' spread centred on the observed difference; * marks one over the "
    "examples only: U-LiRA, whose shadow models are not "
    "resampled, and evaluations scored before the two-level bootstrap); ≠: the interval "
    "excludes 0"
)


def _band_cell(method: dict, name: str) -> str:
    r = method["readouts"][name]
    return f"{r['median']:.3f}{_side_words(r, ' ({})')}"


def _side_words(r: dict, form: str) -> str:
    """Where a readout's median falls, in ``form``: nothing inside the band; the meaning of
    the side; the side and "at the edge" where it does not clear the band (audit.judge)."""
    if r["side"] == "inside":
        return ""
    return form.format(f"{r['side']}, {EDGE}" if r["meaning"] == EDGE else r["meaning"])


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _at_edge(spec: dict) -> bool:
    """Whether a tuned knob's choice is its smallest or largest candidate."""
    values = [c["value"] for c in spec["candidates"]]
    return spec["chosen"] in (min(values), max(values))


@fragment("tuning-digits")
def tuning_digits(root: Path) -> str:
    """The tuning budget's candidates and choices (benchmarks/tune_baselines.py)."""
    doc = _load(root, "benchmarks/results/tune_baselines.json")
    if doc is None:
        return "The tuning study is not committed yet.\n"
    out = [
        f"Validation cohort: {doc['validation_cohort']}, seeds "
        f"{', '.join(map(str, doc['seeds']))}; rule: {doc['rule']}.",
        "",
        "| method | setting | paper's | candidates: mean L1 to retrain on D_f / test error "
        "(retrain's test error) | chosen |",
        "|---|---|---|---|---|",
    ]
    for method, spec in doc["methods"].items():
        cells = "; ".join(
            f"{c['value']:g}: diverged"
            if "failed" in c
            else f"{c['value']:g}: {c['l1_to_retrain_forget']:.3f} / {pct(c['error_test'])}"
            for c in sorted(spec["candidates"], key=lambda c: c["value"])
        )
        retrain = next(c for c in spec["candidates"] if "failed" not in c)["retrain_error_test"]
        out.append(
            f"| {method} | `{spec['setting']}` | {spec['paper']:g} | {cells} ({pct(retrain)}) "
            f"| **{spec['chosen']:g}** |"
        )
    edge = [m for m, spec in doc["methods"].items() if _at_edge(spec)]
    out += [
        "",
        "Chosen at an edge of its candidates, so the budget may not bracket the best value: "
        + (", ".join(edge) or "none")
        + ".",
    ]
    return "\n".join(out) + "\n"


def klom_ranking(against_retrain: dict) -> str:
    """The methods by their KLoM on D_f minus the retrain row's, smallest in size first."""
    ar = against_retrain
    ranked = sorted(
        (n for n in ar if n != "original"), key=lambda n: abs(ar[n]["klom_forget"]["difference"])
    )
    return ", ".join(f"{n} ({ar[n]['klom_forget']['difference']:+.1f} nats)" for n in ranked)


def scored_keys(ar: dict) -> list[str]:
    """The keys of :data:`SCORES` any method of ``against_retrain`` was judged by."""
    return [k for k in SCORES if any(k in a for a in ar.values())]


def unresolved(ar: dict) -> dict[str, list[str]]:
    """Per score (:data:`SCORES`' names, those any method has) the methods but the original
    whose difference from the retrain row this evaluation could not resolve (an interval that
    includes 0; not those without an interval)."""
    return {
        SCORES[key]: [
            n
            for n, a in ar.items()
            if n != "original" and key in a and a[key]["distinguishable"] is False
        ]
        for key in scored_keys(ar)
    }


def blind_scores(ar: dict) -> list[str]:
    """The scores by which even the original (which forgot nothing) was not told from the
    retrain row."""
    original = ar.get("original", {})
    return [k for k in scored_keys(ar) if original.get(k, {}).get("distinguishable") is False]


def blind_words(ar: dict) -> str:
    """The sentence on :func:`blind_scores` ("" where there are none)."""
    blind = [SCORES[k] for k in blind_scores(ar)]
    if not blind:
        return ""
    return (
        f"The original, which forgot nothing, is not told from the retrain row by "
        f"{' or '.join(blind)} either, so where {'it' if len(blind) == 1 else 'they'} cannot "
        "tell a method from retraining, that is no evidence of forgetting here."
    )


def _cohort(d: dict) -> str:
    """The evaluated cohort in words."""
    e, t = d["config"]["experiment"], d["task"]
    whole = e.get("num_to_forget") is None
    what = (
        f"the whole class {e['forget_class']}"
        if whole
        else f"{t['n_forget']} images of class {e['forget_class']}"
    )
    return f"{what}, {t['n_forget']} of {t['n_train']} training images"


def _problem_table(d: dict, where: str, flipped: dict[tuple[str, str], bool | None]) -> list[str]:
    """A README table for one committed evaluation: per method, its test error and speed
    against retraining, and per score whether it was told from the retrain row."""
    ms, ar, bands = d["methods"], d["against_retrain"], d["bands"]
    k = d["config"]["evaluate"]["models"]
    retrain_s = _median(ms["retrain"]["seconds"])
    keys = scored_keys(ar)
    mark = {True: "≠", False: "**≈**", None: "n/a"}

    def cell(n: str, key: str) -> str:
        if key not in ar.get(n, {}):
            return "—"
        rerun = (
            f" ({mark[flipped[n, key]].strip('*')} when rerun on another processor)"
            if (n, key) in flipped
            else ""
        )
        return mark[ar[n][key]["distinguishable"]] + rerun

    def time(n: str) -> str:
        return "—" if n in ROWS_NOT_TIMED else speed(retrain_s / _median(ms[n]["seconds"]))

    def name(n: str) -> str:
        lost = len(ms[n].get("diverged", []))
        return f"{n} ({k - lost} of {k} models; {lost} diverged)" if lost else n

    band = bands["error_test"]
    out = [
        f"{where}; forgotten: {_cohort(d)}; K = {k} models per side. Retrain row: test error "
        f"{pct(ms['retrain']['readouts']['error_test']['median'])} (band "
        f"{pct(band['low'])}–{pct(band['high'])}), {secs(retrain_s)} per model.",
        "",
        "| method | test error | speed vs retraining | "
        + " | ".join(SCORES[key] for key in keys)
        + " | KLoM D_f − retrain's |",
        "|---|---|---|" + "---|" * len(keys) + "---|",
    ]
    for n in ms:
        if n == "retrain":
            continue
        klom = ar.get(n, {}).get("klom_forget")
        klom_cell = f"{klom['difference']:+.1f} nats" if klom else "—"
        out.append(
            f"| {name(n)} | {pct(ms[n]['readouts']['error_test']['median'])} | {time(n)} | "
            + " | ".join(cell(n, key) for key in keys)
            + f" | {klom_cell} |"
        )
    close = [
        n
        for n, a in ar.items()
        if n != "original" and all(key in a and a[key]["distinguishable"] is False for key in keys)
    ]
    notes = [
        f"Not told from retraining by any of the {len(keys)} scores: "
        + (", ".join(close) or "none")
        + ".",
        blind_words(ar),
    ]
    if any(m.get("ulira") for m in ms.values()) and "ulira_balanced_accuracy" not in keys:
        notes.append(
            "U-LiRA attacked the methods but not the retrain row here, so it has no column."
        )
    return out + [line for note in notes if note for line in ("", note)]


@fragment("readme-evaluate")
def readme_evaluate(root: Path) -> str:
    """README's summary of the committed evaluations: per problem, method and score, whether
    the method was told from retraining, at what test error and speed."""
    out = [
        "**What it found** (generated from the committed evaluations). Per score, the 95 % "
        "interval of the method's mean difference from the retrain row (two-level bootstrap over "
        "the models and the examples; over the examples only for U-LiRA): **≈** it includes 0 — "
        "these models and examples could not tell the method from retraining, which is not a "
        "proof of forgetting; ≠ it excludes 0; n/a: no interval (too few models or examples); "
        "—: not scored or not timed. Test error: the median over the K models (the retrain row's "
        "is the target, not a floor). Speed: median seconds per model against the retrain "
        "row's.",
    ]
    tuned = _load(root, "docs/results/digits-methods-tuned-evaluate/evaluation.json")
    name = "digits-methods-tuned-evaluate" if tuned else "digits-methods-evaluate"
    digits = tuned or _load(root, f"docs/results/{name}/evaluation.json")
    if digits is not None:
        rerun = _load(root, f"benchmarks/results/rerun_check-{name}.json") or {}
        ours = (rerun.get("provenance") or {}).get("replaced", {}).get("created")
        flipped = {  # only where the rerun replaced this very evaluation
            (m, key): after
            for part, m, key, _, after in (rerun.get("distinguishable") or {}).get("changed", [])
            if part == "against_retrain" and ours == digits["provenance"]["created"]
        }
        how = "each method's knob tuned on class 1" if tuned else "untuned"
        out += ["", *_problem_table(digits, f"Digits default, {how}", flipped)]
    for name, what in (
        ("cifar5-allcnn-evaluate-tuned", "every method, each knob tuned on class 1"),
        ("cifar5-allcnn-evaluate-k16", "every method at its paper's settings, untuned"),
        ("cifar5-allcnn-evaluate", "the paper's methods at the paper's settings"),
    ):
        cifar = _load(root, f"docs/results/{name}/evaluation.json")
        if cifar is not None:
            out += ["", *_problem_table(cifar, f"Real CIFAR-5, All-CNN ×0.4, {what}", {})]
            break
    out += ["", "Intervals, values and every readout: [evaluate](docs/evaluate.md)."]
    return "\n".join(out) + "\n"


def methods_table(root: Path, name: str) -> str:
    """A committed evaluation's methods against its retrain row: the table, the ranking by
    KLoM and what the ensemble could not resolve."""
    evaluation = name  # ``name`` names the methods below
    d = _load(root, f"docs/results/{name}/evaluation.json")
    if d is None:
        return f"`docs/results/{name}` is not committed yet.\n"
    k = d["config"]["evaluate"]["models"]
    ms, bands, ar = d["methods"], d["bands"], d["against_retrain"]
    retrain_s = _median(ms["retrain"]["seconds"])
    shadows = d["config"]["evaluate"]["shadow_models"]
    ulira_words = (
        f"U-LiRA on {shadows} shadow models" if shadows else "no U-LiRA (no shadow models)"
    )
    out = [
        f"K = {k} models per side, {ulira_words}; "
        f"{d['compute']['total_seconds'] / 60:.1f} minutes of recorded compute on 2 CPU "
        "cores. vs retrain: the method's mean per-example value minus the retrain row's, "
        f"{INTERVALS}. D_f and test error: "
        f"the median over the K models, retrain band D_f [{bands['error_forget']['low']:.3f}, "
        f"{bands['error_forget']['high']:.3f}], test [{bands['error_test']['low']:.3f}, "
        f"{bands['error_test']['high']:.3f}]; time: the median seconds of the method against the "
        f"retrain row's {retrain_s:.1f} s.",
        "",
        "| method | U-LiRA bal. acc. (vs retrain) | challenge F | challenge points vs retrain "
        "| KLoM D_f median, nats (vs retrain) | D_f error | test error | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in ms.items():
        a = ar.get(name, {})
        vs = {
            key: _vs(a[key], 1 if key == "klom_forget" else 3) if key in a else "—"
            for key in SCORES
        }
        med = _median(m["seconds"])
        time = "—" if name in ROWS_NOT_TIMED else f"{secs(med)} ({speed(retrain_s / med)})"
        ulira = m.get("ulira")
        bal = f"{ulira['balanced_accuracy']:.3f}" if ulira else "not attacked"
        out.append(
            f"| {name} | {bal} ({vs['ulira_balanced_accuracy']}) "
            f"| {m['challenge']['forget_quality']:.3f} | {vs['challenge_points']} "
            f"| {m['klom']['forget']['median']:.2f} ({vs['klom_forget']}) "
            f"| {_band_cell(m, 'error_forget')} | {_band_cell(m, 'error_test')} | {time} |"
        )
    same = unresolved(ar)
    out.append("")
    out.append(
        "Ranked by KLoM on D_f, closest to the retrain row first: " + klom_ranking(ar) + ". "
        "Not resolved from the retrain row at this K (the interval includes 0; none: every "
        "method's difference is resolved): "
        + "; ".join(f"{label}: {', '.join(ns) or 'none'}" for label, ns in same.items())
        + ". An unresolved difference is not a proof of forgetting: it says this many models "
        "and examples could not tell."
    )
    if not any(m.get("ulira") for m in ms.values()):
        pass  # no U-LiRA at all: the header says so
    elif "ulira_balanced_accuracy" not in ar["original"]:
        out.append("")
        out.append(
            "The retrain row was not attacked by U-LiRA here, so its column has no retrain "
            "reference: it compares the attacked methods with each other and with 0.5 only."
        )
    if blind_words(ar):
        out += ["", blind_words(ar)]
    lost = {n: m["diverged"] for n, m in ms.items() if m.get("diverged")}
    if lost:
        out += [
            "",
            "Diverged (weights not finite after forgetting; the method is scored without those "
            "models and their references): "
            + "; ".join(
                f"{n} on {len(ks)} of the {k} ensemble members "
                f"({', '.join(str(i + 1) for i in ks)}, counted from 1 as the run's log does)"
                for n, ks in lost.items()
            )
            + ".",
        ]
    leaks = [n for n, m in ms.items() if m["readouts"]["error_forget"]["meaning"] == "leaks"]
    out.append("")
    out.append(
        "D_f error still below the retrain band (the model still knows D_f): "
        + (", ".join(leaks) or "none")
        + "."
    )
    rerun = _load(root, f"benchmarks/results/rerun_check-{evaluation}.json")
    if rerun is not None:
        changes = _rerun_changes(rerun)
        out.append("")
        out.append(
            "Run again from scratch on another processor (below): "
            + (
                f"these judgements changed: {changes}."
                if changes
                else "every band side and every flag of this table is the same."
            )
        )
    return "\n".join(out) + "\n"


# evaluations scored before the scores were aligned with the official definitions (issue 30),
# by the commit they were scored at; a rerun changes the commit and must drop its entry
PRE_ALIGNMENT: dict[str, str] = {}


def scored_before_alignment(d: dict, name: str) -> str:
    """The caveat of an evaluation scored before the alignment, or "" (raises where a listed
    evaluation was rerun, so the caveat cannot outlive its cause)."""
    if name not in PRE_ALIGNMENT:
        return ""
    commit = ((d.get("provenance") or {}).get("source") or {}).get("commit", "")
    if not commit.startswith(PRE_ALIGNMENT[name]):
        raise ValueError(f"{name} was rescored at {commit[:10]}: drop it from PRE_ALIGNMENT")
    return (
        f"Scored at commit {PRE_ALIGNMENT[name]}, before the scores were aligned with their "
        "official definitions (issue 30: the median side for an even K, the official threshold "
        "grid, NaN where a score cannot be computed, one U-LiRA row per shadow model). "
        "It predates `evaluation-inputs.npz` (so `forgetbox report --rescore` cannot score it "
        "again) and its trained models are not cached on the machine that wrote this: on a "
        "rerun, which keeps the inputs, the challenge's points and U-LiRA's pair counts may "
        "move. "
    )


def population_table(d: dict) -> str:
    """The population attacks of an evaluation: the loss threshold against every test image and
    against the test images of D_f's class (AUC over the K models pooled, 95 % interval from
    resampling examples), and the paper's entropy attack (median member rate on D_f, with where
    it falls against the retrain band)."""
    band = d["bands"]["mia_forget_member_rate"]
    out = [
        "| method | loss attack AUC, all test images | same class | entropy attack member rate "
        f"(retrain band [{band['low']:.2f}, {band['high']:.2f}]) |",
        "|---|---|---|---|",
    ]

    def auc(a: dict) -> str:
        lo, hi = a["auc_ci95"]
        return f"{a['auc']:.3f} [{lo:.2f}, {hi:.2f}]"

    for name, m in d["methods"].items():
        pop = m["population"]
        out.append(
            f"| {name} | {auc(pop['loss'])} | {auc(pop['loss_same_class'])} "
            f"| {_band_cell(m, 'mia_forget_member_rate')} |"
        )
    return "\n".join(out) + "\n"


def evaluation_section(root: Path, name: str) -> str:
    """A committed evaluation's methods table and its population attacks."""
    d = _load(root, f"docs/results/{name}/evaluation.json")
    if d is None:
        return f"`docs/results/{name}` is not committed yet.\n"
    return (
        scored_before_alignment(d, name)
        + methods_table(root, name)
        + "\nThe population attacks (loss and confidence rank alike, so their AUCs are equal; "
        "the entropy attack is the paper's):\n\n" + population_table(d)
    )


# the evaluation tables of docs/evaluate.md: fragment -> (generator, committed evaluation)
EVALUATION_TABLES = {
    "evaluate-methods-digits": ("methods_table", "digits-methods-evaluate"),
    "evaluate-methods-digits-tuned": ("methods_table", "digits-methods-tuned-evaluate"),
    "evaluate-digits-paper-cohort": ("evaluation_section", "digits-evaluate"),
    "evaluate-cifar5": ("evaluation_section", "cifar5-allcnn-evaluate"),
    "evaluate-cifar5-k16": ("evaluation_section", "cifar5-allcnn-evaluate-k16"),
}
for _fragment, (_generator, _evaluation) in EVALUATION_TABLES.items():
    GENERATORS[_fragment] = lambda root, g=_generator, e=_evaluation: globals()[g](root, e)


PAPER_METHODS = ("finetune", "fisher", "ntk", "ntk_fisher", "newton")
CLAIM_EVALUATIONS = {  # evaluation -> how the claims' bullets name it
    "digits-evaluate": "digits, the paper's cohort (K = {k})",
    "digits-methods-evaluate": "digits default, the whole class 0 (K = {k})",
    "cifar5-allcnn-evaluate": "CIFAR-5, All-CNN ×0.4 (K = {k})",
    "cifar5-allcnn-evaluate-k16": "CIFAR-5, All-CNN ×0.4, every method (K = {k})",
}


def _band_words(m: dict, band: dict, name: str, digits: int) -> str:
    r = m["readouts"][name]
    edge = r["meaning"] == EDGE
    where = "inside" if r["side"] == "inside" else f"{r['side']} ({r['meaning']})"
    where = f"{r['side']}, {EDGE}" if edge else where
    return (
        f"{r['median']:.{digits}f} against [{band[name]['low']:.{digits}f}, "
        f"{band[name]['high']:.{digits}f}]: {where}"
    )


@fragment("evaluate-paper-claims")
def evaluate_paper_claims(root: Path) -> str:
    """What the committed ensembles say about the paper's claims 1 and 4 and its ranking of
    methods, per evaluation (docs/evaluate.md)."""
    found = {n: _load(root, f"docs/results/{n}/evaluation.json") for n in CLAIM_EVALUATIONS}
    found = {n: d for n, d in found.items() if d is not None and "ntk" in d["methods"]}
    if not found:
        return "No evaluation of the paper's methods is committed yet.\n"

    def label(n: str, d: dict) -> str:
        text = CLAIM_EVALUATIONS[n].format(k=d["config"]["evaluate"]["models"])
        return text[:-1] + ", scored before the alignment)" if n in PRE_ALIGNMENT else text

    out = [
        "- **Claim 1 (NTK's D_f error inside the retrain band)**, the median over the K "
        "NTK-scrubbed models against the retrain row's 5–95 % band:"
    ]
    for n, d in found.items():
        out.append(
            f"  - {label(n, d)}: {_band_words(d['methods']['ntk'], d['bands'], 'error_forget', 3)}."
        )
    out.append(
        "- **Claim 4 (an attacker cannot tell NTK-scrubbed models from retrained ones).** "
        "The paper's entropy attack, its median D_f member rate against the retrain band, "
        f"and the per-example scores against the retrain row ({INTERVALS}):"
    )
    for n, d in found.items():
        a = d["against_retrain"]["ntk"]
        scores = "; ".join(
            f"{SCORES[key]} {_vs(a[key], 1 if key == 'klom_forget' else 3)}"
            for key in SCORES
            if key in a
        )
        entropy = _band_words(d["methods"]["ntk"], d["bands"], "mia_forget_member_rate", 2)
        out.append(f"  - {label(n, d)}: entropy attack {entropy}; {scores}.")
    out.append(
        "- **The ranking of the paper's methods** by KLoM on D_f, closest to the retrain "
        "row first (the other scores need not agree; see each table):"
    )
    for n, d in found.items():
        ar = {m: v for m, v in d["against_retrain"].items() if m in PAPER_METHODS}
        caveat = (
            " — KLoM does not separate even the original from the retrain row here, so a "
            "method's place in this order is no evidence of forgetting"
            if "klom_forget" in blind_scores(d["against_retrain"])
            else ""
        )
        out.append(f"  - {label(n, d)}: {klom_ranking(ar)}{caveat}.")
    return "\n".join(out) + "\n"


def _sibling(name: str):
    """Another script of benchmarks/ as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the tables of docs/benchmarks.md: fragment "table-NAME" is benchmarks/table.py's NAME
for _table in _sibling("table").TABLES:
    GENERATORS[f"table-{_table}"] = lambda root, t=_table: _sibling("table").TABLES[t]()


# the measured sentences of docs/benchmarks.md: fragment "prose-NAME" is benchmark_prose's NAME
for _prose in _sibling("benchmark_prose").PROSE:
    GENERATORS[f"prose-{_prose}"] = lambda root, t=_prose: _sibling("benchmark_prose").PROSE[t]()


def _cost_table(name: str) -> Callable[[Path], str]:
    """A table of docs/cost-model.md from benchmarks/cost_model.py and its committed JSON."""

    def generate(root: Path) -> str:
        cost = _sibling("cost_model")
        fits = json.loads((root / "benchmarks/results/cost_model.json").read_text())
        lines = {
            "constants": lambda: cost.constants_table(fits),
            "scale": cost.scale_table,
            "predictions": lambda: cost.prediction_table(fits["predictions"]),
            "processes": cost.proc_table,
        }[name]()
        return "\n".join(lines) + "\n"

    return generate


for _table in ("constants", "scale", "predictions", "processes"):
    GENERATORS[f"cost-{_table}"] = _cost_table(_table)


PRESET_RUNS = ("cifar5-allcnn-cpu", "cifar5-allcnn-cpu-authors")


@fragment("presets-side-by-side")
def presets_side_by_side(root: Path) -> str:
    """The two presets' readouts on the same CIFAR-5 run (benchmarks/preset_comparison.py) and
    their verdicts under today's rules (docs/deviations.md)."""
    folders = [root / "docs/results" / name for name in PRESET_RUNS]
    if not all((f / "results.json").is_file() for f in folders):
        return "The two preset runs are not both committed.\n"
    table = _sibling("preset_comparison").table(*folders)
    overview = _sibling("results_overview")
    marks = [
        f"{label} ({len(r['seeds'])} seeds) {overview.verdicts(r)}"
        for label, r in zip(
            ("default", "authors preset"), map(overview.judged, folders), strict=True
        )
    ]
    return table.rstrip("\n") + "\n\nVerdicts under today's rules: " + "; ".join(marks) + ".\n"


@fragment("readme-cost")
def readme_cost(root: Path) -> str:
    """README's summary of the cost study at |D| = 2,000 (benchmarks/results/scale_study-*)."""
    runs = {
        name: _load(root, f"benchmarks/results/scale_study-2000-{name}.json")
        for name in ("full", "full-dense-1proc", "full-cg-1proc", "subset")
    }
    if any(v is None for v in runs.values()):
        return "The cost study at |D| = 2,000 is not committed.\n"
    full, inplace, cg, sub = (runs[k]["timings"] for k in runs)
    return (
        "What a scrub costs as |D| grows, path by path, is in the "
        "[cost model](docs/cost-model.md), fitted to measurements on real CIFAR-10 at "
        "|D| = 2,000 (10 classes, 2 CPU cores): the "
        "exact full-network scrub matched retraining on every readout but took "
        f"{full['scrub_seconds']:.0f} s against {full['retrain_seconds']:.0f} s of retraining "
        f"({speed(full['retrain_seconds'] / full['scrub_seconds'])}; dense path, "
        f"{full['peak_rss_gib']:.1f} GiB peak; factoring the kernel in place, as forgetbox now "
        f"does, brought the peak to {inplace['peak_rss_gib']:.1f} GiB in a rerun that shared "
        f"the machine and so gives no time); the matrix-free path took "
        f"{cg['scrub_seconds']:,.0f} s in {cg['peak_rss_gib']:.1f} GiB, so on 2 CPU cores the "
        "full-network scrub does not beat retraining beyond that size. With only the last "
        f"block and head trained the parameter-space scrub took {sub['scrub_seconds']:.0f} s "
        f"against {sub['retrain_seconds']:.0f} s "
        f"({speed(sub['retrain_seconds'] / sub['scrub_seconds'])}, "
        f"{sub['peak_rss_gib']:.1f} GiB).\n"
    )


@fragment("readme-deletion")
def readme_deletion(root: Path) -> str:
    """README's sentence on prepared requests against retraining (benchmarks/deletion.py on the
    CPU, benchmarks/gpu_session.py on the H100, the 50,000-image pseudo-NTK prepare)."""
    cpu = _load(root, "benchmarks/results/deletion_cpu.json")
    gpu = _load(root, "benchmarks/results/gpu_deletion.json")
    big = _load(root, "benchmarks/results/gpu_scale50k.json")
    card = (_load(root, "benchmarks/results/gpu_env.json") or {}).get("device", "a GPU")
    if cpu is None or gpu is None or big is None:
        return "The deletion benchmarks are not committed.\n"

    def row(rows: list[dict], n: int) -> dict:
        return next(r for r in rows if r["model"] == "allcnn-0.4" and r["n"] == n)

    c, g = row(cpu["rows"], 500), row(gpu, 5000)
    return (
        "Measured on real CIFAR-10: a request costs "
        f"**1/{1 / c['exact']['request_vs_retrain']:.0f} of retraining** on 2 CPU cores "
        f"(All-CNN ×0.4, |D| = {c['n']:,}) and 1/{1 / g['exact']['request_vs_retrain']:.0f} on "
        f"{'an H100' if 'H100' in card else card} (|D| = {g['n']:,}). A pseudo-NTK kernel "
        f"(`--kernel pseudo`) prepares {big['n']:,} images in {big['prepare_seconds']:.0f} s on "
        "one GPU, but on fine-tuned networks its direction is far from the exact one — read "
        "[deletion at scale](docs/deletion.md) before using it.\n"
    )


COMPUTE_EVALUATIONS = (  # those not committed (yet) are left out
    "cifar5-allcnn-evaluate",
    "cifar5-allcnn-evaluate-k16",
    "digits-methods-evaluate",
    "digits-evaluate",
)


@fragment("evaluate-compute")
def evaluate_compute(root: Path) -> str:
    """Where an evaluation's recorded compute went, by stage kind (issue 33's profile)."""
    docs = {n: _load(root, f"docs/results/{n}/evaluation.json") for n in COMPUTE_EVALUATIONS}
    docs = {n: d for n, d in docs.items() if d is not None}
    kinds = sorted({k for d in docs.values() for k in d["compute"]["per_stage_kind_seconds"]})
    head = " | ".join(f"{n} (K = {d['config']['evaluate']['models']})" for n, d in docs.items())
    out = [f"| stage | {head} |", "|---|" + "---|" * len(docs)]
    for kind in kinds:
        cells = []
        for d in docs.values():
            secs = d["compute"]["per_stage_kind_seconds"].get(kind)
            total = d["compute"]["total_seconds"]
            cells.append("—" if secs is None else f"{secs:,.0f} s ({100 * secs / total:.0f} %)")
        out.append(f"| {kind} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"**{d['compute']['total_seconds']:,.0f} s**" for d in docs.values())
    out.append(f"| total | {totals} |")
    return "\n".join(out) + "\n"


@fragment("evaluate-ensemble-step")
def evaluate_ensemble_step(root: Path) -> str:
    """Issue 33's candidates for a faster ensemble member (benchmarks/ensemble_step.py)."""
    d = _load(root, "benchmarks/results/ensemble_step.json")
    if d is None:
        return "The ensemble-step benchmark is not committed.\n"
    per = d["seconds_per_member_step"]
    base = per["sequential"]
    words = {
        "vmap": "the K models stacked and trained by `vmap(grad(...))`",
        "channels_last": "channels-last memory format",
        "bf16": "bfloat16 autocast (which would also change the arithmetic)",
        "compiled": "each forward through `torch.compile`",
        "bf16_compiled": "both",
    }
    cells = "; ".join(f"{w}: {speed(base / per[k])}" for k, w in words.items() if k in per)
    if "compile_seconds" in d:
        cells += f" (after {d['compile_seconds']:.0f} s of compilation, once per process)"
    loads = ", ".join(f"{x:.1f}" for x in d["load_before_rounds"])
    return (
        f"One training step per ensemble member (All-CNN ×0.4, batch {d['batch']}, K = "
        f"{d['models']}, 2 threads; `benchmarks/ensemble_step.py`, medians of "
        f"{len(d['rounds']['sequential'])} interleaved rounds, load average {loads} before them"
        f"{_load_words(d['load_before_rounds'])}) against sequential "
        f"training ({base:.2f} s): {cells}. " + _verdict_faster(per) + "\n"
    )


def _load_words(loads: list[float]) -> str:
    """What the load averages before a 2-thread benchmark's rounds say about the machine."""
    if max(loads) <= 2.5:
        return " (its own 2 threads and the minutes before it count in them)"
    return ": the machine was shared, so read the ratios, not the seconds"


NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _verdict_faster(per: dict) -> str:
    faster = [k for k, v in per.items() if k != "sequential" and v < per["sequential"] / 1.05]
    if not faster:
        return (
            f"None of the {NUMBER_WORDS.get(len(per) - 1, len(per) - 1)} is faster on this CPU, "
            "so `forgetbox evaluate` keeps training its models one after another."
        )
    best = per["sequential"] / min(per[k] for k in faster)
    twice = [k for k in faster if per["sequential"] / per[k] >= 2]
    if not twice:
        return (
            f"Faster than sequential here: {', '.join(faster)}, at most {best:.2f}× — short of "
            "the 2× per member issue 33 asks, and not adopted yet."
        )
    caveat = (
        ", and only with bfloat16 arithmetic, which changes the models"
        if all(k.startswith("bf16") for k in twice)
        else ""
    )
    return (
        f"Faster than sequential here: {', '.join(faster)}, at most {best:.2f}× per training "
        f"step{caveat}. A member also evaluates, scrubs and reads out in float32 (the compute "
        "table above), so a whole member would gain less than that; not adopted yet."
    )


RERUN_EVALUATIONS = (
    "digits-evaluate",
    "digits-methods-evaluate",
    "digits-methods-tuned-evaluate",
    "digits-certified-evaluate",
)


def _processor(prov: dict | None) -> str:
    return ((prov or {}).get("hardware") or {}).get("processor") or "an unrecorded processor"


def _rerun_changes(d: dict) -> str:
    """The judgements a rerun changed, in words ("" for none)."""
    words = [f"{m}: {key} band side ({a} → {b})" for m, key, a, b in d["band_sides"]["changed"]]
    flag = {True: "distinguishable", False: "not", None: "no interval"}
    words += [
        f"{m}: {SCORES.get(key, key)} against the "
        f"{'paired ' if part == 'against_paired_retrain' else ''}retrain row "
        f"({flag[a]} → {flag[b]})"
        for part, m, key, a, b in d["distinguishable"]["changed"]
    ]
    words += [f"{m}: certificate ({a} → {b})" for m, a, b in d["certificate"]["changed"]]
    return ", ".join(words)


def _same_processor_words(root: Path) -> str:
    """The same evaluation run twice on one processor, its inputs compared array by array."""
    d = _load(root, "benchmarks/results/rerun_check-same-processor-digits-evaluate.json")
    if d is None:
        return ""
    if d["different"]:
        return (
            f"Run twice on one processor, `digits-evaluate`'s score inputs differ in "
            f"{len(d['different'])} of {d['arrays']} arrays, so training is not deterministic "
            "there either. "
        )
    return (
        f"Run twice from scratch on one processor, `digits-evaluate`'s score inputs (every "
        f"model's logits and readouts, the shadow margins: {d['arrays']} arrays, timings "
        "apart) are bit-identical, so the differences above are the processor's. "
    )


@fragment("evaluate-rerun")
def evaluate_rerun(root: Path) -> str:
    """docs/evaluate.md: the committed digits evaluations run again on another machine
    (benchmarks/rerun_check.py), every judgement of both compared."""
    found = {
        n: d
        for n in RERUN_EVALUATIONS
        if (d := _load(root, f"benchmarks/results/rerun_check-{n}.json")) is not None
    }
    if not found:
        return "No evaluation has been run again yet.\n"
    first = next(iter(found.values()))["provenance"]
    commit = ((first["rerun"] or {}).get("source") or {}).get("commit", "")[:7]
    sides = sum(d["band_sides"]["judged"] for d in found.values())
    flags = sum(d["distinguishable"]["judged"] for d in found.values())
    certs = sum(len(d["certificate"]["verdicts"]) for d in found.values())
    changed = [f"`{n}`: " + _rerun_changes(d) for n, d in found.items() if _rerun_changes(d)]
    scores = [
        (n, m, key, pair)
        for n, d in found.items()
        for m, row in d["scores"].items()
        for key, pair in row.items()
    ]
    same_scores = sum(a == b for *_, (a, b) in scores)
    moved = sorted({m for _, m, _, (a, b) in scores if a != b})
    rows = [(k, r) for d in found.values() for k, r in d["readouts"].items()]
    values = sum(r["identical"] + r["different"] for _, r in rows)
    differ = sum(r["different"] for _, r in rows)
    medians = sum(r["medians_identical"] + r["medians_different"] for _, r in rows)
    medians_differ = sum(r["medians_different"] for _, r in rows)

    def largest(prefixes: tuple[str, ...], field: str) -> tuple[str, float, str]:
        best = ("", 0.0, "")
        for k, r in rows:
            if k.startswith(prefixes) and r[field] > best[1]:
                best = (k, r[field], r.get("max_abs_method") or "")
        return best

    err = largest(("error_", "mia_"), "max_abs")
    cont = largest(("loss_", "l1_"), "max_abs")
    median_err = max(
        (r["median_max_abs"] for k, r in rows if k.startswith(("error_", "mia_"))), default=0.0
    )
    judged = (
        f'{sides} band sides, {flags} "distinguishable" flags against the retrain rows and '
        f"{certs} certificate verdicts"
    )
    verdict = (
        f"every judgement is the same ({judged})"
        if not changed
        else f"of {judged}, all are the same but these: " + "; ".join(changed)
    )
    return (
        f"The {len(found)} committed digits evaluations ({', '.join(f'`{n}`' for n in found)}; "
        f"made on {_processor(first['replaced'])}) were run again from scratch at commit {commit} "
        f"on {_processor(first['rerun'])}, same settings, no cache (`benchmarks/rerun_check.py`, "
        f"`benchmarks/results/rerun_check-*.json`): {verdict}. "
        f"Of the headline per-example scores (the challenge's F, KLoM's D_f median, U-LiRA's "
        f"balanced accuracy), {same_scores} of {len(scores)} are bit-identical"
        + (f" (the others: {', '.join(moved)})" if moved else "")
        + ". The trained "
        f"models are not: {differ} of {values} per-model readouts differ (an error or attack "
        f"rate by up to {err[1]:.3f}, {err[0]} of one {err[2]} model; a loss or L1 distance by "
        f"up to {cont[1]:.3f}, {cont[0]} of one {cont[2]} model), and {medians_differ} of "
        f"the {medians} medians the tables show (errors and rates by up to {median_err:.3f}). "
        + _same_processor_words(root)
        + "Floating-point results of training differ between processors (their BLAS "
        "kernels sum in other orders); the per-example scores, built on ranks, bins and "
        "thresholds, absorb most of it, the continuous readouts show it, and a method that "
        "picks among checkpoints by a threshold can pick another. The committed evaluations "
        "are kept, since a rerun on another processor is no more right than they are.\n"
    )


@fragment("evaluate-scoring")
def evaluate_scoring(root: Path) -> str:
    """docs/evaluate.md: the seconds of an evaluation's scores before and after the faster
    counting (benchmarks/scoring.py), the results checked equal."""
    doc = _load(root, "benchmarks/results/scoring.json")
    rows = {r["label"]: r for r in (doc or {}).get("rows", [])}
    if not {"before", "after"} <= set(rows):
        return "Not measured yet.\n"
    before, after = rows["before"], rows["after"]
    same = before["results_sha256"] == after["results_sha256"]
    hw = after["hardware"]
    lines = [
        f"Scoring `{Path(after['folder']).name}` from its inputs (K = "
        f"{after['models_per_side']}, {len(after['methods'])} methods; "
        f"`benchmarks/scoring.py`, {hw.get('processor')}, {hw.get('torch_threads')} threads, "
        f"load average {hw.get('load_average_15min')} over the 15 minutes before): "
        f"{secs(before['seconds'])} at commit {before['source']['commit'][:7]}, "
        f"{secs(after['seconds'])} at {after['source']['commit'][:7]} "
        f"({speed(before['seconds'] / after['seconds'])}), "
        + (
            "every score bit-identical (one SHA-256 of both results)."
            if same
            else "**the results differ** (their SHA-256 differ)."
        ),
        "",
        "| part (cProfile's cumulative seconds; the challenge's epsilons and KLoM are also "
        "inside the bootstrap's) | before: s | after: s |",
        "|---|---|---|",
    ]
    for part, t in before["profiled_parts_seconds"].items():
        lines.append(f"| {part} | {t:.1f} | {after['profiled_parts_seconds'][part]:.1f} |")
    return "\n".join(lines) + "\n"


ALLOCATOR_WORKLOADS = {
    "finetune": "fine-tuning (All-CNN ×0.4, 2,500 images, 3 epochs and their stop-rule passes)",
    "kernel": "per-layer kernel (ResNet-18 ×0.4, 250 inputs, c = 5, `auto`)",
}


def _span(lo: float, hi: float, fmt: str) -> str:
    """``lo–hi``, or one number where both read the same."""
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}–{b}"


def _reuse_words(runs: dict) -> str:
    """The reuse loop of benchmarks/allocator.py: after how many rounds a freed block is
    reused, and the peak, per setting."""
    parts = []
    for s, rs in runs.items():
        faulting = [sum(1 for f in r["faults_per_round"] if f > 0) for r in rs]
        rounds = len(rs[0]["faults_per_round"])
        peaks = [r["peak_rss_gb"] * 1024 for r in rs]
        parts.append(
            f"with `{s}` {_span(min(faulting), max(faulting), '.0f')} of its {rounds} rounds "
            f"faulted (peak {_span(min(peaks), max(peaks), '.0f')} MB)"
        )
    return "; ".join(parts)


@fragment("allocator-cli")
def allocator_cli(root: Path) -> str:
    """docs/benchmarks.md: the command line's ``--malloc keep`` against glibc's default
    settings (benchmarks/allocator.py)."""
    d = _load(root, "benchmarks/results/allocator.json")
    if d is None:
        return "Not measured yet.\n"
    hw, src = d["hardware"], d["source"]
    lines = [
        "| workload | `--malloc` | seconds: median (runs) | system CPU s (median) | "
        "minor page faults (median) | peak GB (runs) |",
        "|---|---|---|---|---|---|",
    ]
    words, loads = [], []
    for w, label in ALLOCATOR_WORKLOADS.items():
        med = d["median_seconds"][w]
        for s, runs in d["runs"][w].items():
            loads += [r["load_before"] for r in runs]
            each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            system = _median([r["system_seconds"] for r in runs])
            faults = _median([r["minor_faults"] for r in runs])
            peaks = ", ".join(f"{r['peak_rss_gb']:.2f}" for r in runs)
            lines.append(
                f"| {label} | {s} | {med[s]:.1f} ({each}) | {system:.1f} | "
                f"{faults / 1e6:.2f} M | {peaks} |"
            )
        same = "the same result" if d["same_result"][w] else "**a different result**"
        words.append(f"{w}: {speed(med['default'] / med['keep'])}, {same}")
    return (
        f"`benchmarks/allocator.py` at commit {src['commit'][:7]}"
        f"{' (dirty)' if src.get('dirty') else ''}, {hw.get('processor')}, "
        f"{hw.get('torch_threads')} threads, {d['rounds']} interleaved rounds, each run in its "
        f"own process (load average {_span(min(loads), max(loads), '.1f')} before them"
        f"{_load_words(loads)}; results compared by the SHA-256 of the weights or the "
        f"kernel):\n\n"
        + "\n".join(lines)
        + f"\n\n`keep` against `default` — {'; '.join(words)}. The reuse loop (one 64 MiB "
        f"tensor allocated, filled and freed, in a fresh process per run): "
        f"{_reuse_words(d['runs']['reuse'])}.\n"
    )


def render(text: str, root: Path) -> tuple[str, list[str]]:
    """``text`` with every fragment regenerated, and the names of those that changed."""
    changed = []

    def sub(m: re.Match) -> str:
        name = m["name"]
        if name not in GENERATORS:
            raise KeyError(f"no generator for fragment {name!r}")
        body = GENERATORS[name](root).rstrip("\n") + "\n"
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return MARKER.sub(sub, text), changed


def documents(root: Path) -> list[Path]:
    """Every markdown file of the repository that holds a fragment."""
    paths = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [p for p in paths if p.is_file() and "<!-- fragment:" in p.read_text()]


def main() -> int:
    p = argparse.ArgumentParser(description="regenerate (or --check) the docs' fragments")
    p.add_argument("--check", action="store_true", help="only report stale fragments")
    args = p.parse_args()
    stale = []
    for path in documents(ROOT):
        text, changed = render(path.read_text(), ROOT)
        stale += [f"{path.relative_to(ROOT)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(text)
    for line in stale:
        print(("stale " if args.check else "rewrote ") + line)
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
