"""Flags shared by ``forgetbox run`` and ``forgetbox train``: one per setting of
:class:`~forgetbox.experiment.config.ExperimentConfig`, derived from its schema, and the
configuration they make with an optional TOML file (flags override the file)."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import fields
from pathlib import Path

from ..experiment.config import ExperimentConfig, config_from_dict
from ..experiment.schema import SPECS, coerce, parse_flag

_HINT = {
    "ints": "e.g. 0,1,2",
    "floats": "e.g. 1e-9,1e-6",
    "strs": "comma-separated",
    "table": "JSON; a [experiment.baselines.<method>] table in TOML",
}


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per :class:`ExperimentConfig` field (from its schema)."""
    p.add_argument("--config", type=Path, help="TOML file of experiment settings (flags override)")
    defaults = ExperimentConfig()
    for f in fields(ExperimentConfig):
        spec = SPECS[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = "from the profile" if default is None else default
        text = f"{spec.help} ({_HINT.get(spec.kind, spec.kind)}; default: {shown})"
        if spec.kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, default=None, metavar=spec.kind.upper(), help=text)


# tables of a TOML file that belong to other commands (not experiment settings)
OTHER_TABLES = ("evaluate",)


def read_toml(path: Path) -> dict:
    """The ``[experiment]`` table of a TOML file (or, when it has none, the whole file but the
    tables of other commands, such as ``[evaluate]``)."""
    doc = _load_toml(path)
    if "experiment" in doc:
        return doc["experiment"]
    return {k: v for k, v in doc.items() if k not in OTHER_TABLES}


def read_toml_table(path: Path, name: str) -> dict | None:
    """The table ``[name]`` of a TOML file, or None."""
    return _load_toml(path).get(name)


def _load_toml(path: Path) -> dict:
    if path.is_dir():
        raise ValueError(f"--config {path}: a folder where a TOML file belongs")
    if not path.exists():
        raise ValueError(f"--config {path}: no such file")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--config {path}: not valid TOML ({exc})") from exc
    return doc


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's configuration: the TOML file's settings, then the flags given (each flag's
    text read as its setting's type and checked)."""
    updates = {}
    for f in fields(ExperimentConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        raw = value if isinstance(value, bool) else parse_flag(f.name, value)
        try:
            updates[f.name] = coerce(f.name, raw)
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from exc
    if args.config is None:
        return ExperimentConfig(**updates)
    return config_from_dict(read_toml(args.config), f"--config {args.config}", updates)
