"""The evaluation's report page (``evaluation.html``): the protocol, a table per method of the
per-example attacks and scores against the retrain row, the readouts against their retrain
bands, the figures."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_json, atomic_write_text, staged_files
from ..audit.band import CLOSER, EDGE, QUANTILES, judge, meaning_of, resolution_of
from . import lede, provenance
from .evaluation_figures import CAPTIONS, draw_all
from .headline import READOUT_NAMES
from .page import STYLE, cell, esc, figure_blocks, short, table
from .schema import ResultsError, check_evaluation

PAIRED = "retrain_paired"  # forgetbox.evaluation.config.PAIRED_RETRAIN (report sits below it)
ROWS_NOT_TIMED = ("retrain", "original", PAIRED)  # no "time against retraining" for them


def _auc(roc: dict | None) -> str:
    """An AUC with its example-bootstrap interval (either absent in older evaluations)."""
    if not roc:
        return "—"
    ci = roc.get("auc_ci95")
    return f"{roc['auc']:.3f}" + (f" <small>[{ci[0]:.2f}, {ci[1]:.2f}]</small>" if ci else "")


def _na(block: dict) -> str:
    """How many values could not be computed (absent in older evaluations)."""
    k = block.get("not_computable") or 0
    return f" <small>({k} not computable)</small>" if k else ""


def judged_interval(row: dict) -> tuple[list[float] | None, str]:
    """The interval a row against the retrain row is judged by, and over what it resamples:
    the two-level one (models and examples) where it was drawn, else the one over examples
    (U-LiRA, and evaluations scored before the two-level bootstrap existed)."""
    both = row.get("models_and_examples")
    if both is not None and row["ci95"] is not None:
        return both["ci95"], "models and examples"
    return row["ci95"], "examples"


def _ci(row: dict | None) -> str:
    if not row:
        return "—"
    if row["ci95"] is None:
        return f"too few examples ({row['examples']}){_na(row)}"
    (lo, hi), over = judged_interval(row)
    mark = " <b>≠</b>" if row["distinguishable"] else ""
    note = "" if over == "models and examples" else "*"
    return f"{row['difference']:+.3f} <small>[{lo:+.3f}, {hi:+.3f}]{note}</small>{mark}{_na(row)}"


def _klom(block: dict) -> str:
    return short(block["median"]) + _na(block)


def _median_seconds(block: dict) -> float | None:
    secs = sorted(s for s in block.get("seconds") or [] if s is not None)
    return secs[len(secs) // 2] if secs else None


def _attacks(results: dict) -> str:
    """Per-example attacks (U-LiRA, the loss-threshold attack) and the time per method."""
    head = [
        "method",
        "U-LiRA balanced acc.",
        "U-LiRA TPR @ 1% FPR",
        "vs retrain (U-LiRA)",
        "loss attack AUC, D_f vs all test",
        "loss attack AUC, same class",
        "seconds (median)",
        "time against retraining",
    ]
    ref = _median_seconds(results["methods"].get("retrain") or {})
    rows = []
    for m, b in results["methods"].items():
        u = b.get("ulira")
        vs = results["against_retrain"].get(m, {})
        own = _median_seconds(b)
        speed = lede.times(ref / own) if ref and own and m not in ROWS_NOT_TIMED else "—"
        rows.append(
            [
                f"<th>{esc(m)}</th>",
                cell(f"{u['balanced_accuracy']:.3f}" if u else "—"),
                cell(f"{u['tpr_at_1pct_fpr']:.3f}" if u else "—"),
                cell(_ci(vs.get("ulira_balanced_accuracy"))),
                cell(_auc(b["population"]["loss"])),
                cell(_auc(b["population"].get("loss_same_class"))),
                cell(short(own) if own is not None else "—"),
                cell(speed),
            ]
        )
    return table(head, rows)


def _diverged(results: dict) -> str:
    """A note per method that diverged on some models (weights not finite after forgetting)."""
    k = results["config"]["evaluate"]["models"]
    items = []
    for m, b in results["methods"].items():
        bad = b.get("diverged") or []
        rows = (b.get("ulira") or {}).get("diverged_rows", 0)
        if not bad and not rows:
            continue
        where = ", ".join(str(i + 1) for i in bad)
        text = f"{esc(m)} diverged on {len(bad)} of its {k} models" + (
            f" (models {where})" if bad else ""
        )
        if rows:
            text += f" and on {rows} U-LiRA shadow rows, left out of U-LiRA"
        items.append(f"<li>{text}</li>")
    if not items:
        return ""
    return (
        '<p class="note">Methods that diverged (their weights not finite after forgetting): '
        "such a model's readouts are not computable (never inside a band); the per-example "
        "scores use the method's other models (the challenge and KLoM against the references "
        "of the same indices; with fewer than 3 left, no point and no KLoM).</p><ul>"
        + "".join(items)
        + "</ul>"
    )


def _scores(results: dict) -> str:
    """The challenge score and KLoM against the retrain row."""
    head = [
        "method",
        "challenge F",
        "challenge score",
        "vs retrain (points)",
        "KLoM D_f (median)",
        "KLoM D_r",
        "KLoM val",
        "vs retrain (KLoM D_f)",
    ]
    rows = []
    for m, b in results["methods"].items():
        vs = results["against_retrain"].get(m, {})
        rows.append(
            [
                f"<th>{esc(m)}</th>",
                cell(f"{b['challenge']['forget_quality']:.3f}{_na(b['challenge'])}"),
                cell(f"{b['challenge']['score']:.3f}"),
                cell(_ci(vs.get("challenge_points"))),
                cell(_klom(b["klom"]["forget"])),
                cell(_klom(b["klom"]["retain"])),
                cell(_klom(b["klom"]["val"])),
                cell(_ci(vs.get("klom_forget"))),
            ]
        )
    return table(head, rows)


def _paired(results: dict) -> str:
    """A linearized evaluation's methods against the paired retrain row (the references' own
    exact retrains with fresh noise: the same seeds as every method's models)."""
    paired = results.get("against_paired_retrain")
    if not paired:
        return ""
    head = ["method", "vs paired retrain (points)", "vs paired retrain (KLoM D_f)"]
    rows = [
        [
            f"<th>{esc(m)}</th>",
            cell(_ci(vs.get("challenge_points"))),
            cell(_ci(vs.get("klom_forget"))),
        ]
        for m, vs in paired.items()
    ]
    return (
        '<h2 id="paired">Scores against the paired retrain row</h2>'
        "<p>Every method's model k shares its seed (the new head's initialisation, hence the "
        "linearization point) with reference k; the retrain row above uses other seeds, so a "
        "method can differ from it by the seeds alone. The paired row "
        f"({esc(PAIRED)}) is reference k's own exact retrain released with fresh noise: "
        "against it the seeds are no longer a difference (for the certified row what remains "
        "is D_f, up to the residual, and the noise draws). Its own row against the retrain row "
        "above is the most the pairing can do (its models are the references' own, with other "
        "noise), plus the retrain row's sampling error.</p>" + table(head, rows)
    )


def _readouts(results: dict) -> str:
    """One row per readout, one column per method, and the retrain band (cells inside it
    marked)."""
    keys = list(results["bands"])
    methods = list(results["methods"])
    head = ["readout"] + [esc(m) for m in methods] + ["retrain band"]
    rows = []
    for k in keys:
        cells = [f"<th>{esc(READOUT_NAMES.get(k, k))}</th>"]
        for m in methods:
            r = results["methods"][m]["readouts"][k]
            inside = r["meaning"] == "inside"
            flag = " ✓" if inside else _flag(r)
            text = f"{short(r['median'])}{flag}<br><small>{r['models_outside']} out</small>" + _na(
                r
            )
            cls = "inband" if inside and m != "retrain" else ""
            cells.append(f'<td class="wrap {cls}">{text}</td>')
        band = results["bands"][k]
        cells.append(f'<td class="wrap">[{short(band["low"])}, {short(band["high"])}]</td>')
        rows.append(cells)
    return table(head, rows)


def _flag(r: dict) -> str:
    """A readout's label outside the band: bold where it says something about D_f; the side
    and "at the edge" where the median does not clear the band by its resolution and spread."""
    meaning = r["meaning"]
    if meaning == EDGE:
        return f" {esc(r['side'])}, {EDGE}"
    return f" {CLOSER}" if meaning == CLOSER else f" <b>{esc(meaning)}</b>"


def _certificate(results: dict) -> str:
    """The certified (ε, δ) checked against the ensembles (linearized runs only)."""
    block = results.get("certificate")
    if not block:
        return ""
    names = {PAIRED: f"{PAIRED} (null control: the references' own mechanism)"}
    items = [(names.get(m, m), c) for m, c in block["methods"].items()]
    items.append(("original + the same noise (control)", block["control_original_with_noise"]))
    rows = []
    for name, c in items:
        pooled, each = c["mean_margin_attack"], c["per_example"]
        rows.append(
            [
                f"<th>{esc(name)}</th>",
                cell(c["verdict"], False),
                cell(f"{pooled['verdict']} ({pooled['margin']:+.3f})", False),
                cell(f"{each['verdict']} ({each['refuted']} of {each['examples']} refuted)", False),
            ]
        )
    first = next(iter(block["methods"].values()))
    head = ["releases", "verdict", "mean-margin attack (margin)", "per-example attacks"]
    return (
        '<h2 id="certificate">The certificate against the attacks</h2>'
        f"<p>K = {first['models']} releases per side against the reference mechanism (exact "
        f"linearized retrains with noise sigma = {block['sigma']:.3g}); each attack's most "
        "suspicious threshold region, chosen on half of the draws, must satisfy TPR ≤ e^ε FPR "
        f"+ δ both ways on the other half (ε = {first['epsilon']:g}, δ = {first['delta']:g}, "
        "Clopper-Pearson bounds; examples Bonferroni-corrected). Margin: lower bound of the "
        "high side's rate minus e^ε × the other's upper bound minus δ (refuted when > 0). "
        "'no power': too few models to refute even a perfectly separating attack.</p>"
        + table(head, rows)
    )


def page(results: dict, figures: dict) -> str:
    """The evaluation's HTML page (``evaluation.html``)."""
    cfg = results["config"]
    e, x = cfg["evaluate"], cfg["experiment"]
    title = (
        f"forgetbox evaluation: {x['model']} x{x['width']} on {x['dataset']}, "
        f"{e['models']} models per side"
    )
    plan = results.get("ulira_plan") or {}
    ulira_note = (
        f"U-LiRA: {plan.get('shadow_models')} shadow models on random halves of D, "
        f"{plan.get('forget_sets')} cohorts each ({plan.get('unlearned_models')} unlearned models "
        f"per method), {plan.get('folds')} folds."
        if plan
        else "U-LiRA not run (no shadow models)."
    )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{STYLE}</style></head><body>
<h1>{esc(title)}</h1>
<p class="lede">{esc(lede.evaluation_sentence(results))}</p>
<h2 id="protocol">Protocol</h2><p>{esc(results["protocol"])}</p>
<p class="note">{esc(provenance.evaluation_line(results))}</p><p class="note">{esc(ulira_note)}
KLoM direction: {esc(results["methods"][next(iter(results["methods"]))]["klom"]["direction"])}.
"vs retrain": the method's mean per-example value minus the retrain row's, with a 95 %
interval from a two-level bootstrap that resamples the ensemble indices (model k of a method
and reference k, from one seed, together; the retrain row's models on their own) and then the
examples (the draws' spread, centred on the observed difference; an interval marked *
resamples the examples only: U-LiRA, whose shadow models are not
resampled, and evaluations scored before the two-level bootstrap); ≠
marks an interval that excludes 0. Over examples alone, two finite ensembles of one
distribution differ by more than the interval allows, since each model's own traits are
shared by every example. A score that cannot be
computed for an example (KLoM with every unlearned margin at the top of the joint range; a
challenge epsilon with no usable rule) is left out of medians and differences and counted
("not computable"); in the challenge it earns no points. U-LiRA takes one unlearned model per
shadow model, example and side. Loss attack: a threshold
on the loss, D_f against all test images or against those of D_f's classes (so that a class's
difficulty does not pass for membership), all K models pooled, with a 95 % interval from
resampling examples.</p>
<h2 id="attacks">Per-example attacks</h2>{_attacks(results)}
<p class="note">Time against retraining: the retrain row's median time over the method's.</p>
<h2 id="scores">Scores against the retrain row</h2>{_diverged(results)}{_scores(results)}
{_paired(results)}{_certificate(results)}
<h2 id="bands">Readouts against the retrain band</h2>{_readouts(results)}
<p class="note">Median over the method's models; ✓ and green: inside the retrain band; "leaks": on
the side where the model still holds D_f; "Streisand": beyond retraining on the other side;
"closer": an L1 distance to the paired reference (model k against reference k, retrained from
model k's own seed) below the band, whose retrain-row models are seeded apart from their
references: retraining from the model's own seed would give 0, so this is not a trace of the
deletion; "at the edge": outside the band by less than the readout's resolution (one sample
of the set a rate or error counts, one epoch of re-learn time, the L1 tolerance 0.01; none for a
loss) or than the half-width of a 95 % bootstrap of that distance (the method's and the retrain
row's models resampled, values that could not be computed left out), so no side is read;
"n out": the method's models outside the band.</p>
<h2 id="figures">Figures</h2>{figure_blocks(figures, CAPTIONS)}
</body></html>"""


def write_report(results: dict, out: Path) -> str:
    """Draw the figures into ``out`` and return the page."""
    return page(results, draw_all(results, Path(out)))


def rerender(folder: Path) -> None:
    """Redraw an evaluation folder's figures and ``evaluation.html`` from its
    ``evaluation.json``, the readouts' labels judged again (the numbers are not touched); see
    :func:`read_evaluation` and :func:`render`."""
    render(folder, read_evaluation(folder))


def read_evaluation(folder: Path) -> dict:
    """An evaluation folder's ``evaluation.json``, its structure checked (nothing is
    written); :class:`~forgetbox.report.schema.ResultsError` naming the field otherwise."""
    path = Path(folder) / "evaluation.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable evaluation.json ({exc})") from exc
    if not isinstance(results, dict) or results.get("kind") != "forgetbox-evaluation/1":
        raise ResultsError(
            f"{path}: not a scored forgetbox evaluation (kind forgetbox-evaluation/1; one "
            "written by forgetbox evaluate --no-score is scored by forgetbox report --rescore)"
        )
    return check_evaluation(results, path)


def _sizes(results: dict) -> dict[str, int | None]:
    """The sizes of the sets the readouts count on (``task``; D_r = the training set less D_f)."""
    task = results.get("task") or {}
    n_train, n_forget = task.get("n_train"), task.get("n_forget")
    retain = n_train - n_forget if n_train and n_forget else None
    return {
        "forget": n_forget,
        "retain": retain,
        "test": task.get("n_test"),
        "val": task.get("n_val"),
    }


def judge_readouts(results: dict) -> None:
    """Set every readout's ``meaning`` (and, outside the band, ``margin`` and ``needed``)
    again with the current criteria (:func:`forgetbox.audit.judge`: a side is read only where
    the median clears the band by its resolution and the bootstrap spread); the numbers are not
    touched."""
    sizes = _sizes(results)
    retrain = results["methods"].get("retrain")
    for method in results["methods"].values():
        for key, r in method["readouts"].items():
            r.pop("margin", None)
            r.pop("needed", None)
            if retrain is None or method is retrain:
                r["meaning"] = meaning_of(key, r["side"])
                continue
            res = resolution_of(key, sizes)[0]
            other = retrain["readouts"][key]["values"]
            q = tuple(results["bands"][key].get("quantiles") or QUANTILES)
            r.update(judge(key, r["side"], r["values"], other, res, q))


def render(folder: Path, results: dict) -> None:
    """Judge the readouts' labels again (:func:`judge_readouts`), then write the figures,
    ``evaluation.html`` and ``evaluation.json`` into a staging folder and move them into
    ``folder`` (the JSON last): a file that cannot be rendered changes nothing there."""
    path = Path(folder) / "evaluation.json"
    try:
        judge_readouts(results)
        with staged_files(folder, last="evaluation.json") as stage:
            atomic_write_text(stage / "evaluation.html", write_report(results, stage))
            atomic_write_json(stage / "evaluation.json", results)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        if isinstance(exc, ResultsError):
            raise
        raise ResultsError(
            f"{path}: cannot be rendered ({type(exc).__name__}: {exc}); nothing was written "
            "(an evaluation of another forgetbox version, or edited? --debug shows where)"
        ) from exc
