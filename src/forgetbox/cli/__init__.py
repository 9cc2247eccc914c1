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

from .. import allocator, parallel
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
    parser.add_argument(
        "--malloc",
        choices=("default", "keep"),
        default="default",
        help="glibc's allocator: its own settings (default), or keep freed memory for reuse: "
        "fewer page faults and the same results, but the process keeps what it freed, which "
        "can exceed its live peak (docs/benchmarks.md, 'Keeping freed memory')",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


# what a user can cause: bad input, refused state, too little memory, files that cannot be read
USER_ERRORS = (ValueError, MemoryError, OSError)

# what to do about a numerical failure or an exhausted device, by command
_SETTINGS_HINT = {
    "scrub": "--weight-decay, --dtype float64",
    "prepare": "--weight-decay, --dtype float64",
}
_MEMORY_HINT = {
    "scrub": "a smaller --memory-budget-gb (the solver then streams: --solver cg) or --chunk",
    "prepare": "a smaller --memory-budget-gb or --chunk, or --kernel pseudo",
}


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 on bad input or refused state (one line on standard error, no
    traceback unless ``--debug``), 130 when interrupted. Under ``torchrun`` each rank's
    error is printed once, as ``error: rank R: ...``; a rank stopped because another failed
    says so and exits 1 (rank 0 writes nothing unless every rank succeeded)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.malloc == "keep" and not allocator.keep_freed_memory():
        print(
            "note: --malloc keep has no effect here (the C library is not glibc)", file=sys.stderr
        )
    try:
        parallel.init_from_env(getattr(args, "device", None) or "cpu")  # under torchrun
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted; nothing half-written was left (rerun to resume)")
        return 130
    except parallel.PeerError as exc:
        if args.debug:
            raise
        served = args.command in ("scrub", "prepare")  # rank 0 writes after the barrier only
        _error(_one_line(exc) + ("; nothing was written" if served else ""))
        return 1
    except USER_ERRORS as exc:
        if args.debug:
            raise
        _error(_one_line(exc))
        return 2
    except RuntimeError as exc:  # torch's numerical and device errors, when one is known
        message = _runtime_message(exc, args.command)
        if message is None or args.debug:
            raise
        _error(message)
        return 2
    finally:
        parallel.shutdown()


def _error(message: str) -> None:
    where = f"rank {parallel.rank()}: " if parallel.active() else ""
    print(f"error: {where}{message}", file=sys.stderr)


def _runtime_message(exc: RuntimeError, command: str) -> str | None:
    """The one-line message of a failure the user can act on: a matrix that is singular or
    not positive definite (``torch.linalg.LinAlgError``), a device or host out of memory
    (``torch.OutOfMemoryError``, the CPU allocator's refusal); None for any other error."""
    import torch

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, torch.linalg.LinAlgError):
        hint = _SETTINGS_HINT.get(command, "--weight-decay")
        return (
            f"a linear solve failed: {first}. The matrix is singular or not positive definite "
            f"(ill-conditioned): increase the weight decay or compute in float64 ({hint})"
        )
    if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in first:
        hint = _MEMORY_HINT.get(command, "fewer samples (--train-per-class), or --solver cg")
        return f"out of memory: {first}. Use {hint}, or a device with more memory"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text
