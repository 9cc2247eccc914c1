"""Command line: ``forgetbox run`` (the paper's experiment), ``forgetbox train`` (pre-train and
fine-tune, print the three models' errors), ``forgetbox scrub`` (scrub your own model),
``forgetbox prepare`` (factor a kernel once for many requests), ``forgetbox verify`` (audit
a deletions folder), ``forgetbox report`` (re-render a run's report from its results.json),
``forgetbox evaluate`` (judge the methods against retrain ensembles).

One module per command; each only parses its flags and calls the library.
"""

from __future__ import annotations

import argparse
import sys

from .. import parallel
from ..versions import package_version
from . import evaluate, prepare, report, run, scrub, train, verify

COMMANDS = (run, train, evaluate, scrub, prepare, verify, report)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on standard error, exit status 2."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``forgetbox`` parser with one subcommand per module of :data:`COMMANDS`."""
    parser = _Parser(
        prog="forgetbox",
        description="One-shot forgetting for deep networks (NTK scrubbing, Fisher noise, "
        "information bounds).",
    )
    parser.add_argument("--version", action="version", version=f"forgetbox {package_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


# what a user can cause: bad input, refused state, too little memory, files that cannot be read
USER_ERRORS = (ValueError, MemoryError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 on bad input or refused state (one line on standard error, no
    traceback unless ``--debug``), 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parallel.init_from_env(getattr(args, "device", None) or "cpu")  # under torchrun
        return args.func(args)
    except KeyboardInterrupt:
        print(
            "error: interrupted; nothing half-written was left (rerun to resume)", file=sys.stderr
        )
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text
