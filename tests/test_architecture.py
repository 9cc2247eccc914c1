"""The package's layers: imports flow one way, nothing imports the facade, no cycles, and the
public API is what ``__all__`` says."""

import ast
from pathlib import Path

import pytest

import forgetbox

PACKAGE = Path(forgetbox.__file__).resolve().parent

# component -> layer; a component may import only components of a lower layer (and itself).
# Components of one layer do not import each other. docs/architecture.md draws this table.
LAYERS = {
    "functional": 0,
    "progress": 0,
    "hashing": 0,
    "inputs": 0,
    "versions": 0,
    "devices": 0,
    "paths": 0,
    "parallel": 0,
    "settings": 0,
    "cohort": 0,
    "privacy": 0,
    "allocator": 0,
    "atomic": 1,
    "checkpoints": 2,
    "models": 3,
    "training": 3,
    "ntk": 4,
    "reference": 4,
    "methods": 5,
    "bounds": 5,
    "readouts": 5,
    "data": 5,
    "audit": 5,
    "deletion": 6,
    "report": 6,
    "experiment": 7,
    "evaluation": 8,
    "cli": 9,
    "__main__": 10,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["forgetbox", *parts])] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of the forgetbox modules ``name`` imports (anywhere in the file)."""
    modules = _modules()
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("forgetbox")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("forgetbox"):
                continue
            for alias in node.names:  # a submodule, or a name defined in ``mod``
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in modules else mod)
    return {m for m in found if m in modules and m != name}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_component_has_a_layer():
    components = {_component(m) for m in _modules()} - {""}
    assert components == set(LAYERS), components ^ set(LAYERS)


def test_imports_flow_down_the_layers_and_never_through_the_facade():
    bad = []
    for name, path in _modules().items():
        if name == "forgetbox":
            continue  # the facade re-exports lazily, by name
        src = _component(name)
        for target in _imports(name, path):
            dst = _component(target)
            if target == "forgetbox":
                bad.append(f"{name} imports the package facade")
            elif dst != src and LAYERS[dst] >= LAYERS[src]:
                bad.append(f"{name} (layer {LAYERS[src]}) imports {target} (layer {LAYERS[dst]})")
    assert not bad, "\n".join(bad)


def test_the_engine_does_not_import_data_loading():
    for name, path in _modules().items():
        if _component(name) == "ntk":
            assert not {t for t in _imports(name, path) if _component(t) == "data"}, name


def _engine_names_used(path: Path) -> tuple[set[str], set[str]]:
    """``(submodules of forgetbox.ntk imported, names taken from the engine)`` by a module
    outside it: ``from ..ntk import a, b``, ``from forgetbox.ntk.x import y``, ``ntk.name``."""
    submodules, names = set(), set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            tail = mod.lstrip(".").removeprefix("forgetbox.")
            if tail == "ntk":
                names |= {a.name for a in node.names}
            elif tail.startswith("ntk."):
                submodules.add(tail)
            elif tail in ("", "forgetbox") and any(a.name == "ntk" for a in node.names):
                pass  # `from .. import ntk`: its attributes are checked below
        elif isinstance(node, ast.Import):
            submodules |= {a.name for a in node.names if a.name.startswith("forgetbox.ntk.")}
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "ntk"
        ):
            names.add(node.attr)
    return submodules, names


def test_the_layers_above_use_the_engine_through_its_public_interface_only():
    """Methods, bounds, deletion, the experiment and the CLI take from ``forgetbox.ntk`` only
    the names of its ``__all__``: the numerics of prepared state, Cholesky in place, kernel
    rows and the held Jacobian stay inside the engine."""
    from forgetbox import ntk

    public = set(ntk.__all__)
    bad = []
    for name, path in _modules().items():
        if _component(name) in ("ntk", ""):
            continue
        submodules, names = _engine_names_used(path)
        bad += [f"{name} imports {s}" for s in sorted(submodules)]
        bad += [f"{name} uses ntk.{n} (not public)" for n in sorted(names - public)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path) - {"forgetbox"} for name, path in modules.items()}
    # a package's __init__ re-exports its own submodules: that edge is not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_files_stay_small():
    big = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big


def test_public_api_resolves_and_is_listed():
    for name in forgetbox.__all__:
        assert getattr(forgetbox, name) is not None, name
    assert "scrub" in forgetbox.__all__ and "forget" in forgetbox.__all__
    with pytest.raises(AttributeError):
        forgetbox.not_a_name  # noqa: B018


def test_importing_the_package_is_light():
    import subprocess
    import sys

    code = "import sys, forgetbox; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
