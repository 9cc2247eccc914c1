"""Command line: ``forgetbox run`` (the paper's experiment), ``forgetbox train`` (pre-train and
fine-tune, print the three models' errors), ``forgetbox scrub`` (scrub your own model),
``forgetbox prepare`` (factor a kernel once for many requests).

One module per command; each only parses its flags and calls the library.
"""

from __future__ import annotations

import argparse
import sys

from ..versions import package_version
from . import prepare, run, scrub, train

COMMANDS = (run, train, scrub, prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forgetbox",
        description="One-shot forgetting for deep networks (NTK scrubbing, Fisher noise, "
        "information bounds).",
    )
    parser.add_argument("--version", action="version", version=f"forgetbox {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, MemoryError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
