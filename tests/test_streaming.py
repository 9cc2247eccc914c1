"""Data read from disk a batch at a time: a memory-mapped data set larger than the memory the
scrubbing process allows itself is scrubbed, with the same step as the in-memory path."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

import forgetbox
from forgetbox.hashing import data_sha256
from forgetbox.inputs import Rows, as_rows

N, SHAPE, CLASSES = 12000, (3, 32, 32), 2  # 147 MB of float32 inputs
LIMIT_MB = 96  # the streamed process may allocate this much beyond what it holds at start
FORGET = list(range(0, 40, 2))


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 4 * 4, CLASSES))


def _data(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N, *SHAPE))
    rng = np.random.default_rng(0)
    for i in range(0, N, 250):
        x[i : i + 250] = rng.normal(size=(min(250, N - i), *SHAPE)).astype(np.float32)
    x.flush()
    y = (x[:, 0, :8, :8].mean((1, 2)) > 0).astype(np.int64)
    del x
    return path, y


CHILD = """
import json, resource, sys
import numpy as np, torch
from safetensors.torch import load_file
import forgetbox
from tests.test_streaming import tiny_model, FORGET, LIMIT_MB

root = sys.argv[1]
model, w0 = tiny_model(0), tiny_model(1)
model.load_state_dict(load_file(root + "/model.safetensors"))
w0.load_state_dict(load_file(root + "/w0.safetensors"))
x = np.load(root + "/x.npy", mmap_mode="r")
y = np.load(root + "/y.npy")

# warm up (lazy imports of torch.func and friends) on a small in-memory piece
small = torch.from_numpy(np.array(x[:64])), torch.from_numpy(y[:64])
for solver in ("param", "cg"):
    forgetbox.scrub(model, pretrained=w0, data=small, forget_indices=[0, 2], method="ntk",
                    options=forgetbox.NTKOptions(solver=solver))
del small

def data_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmData:"):
            return int(line.split()[1])

limit = (data_kb() + LIMIT_MB * 1024) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
try:
    np.array(x)  # the whole data set does not fit this process
    whole = True
except MemoryError:
    whole = False
out = {"whole_data_fits": whole, "bytes_on_disk": x.nbytes, "limit_mb": LIMIT_MB}
for solver in ("param", "cg"):
    res = forgetbox.scrub(model, pretrained=w0, data=(x, y), forget_indices=FORGET,
                          method="ntk", options=forgetbox.NTKOptions(solver=solver, cg_tol=1e-6),
                          seed=0)
    out[solver] = res.delta.tolist()
out["errors"] = res.certificate["errors"]
out["data_sha256"] = res.certificate["hashes"]["data_sha256"]
print(json.dumps(out))
"""


def test_a_memory_mapped_data_set_larger_than_the_process_memory_is_scrubbed(tmp_path):
    path, y = _data(tmp_path)
    np.save(tmp_path / "y.npy", y)
    model, w0 = tiny_model(0), tiny_model(1)
    with torch.no_grad():  # "fine-tuned": moved away from w0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    save_file(w0.state_dict(), tmp_path / "w0.safetensors")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="1", PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    streamed = json.loads(done.stdout.strip().splitlines()[-1])
    assert streamed["whole_data_fits"] is False  # the limit is real
    assert streamed["bytes_on_disk"] > streamed["limit_mb"] * 2**20
    # the same scrub with the whole data set in memory
    x = torch.from_numpy(np.load(path))
    for solver in ("param", "cg"):
        res = forgetbox.scrub(
            model,
            pretrained=w0,
            data=(x, torch.from_numpy(y)),
            forget_indices=FORGET,
            method="ntk",
            options=forgetbox.NTKOptions(solver=solver, cg_tol=1e-6),
            seed=0,
        )
        want = res.delta
        got = torch.tensor(streamed[solver], dtype=want.dtype)
        assert ((got - want).norm() / want.norm()).item() < 1e-5, solver
    # the data streamed from disk is recorded with the hash of the same data in memory
    assert streamed["data_sha256"] == res.certificate["hashes"]["data_sha256"]
    assert streamed["data_sha256"] == data_sha256(x, torch.from_numpy(y))


def test_rows_read_only_what_is_asked_and_check_every_batch(tmp_path):
    arr = np.arange(60, dtype=np.float32).reshape(20, 3)
    arr[13, 1] = np.nan
    rows, y = as_rows(
        (
            np.lib.format.open_memmap(
                tmp_path / "a.npy", mode="w+", dtype=np.float32, shape=(20, 3)
            ),
            np.zeros(20, dtype=np.int64),
        ),
        "data",
    )
    rows.source[:] = arr
    assert isinstance(rows, Rows) and rows.shape == (20, 3) and len(y) == 20
    view = rows.view(torch.tensor([4, 2, 9]))
    torch.testing.assert_close(view[:], torch.from_numpy(arr[[4, 2, 9]]))
    torch.testing.assert_close(view.head(2)[1:], torch.from_numpy(arr[[2]]))
    assert view.to(dtype=torch.float64)[:].dtype == torch.float64
    try:
        rows[10:15]
    except ValueError as exc:
        assert "sample 13" in str(exc)
    else:
        raise AssertionError("a NaN in a batch read was not reported")
