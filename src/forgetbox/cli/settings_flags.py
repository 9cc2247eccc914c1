"""Command-line flags generated from the settings dataclasses
(:class:`~forgetbox.ntk.Linearization`, :class:`~forgetbox.ntk.NTKOptions`,
:class:`~forgetbox.methods.ForgetConfig`): one flag per field, its type, choices, help and
default read from the field, so every default is written once (in the dataclass). A flag left
out leaves the setting to the preset (or, for a prepared state, to the state); the ones given
are *stated*."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field, fields

import torch

from ..methods import (
    CertifyConfig,
    ForgetConfig,
    L1SparseConfig,
    NegGradConfig,
    Preset,
    SalUnConfig,
    ScrubConfig,
)
from ..ntk import Linearization, NTKOptions
from ..settings import Choice

# the settings of the baselines of other papers (forgetbox.methods.baseline_config)
BASELINES = (NegGradConfig, ScrubConfig, SalUnConfig, L1SparseConfig)
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# where each settings dataclass lives in a ForgetConfig (None: the ForgetConfig itself)
GROUPS: dict[type, str | None] = {
    Linearization: "linearization",
    NTKOptions: "ntk",
    CertifyConfig: "certify",
    NegGradConfig: "neggrad",
    ScrubConfig: "scrub",
    SalUnConfig: "salun",
    L1SparseConfig: "l1_sparse",
}


def _flag(f: Field) -> str:
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def _kind(cls: type, f: Field):
    """The field's type without ``None``."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _default(f: Field):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def flag_fields(cls: type) -> list[Field]:
    """The fields of ``cls`` that have a flag: those with a help text in their metadata."""
    return [f for f in fields(cls) if "help" in f.metadata]


def add_settings_flags(p: argparse.ArgumentParser, cls: type, *, exclude=()) -> None:
    """One flag per documented field of the settings dataclass ``cls`` (default None: not
    stated)."""
    for f in flag_fields(cls):
        if f.name in exclude:
            continue
        kind, default = _kind(cls, f), _default(f)
        shown = "" if default is None else f"; default {_text(default, f)}"
        dest = f"setting_{cls.__name__}_{f.name}"
        help_text = f.metadata["help"] + shown
        if kind is bool:
            p.add_argument(
                _flag(f), dest=dest, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif isinstance(kind, type) and issubclass(kind, Choice):
            p.add_argument(
                _flag(f),
                dest=dest,
                choices=kind.values(),
                help=f"{help_text} ({kind.help_text()})",
            )
        elif kind is torch.dtype:
            p.add_argument(_flag(f), dest=dest, choices=tuple(DTYPES), help=help_text)
        else:
            scaled = "scale" in f.metadata
            number = float if scaled else kind
            metavar = "GiB" if scaled else ("N" if number is int else "X")
            p.add_argument(_flag(f), dest=dest, type=number, metavar=metavar, help=help_text)


def _text(default, f: Field) -> str:
    if isinstance(default, Choice):
        return default.value
    if "scale" in f.metadata:
        return f"{default / f.metadata['scale']:g}"
    return str(default)


def stated_settings(args: argparse.Namespace, cls: type) -> dict:
    """The fields of ``cls`` given on the command line, as the dataclass takes them."""
    out = {}
    for f in flag_fields(cls):
        value = getattr(args, f"setting_{cls.__name__}_{f.name}", None)
        if value is None:
            continue
        if _kind(cls, f) is torch.dtype:
            value = DTYPES[value]
        elif "scale" in f.metadata:
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{_flag(f)} must be a positive number; got {value}")
            value = max(1, int(value * f.metadata["scale"]))
        out[f.name] = value
    return out


def add_forget_flags(p: argparse.ArgumentParser, *, exclude=()) -> None:
    """``--preset`` and the flags of a :class:`ForgetConfig` and of every settings dataclass it
    holds (:data:`GROUPS`: linearization, NTK options, certification, the baselines)."""
    p.add_argument(
        "--preset",
        default=Preset.FORGETBOX.value,
        choices=Preset.values(),
        help=f"whose choices fill the settings not given ({Preset.help_text()})",
    )
    for cls in (Linearization, NTKOptions, ForgetConfig, CertifyConfig, *BASELINES):
        add_settings_flags(p, cls, exclude=exclude)


def forget_config(args: argparse.Namespace) -> tuple[ForgetConfig, frozenset[str]]:
    """The :class:`ForgetConfig` the flags state (on the preset's), and the names stated (a
    baseline's as ``<group>.<name>``, e.g. ``neggrad.weight_decay``)."""
    base = ForgetConfig.from_preset(args.preset)
    changes = stated_settings(args, ForgetConfig)
    stated = set(changes)
    for cls, where in GROUPS.items():
        given = stated_settings(args, cls)
        # a baseline's names are qualified: its weight_decay is not the linearization's
        stated |= {f"{where}.{k}" for k in given} if cls in BASELINES else set(given)
        if given:
            changes[where] = getattr(base, where).replace(**given)
    return base.replace(**changes), frozenset(stated)
