"""``--malloc keep``: glibc keeps freed blocks, so a block allocated again costs no page faults;
the command line applies it unless told ``--malloc default``; elsewhere nothing changes."""

import subprocess
import sys

import pytest

from forgetbox import allocator, cli

# allocate, fill and free a 64 MiB tensor twice; print the minor page faults of the second time
CHILD = """
import resource, sys, torch
from forgetbox import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
def once():
    t = torch.empty(16 * 2**20)
    t.fill_(1.0)
    del t
once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_faults(setting: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, setting], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_a_freed_block_is_reused_without_page_faults():
    pages = 64 * 2**20 // 4096
    assert _second_faults("default") > pages // 2  # glibc unmapped it: every page faults again
    assert _second_faults("keep") < pages // 100


def test_nothing_changes_where_the_c_library_is_not_glibc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator._glibc() is None
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize(("flags", "called"), [([], True), (["--malloc", "default"], False)])
def test_the_command_line_keeps_freed_memory_unless_told_not_to(
    monkeypatch, tmp_path, flags, called
):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main([*flags, "report", str(tmp_path / "missing")]) == 2  # fails after parsing
    assert bool(calls) is called


def test_an_unknown_malloc_setting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--malloc", "jemalloc", "report", "x"])
    assert exc.value.code == 2
    assert "--malloc" in capsys.readouterr().err
