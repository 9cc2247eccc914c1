"""What was run, in words, from a run's ``results.json``: data and split, cohort, model,
pre-training, profile, hardware, seeds, versions, date, and the deviations from the paper that
apply (``docs/deviations.md``)."""

from __future__ import annotations

DATASET_NAMES = {
    "digits": "scikit-learn digits (8x8, embedded)",
    "cifar10": "CIFAR-10 (official archive)",
    "cifar10-npz": "CIFAR-10 (real images, cifar10.npz)",
    "tinyimagenet32": "Tiny ImageNet-32 (tinyimagenet32.npz), classes 150-154",
    "tinyimagenet": "Tiny ImageNet (tiny-imagenet-200 folder), classes 150-154",
    "lacuna": "Lacuna (image folders)",
}
PRETRAIN_NAMES = {
    "digits59": "digits 5-9",
    "cifar100": "CIFAR-100",
    "cifar10-59": "CIFAR-10 classes 5-9",
    "tinyimagenet32": "Tiny ImageNet-32, 100 classes (a stand-in for CIFAR-100)",
    "tinyimagenet32-150": "Tiny ImageNet-32, the first 150 official classes",
    "tinyimagenet150": "Tiny ImageNet, the first 150 classes",
    "lacuna100": "Lacuna-100",
}


def _split(cfg: dict, task: dict) -> str:
    if task:
        sizes = (
            f"{task['n_train']} training ({task['n_retain']} retained), {task['n_val']} "
            f"validation, {task['n_test']} test images, {task['num_classes']} classes"
        )
    else:
        sizes = (
            f"{cfg.get('train_per_class')} training, {cfg.get('val_per_class')} validation and "
            f"{cfg.get('test_per_class')} test images per class"
        )
    return f"{DATASET_NAMES.get(cfg['dataset'], cfg['dataset'])}: {sizes}"


def cohort_words(cfg: dict, task: dict) -> str:
    """The forget cohort in words (``25 random training images of class 0``)."""
    whole = "num_to_forget" in cfg and cfg["num_to_forget"] is None
    n = task.get("n_forget") or cfg.get("num_to_forget")
    if whole or n is None:
        size = f" ({n} training images)" if n else ""
        return f"the whole class {cfg.get('forget_class')}{size}"
    return f"{n} random training images of class {cfg.get('forget_class')}"


def _cohort(cfg: dict, task: dict) -> str:
    whole = "num_to_forget" in cfg and cfg["num_to_forget"] is None
    return cohort_words(cfg, task) + ("" if whole else ", drawn per seed")


def _model(cfg: dict, task: dict) -> str:
    text = f"{cfg['model']} x{cfg.get('width', 1.0)}"
    if task.get("num_params"):
        text += f", {task['num_params']:,} parameters"
    return text


def _hardware(results: dict) -> str:
    hw = (results.get("provenance") or {}).get("hardware")
    if not hw:
        return f"device {results['config'].get('device', 'cpu')} (hardware not recorded)"
    counts = (("cpu_count", "cores"), ("torch_threads", "threads"))
    parts = [hw.get("processor")]
    parts += [f"{hw[k]} {word}" for k, word in counts if hw.get(k) is not None]
    text = ", ".join(str(p) for p in parts if p)
    if hw.get("memory_gib"):
        text += f", {hw['memory_gib']} GiB"
    text += f"; device {hw.get('device')}"
    if hw.get("load_average_15min") is not None:
        text += f"; load average {hw['load_average_15min']} over the last 15 minutes"
    return text + (f" ({hw['gpu']})" if hw.get("gpu") else "")


def _source(results: dict) -> str:
    v = results.get("versions") or {}
    text = f"forgetbox {v.get('forgetbox')}, torch {v.get('torch')}, Python {v.get('python')}"
    src = (results.get("provenance") or {}).get("source")
    if src:
        text += f"; commit {src['commit'][:10]}" + (" (with local changes)" if src["dirty"] else "")
    else:
        text += "; source commit not recorded (a run from before provenance was recorded)"
    again = (results.get("provenance") or {}).get("reconstructed")
    if again:
        text += f"; date and hardware reconstructed afterwards: {again}"
    return text + _cached(results.get("compute") or {})


def _cached(compute: dict) -> str:
    """What the commit above does not cover: stages read from an earlier run's cache, whose
    commit the cache does not record."""
    now, cached = compute.get("this_run_seconds") or 0, compute.get("from_cache_seconds") or 0
    if not cached:
        return ""
    if not now:
        return (
            " (every stage was read from the cache of an earlier run, whose commit is not "
            "recorded: this commit judged, scored and rendered them)"
        )
    share = cached / (cached + now)
    return (
        f" ({share:.0%} of the stage compute was read from the cache of an earlier run, whose "
        "commit is not recorded)"
    )


def what_was_run(results: dict) -> list[tuple[str, str]]:
    """``(label, text)`` lines of the report's "what was run" block."""
    cfg, task = results["config"], results.get("task") or {}
    pre = PRETRAIN_NAMES.get(cfg.get("pretrain_dataset"), cfg.get("pretrain_dataset"))
    pinfo = task.get("pretrain") or {}
    if pinfo:
        pre += f" ({pinfo['images']:,} images, {pinfo['classes']} classes)"
    prov = results.get("provenance") or {}
    return [
        ("data and split", _split(cfg, task)),
        ("forgotten cohort D_f", _cohort(cfg, task)),
        ("model", _model(cfg, task)),
        ("pre-training", f"{pre}, {cfg.get('pretrain_epochs')} epochs"),
        (
            "profile",
            f"{cfg.get('profile')} (preset {cfg.get('preset', 'forgetbox')}); fine-tuning "
            f"{cfg.get('finetune_schedule')} lr {cfg.get('finetune_lr')}, at most "
            f"{cfg.get('finetune_max_epochs')} epochs, weight decay {cfg.get('weight_decay')}",
        ),
        ("seeds", ", ".join(str(s) for s in results.get("seeds", []))),
        ("hardware", _hardware(results)),
        ("software", _source(results)),
        ("date", prov.get("created", "not recorded")),
    ]


def deviations(results: dict) -> list[str]:
    """The departures from the paper (``docs/deviations.md`` items) that apply to this run."""
    cfg = results["config"]
    out = []
    if cfg.get("preset") == "authors":
        out.append(
            "preset authors: the authors' notebook choices (unanchored direction, noise averaged "
            "over input channels, pulls toward the start, retrain with duplicates)"
        )
    elif cfg.get("anchored", True):
        out.append("item 1: anchored linearization, trapezium on the authors' side")
    out.append("item 3: information in nats as the KL itself (not twice it)")
    out.append("item 4: black-box bound with the full output covariance (diagonal also given)")
    if cfg.get("dataset") != "digits":
        out.append("item 5: disjoint train / validation / test images")
    out.append("item 6: balanced membership attack")
    if cfg.get("dataset") == "digits":
        k = cfg.get("num_to_forget")
        cohort = "the whole class forgotten" if k is None else f"{k} forgotten"
        per = cfg.get("train_per_class")
        out.append(f"item 8: the embedded digits split ({per} per class, {cohort})")
    if cfg.get("finetune_schedule") == "cosine":
        out.append("item 9: cosine learning-rate decay in fine-tuning")
    if cfg.get("finetune_baseline_lr") not in (None, 0.01):
        out.append(f"item 9: fine-tune baseline at lr {cfg['finetune_baseline_lr']}")
    if cfg.get("pretrain_dataset") in ("tinyimagenet32", "cifar10-59"):
        out.append("item 10: pre-training stand-in for CIFAR-100")
    return out


def evaluation_line(results: dict) -> str:
    """One sentence on where an evaluation ran and, when it was rescored from its stored score
    inputs, when and by which source."""
    prov = results.get("provenance") or {}
    text = (
        f"Run on {prov.get('created', 'a date not recorded')}: {_source(results)}; "
        f"{_hardware({**results, 'config': results['config']['experiment']})}."
    )
    inputs = results.get("inputs")
    if not inputs:
        return text + " Its score inputs were not kept (an evaluation from before they were)."
    again = results.get("rescored")
    if again:
        src = again.get("source") or {}
        commit = src.get("commit", "")[:10] + (" (with local changes)" if src.get("dirty") else "")
        text += f" Rescored on {again.get('created')} at commit {commit} from"
    else:
        text += " Scores computed from"
    return text + f" {inputs['file']} (SHA-256 {inputs['sha256'][:12]}…)."
