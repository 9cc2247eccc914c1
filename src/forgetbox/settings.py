"""The building blocks of forgetbox's typed settings: string options as enums whose members
document themselves (as laplace-torch's ``str, Enum`` options: plain strings are accepted
wherever a member is), frozen settings dataclasses with a checked ``replace``, and the checks
their ``__post_init__`` share (each error names the setting).

>>> class Colour(Choice):
...     RED = "red", "the colour of a stop sign"
>>> Colour("red") is Colour.RED, Colour.RED == "red", Colour.RED.__doc__
(True, True, 'the colour of a stop sign')
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from enum import StrEnum
from typing import Self

import torch


class Choice(StrEnum):
    """A string option. Each member is declared as ``NAME = "value", "when to use it"``; the
    second string becomes the member's ``__doc__``. Members equal their values."""

    def __new__(cls, value: str, doc: str = "") -> Self:
        """A member with value ``value`` and docstring ``doc``."""
        member = str.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    @classmethod
    def parse(cls, value: object, what: str) -> Self:
        """``cls(value)``, or a ValueError naming ``what`` and every choice."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} must be one of {cls.values_text()}; got {value!r}") from None

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The members' values, in declaration order."""
        return tuple(m.value for m in cls)

    @classmethod
    def values_text(cls) -> str:
        """The values, comma-separated (error messages)."""
        return ", ".join(cls.values())

    @classmethod
    def help_text(cls) -> str:
        """One line per member: ``value: doc`` (command-line help)."""
        return "; ".join(f"{m.value}: {m.__doc__}" for m in cls)


class Settings:
    """Shared behaviour of the frozen settings dataclasses."""

    def replace(self, **changes):
        """A copy with ``changes`` (field names of this class only)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} fields: {sorted(unknown)}")
        return replace(self, **changes)


def check_number(value, name: str, *, low: float, strict: bool = False) -> None:
    """Refuse a non-number, NaN, an infinity or a value below ``low`` (or at it, ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} is {value}: give a finite number")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}; got {value}")


def check_int(value, name: str, *, low: int = 1, allow_none: bool = False) -> None:
    """Refuse anything but an integer >= ``low`` (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def check_bool(value, name: str) -> None:
    """Refuse anything but True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")


def check_dtype(dtype, name: str = "dtype") -> None:
    """Refuse anything but None or a floating ``torch.dtype``."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"{name} must be a floating torch.dtype; got {dtype!r}")
