"""The report's HTML: sections built from a run's results, one page with no outside resource,
readable from 420 to 1400 pixels wide (tables scroll inside their own block)."""

from __future__ import annotations

import base64
import html
import math

from . import headline, lede, provenance

NARROW_MAX_PX = 700  # below this page width the figures' narrow drawings are shown

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:1em;color:#222;
line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em}
.scroll{overflow-x:auto;max-width:100%}
.scroll tr>:first-child{position:sticky;left:0;background:#fff;z-index:1;
box-shadow:inset -1px 0 #ccc}
p.lede{font-size:1.1em;border-left:4px solid #1f77b4;padding:.3em .8em;background:#f4f8fc}
td.inband{background:#e3f4e3}td.wrap{text-align:right}
.contradicted{color:#c0392b;font-weight:600}.decided{color:#b9770e;font-weight:600}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;white-space:nowrap}
.holds{color:#1a7f1a;font-weight:600}.fails{color:#c0392b;font-weight:600}
.inconclusive{color:#b9770e;font-weight:600}
.warnings{color:#c0392b}.note{color:#555;font-size:13px}
.vacuous{color:#c0392b}
img{max-width:100%;height:auto}
figure{margin:1.5em 0}figcaption{font-size:13px;color:#444;max-width:60em}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
dl.run{display:grid;grid-template-columns:minmax(8em,max-content) 1fr;gap:.2em 1em;
font-size:14px}
dl.run dt{font-weight:600}dl.run dd{margin:0;overflow-wrap:anywhere}
@media (max-width:700px){table.stack,table.stack tbody,table.stack tr,table.stack td{display:block}
table.stack tr:first-child{display:none}table.stack tr{border:1px solid #ccc;margin:.6em 0}
table.stack td{border:0;border-top:1px solid #eee;position:static;text-align:left;
box-shadow:none}
table.stack td[data-label]:before{content:attr(data-label);display:block;font-weight:600;
font-size:12px;color:#555}}
"""


def esc(x) -> str:
    """``x`` as HTML-escaped text."""
    return html.escape(str(x))


def short(x: float | None) -> str:
    """A number in a few characters (``n/a`` for missing, ``nan`` for NaN)."""
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-2):
        return f"{x:.1e}"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def _num(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}" if pct else short(x)


def table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table of ``head`` and ``rows`` (cells already rendered); ``cls="stack"``: on
    narrow screens each row becomes a block of labelled cells (tables of prose)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    if "stack" in cls.split():
        rows = [
            [c.replace("<td", f'<td data-label="{h}"', 1) for h, c in zip(head, r, strict=True)]
            for r in rows
        ]
    body = "".join("<tr>" + "".join(rows_) + "</tr>" for rows_ in rows)
    return f'<div class="scroll"><table class="{cls}"><tr>{th}</tr>{body}</table></div>'


def cell(text: str, num: bool = True) -> str:
    """One HTML table cell (numbers right-aligned)."""
    return f'<td class="num">{text}</td>' if num else f"<td>{text}</td>"


# the headline readouts whose cells are marked when inside the retrain band (L1 to retrain is 0
# for retrain itself: its band says nothing)
MARKED = ("error_forget", "error_retain", "error_test", "mia_forget_member_rate")


def in_band(results: dict, key: str, value: float | None) -> bool:
    """Whether a mean readout lies inside the run's retrain band (``results["retrain_bands"]``,
    written with the claims)."""
    b = (results.get("retrain_bands") or {}).get(key)
    return b is not None and value is not None and b["low"] <= value <= b["high"]


def speed_text(sp: tuple | None) -> str:
    """Mean speed ratio over retraining and its per-seed range, in words (``N× slower`` below
    1)."""
    if sp is None:
        return "—"
    return f"{lede.times(sp[0])} <small>({lede.times_range(sp[1], sp[2])})</small>"


def _headline(results: dict) -> str:
    head = ["method"] + [f"{name}{' (%)' if pct else ''}" for _, name, pct in headline.HEADLINE]
    head += ["seconds", "time against retraining"]
    rows = []
    for r in headline.headline_rows(results):
        cells = [f"<th>{esc(r['method'])}</th>"]
        for key, _, pct in headline.HEADLINE:
            m, s = r[key]
            text = f"{_num(m, pct)} <small>± {_num(s, pct)}</small>"
            if key in MARKED and r["method"] != "retrain" and in_band(results, key, m):
                cells.append(
                    f'<td class="num inband" title="inside the retrain band">{text} ✓</td>'
                )
            else:
                cells.append(cell(text))
        m, s = r["seconds"]
        cells.append(cell("—" if r["method"] == "original" else f"{_num(m)}"))
        cells.append(cell("—" if r["method"] == "retrain" else speed_text(r["speedup"])))
        rows.append(cells)
    comp = headline.compute_summary(results)
    note = (
        f"Mean ± standard deviation over {len(results.get('seeds', []))} seeds. Seconds: the "
        "method's own time (the shared NTK solve counted for both NTK methods); retrain's is its "
        "fine-tuning on D_r. Time against retraining: the same seed's retraining time over the "
        "method's, mean (range over seeds). Green cells with ✓: the mean lies inside the retrain "
        f"band of the claims. Total compute of this run: {comp['total_seconds']:.0f} s"
    )
    if comp["partial"]:
        note += " (only the stages whose time was recorded: fine-tunings and methods)"
    elif comp.get("this_run_seconds") is not None:
        note += f", of which {comp['this_run_seconds']:.0f} s computed by this invocation"
    return table(head, rows) + f'<p class="note">{esc(note)}.</p>'


FLAG_CLASS = {"contradicted": "contradicted", "decided by the ensemble": "decided"}


def _claims(results: dict) -> str:
    rows = []
    cc = results.get("cross_check") or {}
    flags = {c["id"]: c for c in cc.get("claims", []) if c["flag"] in FLAG_CLASS}
    for c in results.get("claims", []):
        before = c.get("verdict_before_caveat")
        verdict = f'<span class="{c["verdict"]}">{esc(c["verdict"])}</span>'
        if before:
            verdict += f"<br><small>({esc(before)} before the caveat)</small>"
        if c["id"] in flags:
            f = flags[c["id"]]
            verdict += (
                f'<br><a href="#cross-check" class="{FLAG_CLASS[f["flag"]]}">'
                f"{esc(f['flag'])}: the K = {cc['models']} ensemble reads {esc(f['ensemble'])}</a>"
            )
        rows.append(
            [
                cell(str(c["id"])),
                cell(esc(c["text"]), False),
                cell(verdict, False),
                cell(esc(c.get("rule", "")), False),
                cell(esc(c["evidence"]), False),
            ]
        )
    return table(["#", "claim", "verdict", "rule", "evidence"], rows, "stack")


def _cross_check(results: dict) -> str:
    cc = results.get("cross_check")
    if not cc:
        return (
            '<p class="note">No committed ensemble evaluation (<code>forgetbox evaluate</code>) '
            "of this setup was found beside this run, so its verdicts are not cross-checked.</p>"
        )
    rows = []
    for c in cc["claims"]:
        cls = FLAG_CLASS.get(c["flag"], "")
        rows.append(
            [
                cell(str(c["id"])),
                cell(f'<span class="{c["run"]}">{esc(c["run"])}</span>', False),
                cell(f'<span class="{c["ensemble"]}">{esc(c["ensemble"])}</span>', False),
                cell(f'<span class="{cls}">{esc(c["flag"])}</span>', False),
                cell(esc(c["evidence"]), False),
            ]
        )
    note = (
        f"The claims an ensemble can read, read again on the committed evaluation "
        f"{cc['evaluation']} of the same setup (K = {cc['models']} models per method, one split): "
        "each method's median model against the retrain row's band (5-95 % quantiles), decided "
        "when it clears the band by at least one sample. Contradicted: the ensemble reads the "
        "claim the other way; decided by the ensemble: this run is inconclusive and the ensemble "
        "is not."
    )
    head = ["#", "this run", "ensemble", "flag", "ensemble evidence"]
    return f'<p class="note">{esc(note)}</p>' + table(head, rows, "stack")


def _bounds(results: dict) -> str:
    content = headline.cohort_content_nats(results)
    head = ["method", "noise scale α", "white box (nats)"] + [
        f"black box per {s} query (nats)" for s in ("D_f", "D_r", "test")
    ]
    rows = []
    for r in headline.bound_rows(results):
        cells = [f"<th>{esc(r['method'])}</th>", cell(f"{r['alpha']:.0e}" if r["alpha"] else "—")]
        for key in (
            "info_weights_nats",
            "info_activations_nats_forget",
            "info_activations_nats_retain",
            "info_activations_nats_test",
        ):
            m, s, vacuous = r[key]
            text = f"{_num(m)} <small>± {_num(s)}</small>"
            cells.append(
                f'<td class="num vacuous">{text} (vacuous)</td>' if vacuous else cell(text)
            )
        rows.append(cells)
    levels = headline.input_levels(results)
    context = (
        "Bounds are upper bounds on what the weights (white box) or one query's outputs (black "
        "box) reveal about D_f, in nats (1 nat = 1/ln 2 bits). Methods without noise of their "
        "own are measured at ntk_fisher's α. Every method is compared with the retrained model "
        "at the same α."
    )
    if content is not None:
        context += (
            f" For scale: the cohort's raw content is |D_f| · d · ln {levels} = {content:,.0f} "
            "nats; a bound at or above it (marked vacuous) certifies nothing about D_f."
        )
    return table(head, rows) + f'<p class="note">{esc(context)}</p>'


def _full_table(results: dict) -> str:
    methods = list(results["methods"])
    keys = [k for k in headline.READOUT_NAMES if any(k in results["methods"][m]["mean"]
            for m in methods)]  # fmt: skip
    rows = []
    for k in keys:
        cells = [f"<th>{esc(headline.READOUT_NAMES[k])}</th>"]
        for m in methods:
            mean, std = results["methods"][m]["mean"].get(k), results["methods"][m]["std"].get(k)
            cells.append(cell(f"{_num(mean)} <small>± {_num(std or 0)}</small>"))
        rows.append(cells)
    return table(["readout"] + [esc(m) for m in methods], rows)


def figure_blocks(figures: dict, captions: dict) -> str:
    """The figures as embedded images with their captions."""
    out = []
    for name, fig in figures.items():
        if fig is None:
            continue
        mime, data = fig.embedded()
        b64 = base64.b64encode(data).decode()
        cap = esc(captions.get(name, name))
        img = f'<img alt="{esc(name)}" src="data:{mime};base64,{b64}"/>'
        if fig.narrow is not None:
            n_mime, n_data = fig.narrow.embedded()
            n_b64 = base64.b64encode(n_data).decode()
            img = (
                f'<picture><source media="(max-width: {NARROW_MAX_PX}px)" '
                f'srcset="data:{n_mime};base64,{n_b64}"/>{img}</picture>'
            )
        out.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
    return "".join(out)


def _compute(results: dict) -> str:
    comp = headline.compute_summary(results)
    rows = [
        [f"<th>{esc(kind)}</th>", cell(f"{secs:.1f}")]
        for kind, secs in sorted(comp["per_stage_kind_seconds"].items())
    ]
    return table(["stage", "seconds"], rows)


def _what_was_run(results: dict) -> str:
    lines = provenance.what_was_run(results)
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in lines)
    devs = "".join(f"<li>{esc(d)}</li>" for d in provenance.deviations(results))
    return (
        f'<dl class="run">{items}</dl><p class="note">Departures from the paper that apply '
        f'(docs/deviations.md in the forgetbox repository):</p><ul class="note">{devs}</ul>'
    )


def title_of(results: dict) -> str:
    """The page title: data set, model and profile of the run."""
    cfg = results["config"]
    return (
        f"forgetbox report: {cfg['model']} x{cfg.get('width', 1.0)} on {cfg['dataset']}, "
        f"{cfg.get('profile')} profile, {len(results.get('seeds', []))} seeds"
    )


def page(results: dict, figures: dict, captions: dict, config_text: str) -> str:
    """The run's self-contained HTML report."""
    warned = results.get("warnings", [])
    warnings = (
        '<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in warned) + "</ul>"
        if warned
        else ""
    )
    title = title_of(results)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{STYLE}</style></head><body>
<h1>{esc(title)}</h1>
<p class="lede">{esc(lede.run_sentence(results))}</p>
<p>Forgetting Outside the Box (Golatkar, Achille, Soatto, ECCV 2020), reproduced by forgetbox.
The <b>retrain band</b> is the range of a readout over the models retrained from scratch on
D_r: a method forgets well when its readouts fall inside it.</p>
<h2 id="what-was-run">What was run</h2>{_what_was_run(results)}
<h2 id="headline">Headline</h2>{warnings}{_headline(results)}
<h2 id="claims">The paper's claims</h2>{_claims(results)}
<h2 id="cross-check">Cross-check against an ensemble</h2>{_cross_check(results)}
<h2 id="bounds">Information bounds</h2>{_bounds(results)}
<h2 id="figures">Figures</h2>{figure_blocks(figures, captions)}
<h2 id="results">All readouts (mean ± std over seeds)</h2>{_full_table(results)}
<h2 id="timings">Compute by stage (seconds, cached stages included)</h2>{_compute(results)}
<h2 id="configuration">Configuration</h2><pre>{esc(config_text)}</pre>
</body></html>"""
