"""Dataclass fields that describe themselves, shared by SimConfig and WorkloadSpec.

A field's metadata (help, unit, group, choices) drives the CLI flags and the web
form; :func:`coerce_fields` checks and normalises the values of a frozen
dataclass against its annotations (``int``, ``float``, ``str``, ``bool``,
optionally ``| None``) and its choices, raising ``error(field, message)``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable

class FieldError(ValueError):
    """A bad setting; ``field`` names it and the message starts with it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


WANT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def described(default: Any, help: str, unit: str = "", group: str = "", **extra: Any):
    """A dataclass field whose metadata carries its help text, unit and form group."""
    return dataclasses.field(default=default, metadata={"help": help, "unit": unit, "group": group, **extra})


def coerce_fields(obj: Any, error: Callable[[str, str], Exception]) -> None:
    """Type-check every field of frozen dataclass ``obj`` in place (ints stay ints, floats finite)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        optional = "None" in str(f.type)
        kind = str(f.type).replace(" | None", "")
        if value is None and optional:
            continue
        if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif kind == "float" and isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise error(f.name, f"must be finite, got {value}")
            value = float(value)
        elif kind == "bool" and isinstance(value, bool):
            pass
        elif kind == "str" and isinstance(value, str):
            value = value.strip()
        else:
            raise error(f.name, f"must be {WANT[kind]}{' or none' if optional else ''}, got {value!r}")
        object.__setattr__(obj, f.name, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise error(f.name, f"must be one of {', '.join(choices)}; got {value!r}")
