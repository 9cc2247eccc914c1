"""``forgetbox verify``: re-verify a deletions folder, one line per finding (the auditor's
tool); exit 0 only when everything verifies, 1 otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deletion.ledger import read_key
from ..deletion.verify import verify_folder

HELP = "re-verify a deletions folder: ledger, files, data, prepared state, receipts"


def add_parser(sub) -> None:
    """``forgetbox verify [DIR | --out DIR] [--data] [--prepared] [--receipt R ...]``."""
    p = sub.add_parser("verify", help=HELP)
    p.add_argument("folder", nargs="?", type=Path, help="the deletions folder (--out of scrub)")
    p.add_argument("--out", type=Path, help="the deletions folder (instead of FOLDER)")
    p.add_argument("--data", type=Path, help="the training data: checked against every entry")
    p.add_argument("--prepared", type=Path, help="the prepared state the requests used")
    p.add_argument(
        "--receipt",
        type=Path,
        action="append",
        default=[],
        help="a deletion receipt (receipt-NNNN.json): proves its request is still in the ledger",
    )
    p.add_argument("--ledger-key-file", type=Path, help="the ledger's key (HMACs verified)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print every finding; 0 when all verify, 1 otherwise."""
    folder = args.out or args.folder
    if folder is None or (args.out is not None and args.folder is not None):
        raise ValueError("give the deletions folder once: FOLDER or --out FOLDER")
    findings = verify_folder(
        folder,
        key=read_key(args.ledger_key_file),
        data=args.data,
        prepared=args.prepared,
        receipts=tuple(args.receipt),
    )
    for f in findings:
        print(f.line())
    failed = sum(not f.ok for f in findings)
    print(
        f"{len(findings) - failed} verified, {failed} failed" if failed else "everything verifies"
    )
    return 1 if failed else 0
