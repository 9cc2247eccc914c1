"""Two gloo processes on the CPU give what one process gives, to 1e-10 in float64: the NTK step
on the dense, matrix-free and parameter-space paths, the Fisher diagonal, a scrub's
certificate numbers and a prepared state. Each process takes half of the rows; sums meet in
all-reduces (:mod:`forgetbox.parallel`)."""

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import forgetbox
from forgetbox import data, methods, models, ntk, parallel
from forgetbox.functional import select_trainable


def _problem():
    split = data.digits_split(seed=0, train_per_class=8, val_per_class=2)
    model = models.build_model(
        "smallcnn", num_classes=5, input_shape=(1, 8, 8), width=0.5, generator_seed=0
    )
    w0 = models.build_model(
        "smallcnn", num_classes=5, input_shape=(1, 8, 8), width=0.5, generator_seed=1
    )
    model, w0 = model.double(), w0.double()
    x, y = split.x_train.double(), split.y_train
    idx = torch.tensor([1, 4, 7])
    keep = data.retain_mask(len(y), idx)
    return model, w0, (x[keep], y[keep]), (x[idx], y[idx]), (x, y)


def compute() -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    model, w0, retain, forget, full = _problem()
    out = {}
    for solver in ("dense", "cg"):
        opts = ntk.NTKOptions(solver=solver)
        d = ntk.ntk_direction(model, retain, forget, pretrained=w0, options=opts)
        out[f"delta_{solver}"] = d.delta
        out[f"u_retain_{solver}"] = d.u_retain
    sub, sub_w0 = copy.deepcopy(model), copy.deepcopy(w0)
    names = select_trainable(sub, "classifier.*,features.2.1.*")
    select_trainable(sub_w0, names)
    out["delta_param"] = ntk.ntk_direction(
        sub, retain, forget, pretrained=sub_w0, options=ntk.NTKOptions(solver="param")
    ).delta
    out["fisher"] = methods.fisher_diagonal(model, retain[0])
    res = forgetbox.scrub(model, pretrained=w0, retain=retain, forget=forget, seed=3)
    b = res.certificate["bounds"]
    out["certificate"] = torch.tensor(
        [b["white_box_nats"]] + [v["nats_per_query"] for v in b["black_box"].values()],
        dtype=torch.float64,
    )
    out["scrubbed"] = torch.cat([p.detach().reshape(-1) for p in res.model.parameters()])
    prep = forgetbox.prepare(model, full, weight_decay=0.1, pretrained=w0)
    out["prepared_alpha"] = prep.alpha
    out["prepared_jt_alpha"] = prep.jt_alpha
    out["prepared_chol"] = prep.chol
    return out


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        assert parallel.active() and parallel.world_size() == world
        results = compute()
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()  # no rank tears gloo down while the other still has work in flight
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    out_file = str(tmp / "two.pt")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp / "init"), out_file), nprocs=2, join=True)
    threads = torch.get_num_threads()
    try:
        one = compute()  # sets one thread, as each worker has: restored for the tests after
    finally:
        torch.set_num_threads(threads)
    return one, torch.load(out_file, weights_only=True)


@pytest.mark.parametrize(
    "key",
    [
        "delta_dense",
        "u_retain_dense",
        "delta_cg",
        "u_retain_cg",
        "delta_param",
        "fisher",
        "certificate",
        "scrubbed",
        "prepared_alpha",
        "prepared_jt_alpha",
        "prepared_chol",
    ],
)
def test_two_processes_give_what_one_gives(both, key):
    one, two = both
    a, b = one[key], two[key]
    assert a.shape == b.shape
    rel = ((a - b).norm() / a.norm().clamp_min(1e-300)).item()
    assert rel < 1e-10, (key, rel)


def test_rows_are_split_into_blocks_covering_each_row_once(monkeypatch):
    seen = []
    for r in range(3):
        monkeypatch.setattr(parallel, "rank", lambda r=r: r)
        monkeypatch.setattr(parallel, "world_size", lambda: 3)
        seen.append(parallel.block(10))
    assert seen == [(0, 4), (4, 7), (7, 10)]
