"""Deletion: scrub a user's own model, certify it, keep a ledger, and answer many requests
from a prepared kernel.

:mod:`.scrub` (:func:`scrub`), :mod:`.certificate` (the certificate), :mod:`.ledger` (the
request ledger), :mod:`.prepared` / :mod:`.prepared_params` / :mod:`.prepare` /
:mod:`.prepared_files` (the prepared state in kernel or parameter space, its construction and
reading it back), :mod:`.files` (a request's inputs on disk), :mod:`.requests` (requests as
the commands state them), :mod:`.serve` (requests served from files, as the ``scrub`` and
``prepare`` commands do).
"""

from .certificate import CERTIFICATE_FORMAT, certificate
from .files import ModelFiles
from .ledger import LedgerError, read_ledger, verify_ledger
from .prepare import prepare
from .prepared import PreparedKernel
from .prepared_files import load_prepared
from .prepared_params import PreparedParams
from .requests import PrepareRequest, ScrubRequest
from .scrub import ScrubResult, scrub
from .serve import plan_scrub, serve_prepare, serve_scrub

__all__ = [
    "CERTIFICATE_FORMAT",
    "ModelFiles",
    "PrepareRequest",
    "PreparedKernel",
    "PreparedParams",
    "ScrubRequest",
    "ScrubResult",
    "certificate",
    "LedgerError",
    "load_prepared",
    "prepare",
    "read_ledger",
    "verify_ledger",
    "scrub",
    "plan_scrub",
    "serve_prepare",
    "serve_scrub",
]
