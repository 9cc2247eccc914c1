"""``--malloc keep``: glibc keeps freed blocks, so a large block allocated again (once the heap
has grown enough to fit it) costs no page faults; the command line applies it only when asked;
elsewhere nothing changes."""

import os
import subprocess
import sys

import pytest

from forgetbox import allocator, cli

ROUNDS, LAST = 16, 4
# allocate, fill and free a 64 MiB tensor ROUNDS times; print the minor page faults of each
CHILD = f"""
import resource, sys, torch
from forgetbox import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
faults = []
for _ in range({ROUNDS}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 2**20)
    t.fill_(1.0)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults(setting: str) -> list[int]:
    # glibc's own settings, whatever this process was started with
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, setting], capture_output=True, text=True, check=True, env=env
    )
    return [int(x) for x in out.stdout.strip().splitlines()[-1].split()]


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_a_freed_block_is_reused_without_page_faults_once_the_heap_fits_it():
    pages = 64 * 2**20 // 4096
    default, keep = _faults("default"), _faults("keep")
    # glibc's defaults unmap the block: it faults again every round (fewer with huge pages)
    assert min(default[-LAST:]) > 0
    # kept: after the heap has grown to fit it (64-byte-aligned blocks, see the module), reused
    assert sum(keep[-LAST:]) < pages // 100


def test_nothing_changes_where_the_c_library_is_not_glibc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator._glibc() is None
    assert allocator.keep_freed_memory() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    class Musl:  # a C library without glibc's mallopt
        pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: Musl())
    assert allocator._glibc() is None
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize(
    ("flags", "called"),
    [([], False), (["--malloc", "default"], False), (["--malloc", "keep"], True)],
)
def test_the_command_line_keeps_freed_memory_only_when_asked(monkeypatch, tmp_path, flags, called):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main([*flags, "report", str(tmp_path / "missing")]) == 2  # fails after parsing
    assert bool(calls) is called


def test_an_unknown_malloc_setting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--malloc", "jemalloc", "report", "x"])
    assert exc.value.code == 2
    assert "--malloc" in capsys.readouterr().err


def test_keep_says_so_where_it_cannot_apply(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)
    assert cli.main(["--malloc", "keep", "report", str(tmp_path / "missing")]) == 2
    assert "--malloc keep has no effect here" in capsys.readouterr().err
