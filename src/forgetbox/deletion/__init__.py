"""Deletion: scrub a user's own model, certify it, keep a ledger, and answer many requests
from a prepared state.

:mod:`.scrub` (:func:`scrub`), :mod:`.certificate` (the certificate), :mod:`.ledger` (the
request ledger), :mod:`.prepare` (:func:`prepare`: the engine's prepared state bound to its
weights, data and w0, and the settings it fixes), :mod:`.prepared_files` (a prepared state on
disk, every file verified), :mod:`.files` (a request's inputs on disk), :mod:`.requests`
(requests as the commands state them), :mod:`.plan` (a request read and checked, nothing
written), :mod:`.layout` (a deletions folder's files, staged then committed), :mod:`.commit`
(writing a served request), :mod:`.receipts` (what a data subject keeps), :mod:`.serve`
(requests served from files, as the ``scrub`` and ``prepare`` commands do), :mod:`.verify`
(the auditor's check, ``forgetbox verify``). The numerics of a prepared state are the
engine's (:class:`forgetbox.ntk.PreparedKernel`).
"""

from .certificate import CERTIFICATE_FORMAT, certificate
from .files import ModelFiles
from .ledger import Ledger, LedgerError
from .ledger_verify import read_ledger, verify_ledger
from .prepare import adopt_prepared, check_binding, check_pretrained, prepare
from .prepared_files import load_prepared, save_cohort, save_prepared
from .receipts import check_receipt, read_receipt
from .requests import PrepareRequest, ScrubRequest
from .scrub import ScrubResult, scrub
from .serve import plan_scrub, serve_prepare, serve_scrub
from .verify import Finding, verify_folder

__all__ = [
    "CERTIFICATE_FORMAT",
    "Finding",
    "Ledger",
    "LedgerError",
    "ModelFiles",
    "PrepareRequest",
    "ScrubRequest",
    "ScrubResult",
    "adopt_prepared",
    "certificate",
    "check_receipt",
    "check_binding",
    "check_pretrained",
    "load_prepared",
    "plan_scrub",
    "prepare",
    "read_ledger",
    "read_receipt",
    "save_cohort",
    "save_prepared",
    "scrub",
    "serve_prepare",
    "serve_scrub",
    "verify_folder",
    "verify_ledger",
]
