"""The paper's four figures from a run's results (PNG and SVG), and their captions.

``fig1_pca`` (training paths and scrubbed weights, Fisher beside NTK + Fisher,
:mod:`.fig_pca`), ``fig2_readouts`` (one panel per readout, per-seed points, the retrain band,
:mod:`.fig_readouts`), ``fig3_tradeoff`` (error against the information left, information per
query by subset, :mod:`.fig_tradeoff`), ``fig4_l1_path`` (L1 distance to retrain along the
scrubbing direction, :mod:`.fig_path`); :mod:`.fig_style` holds what they share.
"""

from __future__ import annotations

from pathlib import Path

from . import fig_path, fig_pca, fig_readouts, fig_tradeoff
from .style import Figure

CAPTIONS = {
    "fig1_pca": (
        "Fig. 1: the weights in the plane of the two fine-tuning paths' first principal "
        "components. Left, Fisher forgetting: its noise is centred on w(D) and must be large "
        "to cover w(D_r). Right, NTK + Fisher: the NTK step moves the centre toward w(D_r), so "
        "the noise needed to cover it is smaller. Look for the scrubbed point near w(D_r) and "
        "the size of each cloud (16 noisy draws); the inset enlarges the crowded corner."
    ),
    "fig2_readouts": (
        "Fig. 2: every readout per method, mean over seeds (bar) and each seed (dots); the "
        "green band is the retrain band the claims use (retrain's mean ± the largest of its "
        "standard deviation, the readout's tolerance and one sample), the target. A method "
        "forgets well when its bar sits in the band on D_f error, the attack, re-learn time and "
        "L1, while D_r and test error stay low. The two bound panels give each bar's noise "
        "scale alpha and draw the cohort's raw content (dotted red): a bound above it is "
        "vacuous, it certifies nothing."
    ),
    "fig3_tradeoff": (
        "Fig. 3: test error and D_f error against the information left (white box: weights; "
        "black box: per D_f query), over the noise scale alpha (labels at the points; bars: "
        "standard deviation over seeds and draws). Lower left is better: NTK + Fisher should "
        "reach less information at the same error. Right: information per query by the subset "
        "the queries come from, with each bar's alpha; D_f queries should leak most. Dotted "
        "red: the cohort's raw content; a bound to its right is vacuous."
    ),
    "fig4_l1_path": (
        "Fig. 4: mean L1 distance between the softmax outputs and the retrained model's, along "
        "the scrubbing direction (0 = original, 1 = scrubbed, beyond = extrapolated); shading: "
        "one standard deviation over seeds. The D_f curve should fall to its minimum near 1 "
        "while D_r and test stay flat. Methods whose centre is w(D) itself (Fisher, fine-tune) "
        "have no direction and are not drawn. Dotted blue line and shading, where a committed "
        "ensemble of the same setup exists: the D_f distance between two models retrained from "
        "scratch (median and 5-95 % of the retrain row), the noise floor no method needs to beat."
    ),
}


def both(draw, results: dict, out: Path) -> Figure | None:
    """A figure drawn wide (written into ``out``) with its narrow drawing (in memory)."""
    wide = draw(results, out)
    return None if wide is None else wide.with_narrow(draw(results, None, narrow=True))


def draw_all(results: dict, out: Path) -> dict[str, Figure | None]:
    """Every figure, written into ``out``; by name (None when the run has no data for it)."""
    return {
        "fig1_pca": both(fig_pca.fig1, results, out),
        "fig2_readouts": both(fig_readouts.fig2, results, out),
        "fig3_tradeoff": both(fig_tradeoff.fig3, results, out),
        "fig4_l1_path": both(fig_path.fig4, results, out),
    }
