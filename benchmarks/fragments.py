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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean

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
    """``4.2× faster`` or ``1.3× slower`` (never "0.8× faster")."""
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"


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
            f"{req:.1f} s ({speed(std / req)}) | {fast:.1f} s ({speed(std / fast)}) | "
            f"{lin:.1f} s | {std:.1f} s |"
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
            f"profile, seeds {', '.join(map(str, seeds))}; `{path.relative_to(root)}`):\n"
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
        out.append("| trained | parameters | standard test error | linearized test error |")
        out.append("|---|---|---|---|")
        for trained in dict.fromkeys(r["trained"] for r in doc["linearization"]):
            rs = [r for r in doc["linearization"] if r["trained"] == trained]
            std = [r["errors"]["test"] for r in rs if r["fine-tuning"] == "standard"]
            lin = [r["errors"]["test"] for r in rs if r["fine-tuning"] == "linearized"]
            out.append(
                f"| {trained} | {rs[0]['parameters']:,} | {pct(mean(std))} ({len(std)} seeds) | "
                f"{pct(mean(lin))} ({len(lin)} seeds) |"
            )
        out.append("")
    return "\n".join(out) if out else "No certified study has been committed yet.\n"


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
