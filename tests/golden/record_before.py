"""Record the behaviour of forgetbox at commit f2ae437 (before the typed-settings refactor of
issue 28) on the float64 problems of ``tests/cases.py``: NTK directions, every method's scrubbed
weights, certificate numbers, prepared requests. ``tests/test_golden.py`` recomputes them with
the refactored API and requires them bit-identical on the recording machine.

Run once, from the repository root, on that commit (it uses the API of that commit):
    PYTHONPATH=src:. python tests/golden/record_before.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import forgetbox
from forgetbox import methods, ntk
from forgetbox.deletion import prepare
from forgetbox.functional import flatten, parameters_of
from forgetbox.methods import ForgetConfig
from forgetbox.training import FinetuneConfig
from forgetbox.versions import hardware, versions
from tests import cases

OUT = Path(__file__).parent
F64 = torch.float64


def directions(t: dict) -> None:
    for name in ("mlp", "smallcnn"):
        c = cases.make(name)
        base = dict(weight_decay=c.lam, dtype=F64)
        variants = {
            "dense-anchored": dict(solver="dense", pretrained=c.w0),
            "dense-unanchored": dict(solver="dense"),
            "cg-anchored": dict(solver="cg", pretrained=c.w0),
            "schur-anchored": dict(solver="dense", form="schur", pretrained=c.w0),
            "pseudo-anchored": dict(solver="dense", kernel="pseudo", pretrained=c.w0),
            "dense-at-w0": dict(solver="dense", around=c.w0, pretrained=c.w0),
            "dense-mse": dict(solver="dense", loss="mse", pretrained=c.w0),
        }
        for v, kw in variants.items():
            d = ntk.ntk_direction(c.model, c.retain, c.forget, **base, **kw)
            t[f"direction/{name}/{v}/delta"] = d.delta
            t[f"direction/{name}/{v}/u_retain"] = d.u_retain
    c = cases.make("linear")
    for v, kw in {"param": dict(solver="param"), "dense": dict(solver="dense")}.items():
        d = ntk.ntk_direction(
            c.model, c.retain, c.forget, weight_decay=c.lam, dtype=F64, pretrained=c.w0, **kw
        )
        t[f"direction/linear/{v}/delta"] = d.delta
    c = cases.make("ridge")
    d = ntk.ntk_direction(
        c.model, c.retain, c.forget, weight_decay=c.lam, loss="mse", around=c.w0, dtype=F64
    )
    t["direction/ridge/at-w0/delta"] = d.delta


def method_weights(t: dict, n: dict) -> None:
    for name in ("mlp", "smallcnn"):
        c = cases.make(name)
        for preset in ("forgetbox", "authors"):
            cfg = ForgetConfig.from_preset(
                preset,
                weight_decay=c.lam,
                dtype=F64,
                train=FinetuneConfig(weight_decay=c.lam, max_epochs=4),
                finetune_epochs=2,
                newton_max_iter=30,
            )
            for method in methods.METHODS:
                res = methods.forget(method, c.model, c.w0, c.retain, c.forget, cfg, seed=3)
                t[f"method/{name}/{preset}/{method}"] = flatten(parameters_of(res.model))
                n[f"method/{name}/{preset}/{method}/scale"] = res.scale


def scrub_certificates(t: dict, n: dict) -> None:
    c = cases.make("smallcnn")
    test = (c.x[:6] + 0.1, c.y[:6])
    for method in ("ntk_fisher", "fisher", "newton", "ntk"):
        for wd in (0.1, 0.05):
            res = forgetbox.scrub(
                c.model,
                pretrained=c.w0,
                retain=c.retain,
                forget=c.forget,
                test=test,
                method=method,
                weight_decay=wd,
                dtype=F64,
                seed=1,
                queries_per_subset=4,
            )
            key = f"scrub/smallcnn/{method}/{wd}"
            t[key] = flatten(parameters_of(res.model))
            cert = res.certificate
            n[key] = {
                "bounds": {
                    "white_box_nats": cert["bounds"]["white_box_nats"],
                    "black_box": cert["bounds"]["black_box"],
                    "reference": cert["bounds"]["reference"],
                },
                "errors": cert["errors"],
                "trapezium_scale": cert["config"]["trapezium_scale"],
                "alpha": cert["config"]["alpha"],
                "scrubbed_sha256": cert["hashes"]["scrubbed_sha256"],
            }


def prepared(t: dict) -> None:
    for name, kw in (("smallcnn", {}), ("linear", {"solver": "param"})):
        c = cases.make(name)
        prep = prepare(c.model, c.data, weight_decay=c.lam, pretrained=c.w0, dtype=F64, **kw)
        first = prep.request(c.model, c.data, c.forget_idx[:2])
        second = prep.request(c.model, c.data, c.forget_idx[2:])
        t[f"prepared/{name}/first"] = first.delta
        t[f"prepared/{name}/second"] = second.delta


def main() -> None:
    torch.set_num_threads(2)
    tensors: dict = {}
    numbers: dict = {}
    directions(tensors)
    method_weights(tensors, numbers)
    scrub_certificates(tensors, numbers)
    prepared(tensors)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(OUT / "behaviour.safetensors"))
    doc = {
        "recorded_at_commit": "f2ae437",
        "hardware": hardware("cpu"),
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "numbers": numbers,
    }
    (OUT / "behaviour.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(tensors)} tensors and {len(numbers)} numbers", file=sys.stderr)


if __name__ == "__main__":
    main()
