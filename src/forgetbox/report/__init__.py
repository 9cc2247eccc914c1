"""Presentation: the pages, figures and tables of ``forgetbox run`` and ``forgetbox evaluate``,
rendered from their results alone (``results.json``, ``evaluation.json``), so a committed run
can be re-rendered without its computation.

:mod:`.style` (the figures' look, one ``Figure`` record per drawing), :mod:`.figures` and the
``fig_*`` modules (the paper's four figures, with captions), :mod:`.headline` (costs against
retraining, compute, the bounds' context), :mod:`.provenance` (what was run), :mod:`.page`
(the run's HTML page), :mod:`.outputs` (every output file of a run), :mod:`.evaluation_figures`
and :mod:`.evaluation_page` (the evaluation's).
"""

from .evaluation_page import write_report
from .outputs import config_toml, html_report, summary_table, tidy_rows, write_all

__all__ = ["config_toml", "html_report", "summary_table", "tidy_rows", "write_all", "write_report"]
