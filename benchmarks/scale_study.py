"""The exact scrub at sizes where retraining hurts, on 2 CPU cores: real CIFAR-10 (10 classes,
the first N/10 training images of each), All-CNN x0.4 pre-trained on Tiny ImageNet-32 (the
cpu profile's backbone), 1 % of D forgotten from class 0.

    .venv/bin/python benchmarks/scale_study.py N [full|subset] [--cache runs/cache-cifar]
        # -> benchmarks/results/scale_study-<N>-<variant>.json
    # the scrub alone again, in a fresh process, on the models cached by the run above:
    .venv/bin/python benchmarks/scale_study.py N [full|subset] --scrub-only
    .venv/bin/torchrun --nproc-per-node 2 benchmarks/scale_study.py N [full|subset] --scrub-only
        # -> benchmarks/results/scale_study-<N>-<variant>-<P>proc.json
    # ... --scrub-only --solver cg: another solver on the same models
        # -> benchmarks/results/scale_study-<N>-<variant>-<solver>-<P>proc.json

``full``: every weight fine-tuned (cosine lr 0.01, weight decay 0.1 toward w0, at most 100
epochs), scrubbed with the solver ``auto`` picks under the default budget (dense when the
kernel fits, else matrix-free CG). ``subset``: only the last block and the head are trained
(SUBSET), retraining trains the same subset, and the scrub runs in parameter space.
Recorded: time, the growth of the process's peak resident memory during the scrub, the
solver's reports (CG iterations), and the readouts (D_f / D_r / test error, the entropy
attack, L1 to the retrained outputs on D_f and D_r) of the original, the retrained and the
scrubbed models.
"""

from __future__ import annotations

import copy
import json
import resource
import sys
import time
from pathlib import Path

import torch

from forgetbox import data, methods, models, parallel, readouts, training
from forgetbox.experiment import Cache, ExperimentConfig, Stages
from forgetbox.functional import flatten, parameters_of, select_trainable
from forgetbox.methods import ForgetConfig

OUT = Path(__file__).with_name("results")
SUBSET = "features.7.*,classifier.*"  # the last block (1x1 conv, BatchNorm) and the head: 6,698


def split_of(n: int, stats) -> tuple[data.Split, torch.Tensor]:
    arrays = data.load_npz(data.resolve_data_file("cifar10-npz", "../shared/data"))
    sp = data.small_split(
        arrays,
        seed=0,
        classes=tuple(range(10)),
        train_per_class=n // 10,
        val_per_class=0,
        test_per_class=100,
        name="cifar10-npz",
    )
    sp = data.normalize(sp, *stats)
    forget = data.select_forget(sp.y_train, forget_class=0, num_to_forget=n // 100, seed=0)
    return sp, forget


def behaviour(model, sp, forget, retrained) -> dict:
    keep = data.retain_mask(len(sp.y_train), forget)
    sets = {
        "forget": (sp.x_train[forget], sp.y_train[forget]),
        "retain": (sp.x_train[keep], sp.y_train[keep]),
        "test": (sp.x_test, sp.y_test),
    }
    row = {f"error_{k}": readouts.error_and_loss(model, *v)[0] for k, v in sets.items()}
    row["mia_forget_member_rate"] = readouts.membership_attack(
        model, sets["retain"], sets["test"], sets["forget"], seed=0
    ).member_rate
    if retrained is not None:
        for k in ("forget", "retain"):
            row[f"l1_to_retrain_{k}"] = readouts.l1_distance(model, retrained, sets[k][0])
    return row


def models_dir(cache: Path, n: int, variant: str) -> Path:
    return cache / "scale_study" / f"{n}-{variant}"


def trained_models(stages, w0, sp, forget, n: int, variant: str, cache: Path, timings: dict):
    """The original and retrained models, from the cache when ``--scrub-only``, else trained
    (and cached: state dicts, read back with ``weights_only=True``)."""
    recipe = stages.finetune_config(False)
    keep = data.retain_mask(len(sp.y_train), forget)
    folder = models_dir(cache, n, variant)
    trained = {}
    for which, (x, y) in (
        ("original", (sp.x_train, sp.y_train)),
        ("retrain", (sp.x_train[keep], sp.y_train[keep])),
    ):
        path = folder / f"{which}.pt"
        if "--scrub-only" in sys.argv:
            model = copy.deepcopy(w0)
            model.load_state_dict(torch.load(path, weights_only=True))
            trained[which] = model.eval()
            continue
        t = time.perf_counter()
        res = training.finetune(w0, x, y, recipe, seed=0, desc=f"{which} (n={n})")
        timings[f"{which}_seconds"] = time.perf_counter() - t
        timings[f"{which}_epochs"] = res.epochs
        trained[which] = res.model.eval()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(res.model.state_dict(), path)
        print(which, timings, flush=True)
    return trained


def scrub(trained, w0, sp, forget, variant: str, timings: dict) -> methods.ForgetResult:
    keep = data.retain_mask(len(sp.y_train), forget)
    fcfg = ForgetConfig()
    if variant == "subset":
        fcfg = ForgetConfig(ntk=fcfg.ntk.replace(solver="param"))
    if "--solver" in sys.argv:
        fcfg = ForgetConfig(ntk=fcfg.ntk.replace(solver=sys.argv[sys.argv.index("--solver") + 1]))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parallel.barrier()
    t = time.perf_counter()
    retain = (sp.x_train[keep], sp.y_train[keep])
    forget_set = (sp.x_train[forget], sp.y_train[forget])
    res = methods.forget("ntk", trained["original"], w0, retain, forget_set, fcfg, seed=0)
    parallel.barrier()
    timings["scrub_seconds"] = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings["peak_rss_gib"] = rss1 / 2**20
    timings["scrub_peak_rss_growth_gib"] = (rss1 - rss0) / 2**20
    return res


def main() -> None:
    n, variant = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "full")
    cache = (
        Path(sys.argv[sys.argv.index("--cache") + 1])
        if "--cache" in sys.argv
        else Path("runs/cache-cifar")
    )
    parallel.init_from_env()
    cfg = ExperimentConfig(
        dataset="cifar10-npz", model="allcnn", width=0.4, profile="cpu", data_dir="../shared/data"
    ).resolved()
    stages = Stages(cfg, Cache(cache), log=print if parallel.is_main() else (lambda *a: None))
    sp, forget = split_of(n, stages.stats())
    pre = stages.pretrained(10, (3, 32, 32))
    w0 = models.with_new_head(pre, 10, seed=0)
    if variant == "subset":
        select_trainable(w0, SUBSET)
    out = {"n": n, "variant": variant, "n_forget": len(forget), "classes": 10}
    out["trained_parameters"] = sum(p.numel() for p in w0.parameters() if p.requires_grad)
    out["processes"] = parallel.world_size()
    timings = {}
    trained = trained_models(stages, w0, sp, forget, n, variant, cache, timings)
    res = scrub(trained, w0, sp, forget, variant, timings)
    ntk_info = res.info.get("ntk", {})
    out["solver"] = ntk_info.get("solver")
    out["reports"] = ntk_info.get("reports")
    out["trapezium_scale"] = res.scale
    out["timings"] = timings
    folder = models_dir(cache, n, variant)
    flat = flatten(parameters_of(res.model))
    if "--scrub-only" in sys.argv:
        ref = torch.load(folder / "scrubbed_flat.pt", weights_only=True)
        out["max_abs_diff_to_in_process_scrub"] = float((flat - ref).abs().max())
        out["max_abs_scrub_step"] = float(
            (ref - flatten(parameters_of(trained["original"]))).abs().max()
        )
    else:
        torch.save(flat, folder / "scrubbed_flat.pt")
        out["speedup_over_retraining"] = timings["retrain_seconds"] / timings["scrub_seconds"]
        out["readouts"] = {
            "original": behaviour(trained["original"], sp, forget, trained["retrain"]),
            "retrain": behaviour(trained["retrain"], sp, forget, None),
            "ntk": behaviour(res.model, sp, forget, trained["retrain"]),
        }
    out["torch_threads"] = torch.get_num_threads()
    if parallel.is_main():
        tail = f"-{parallel.world_size()}proc" if "--scrub-only" in sys.argv else ""
        if "--solver" in sys.argv:
            tail = f"-{out['solver']}{tail}"
        path = OUT / f"scale_study-{n}-{variant}{tail}.json"
        path.write_text(json.dumps(out, indent=2, default=str))
        print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
