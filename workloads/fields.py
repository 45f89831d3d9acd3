"""Dataclass fields that describe themselves, shared by SimConfig and WorkloadSpec.

A field's metadata (help, unit, group, choices, range) drives the CLI flags and
the web form; :func:`coerce_fields` checks and normalises the values of a frozen
dataclass against its annotations (``int``, ``float``, ``str``, ``bool``,
optionally ``| None``), its choices and its documented range ``(lo, hi)``
(inclusive), raising ``error(field, message)``. An optional field also takes the
words ``none``, ``off`` and ``auto`` for None, as the CLI flags do, so a config
file can say ``d_sla_tbt = "none"``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import reprlib
from collections.abc import Callable
from typing import Any

SHOWN_CHARS = 80  # the most of a user-supplied value an error message quotes


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """How a message quotes a user-supplied value: its repr, cut after ``limit`` characters with
    the whole length said (``'aaaa...' (100,000 characters)``); an integer too long to print
    whole is named by its size. Every error that echoes input uses this, so none grows with it."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        head = repr(value[:limit])
        return f"{head[:-1]}...{head[-1]} ({len(value):,} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10 ** limit:
            return repr(value)
        return f"an integer of about {int(math.log10(abs(value))) + 1:,} digits"
    try:
        text = _SHORT_REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an integer beyond Python's int-to-str limit, deep inside
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"


def plain(value: Any) -> str:
    """A value as a message writes it unquoted (a setting's name, a grid point's value): as it is
    when short and printable, else as :func:`shown` quotes it."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:  # an integer beyond Python's int-to-str limit
        return shown(value)
    return text if 0 < len(text) <= SHOWN_CHARS and text.isprintable() else shown(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, SHOWN_CHARS, SHOWN_CHARS


class FieldError(ValueError):
    """A bad setting; ``field`` names it and the message starts with it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


WANT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
NONE_WORDS = ("none", "off", "auto")


def described(default: Any, help: str, unit: str = "", group: str = "", **extra: Any):
    """A dataclass field whose metadata carries its help text, unit and form group."""
    return dataclasses.field(default=default, metadata={"help": help, "unit": unit, "group": group, **extra})


def coerce_fields(obj: Any, error: Callable[[str, str], Exception]) -> None:
    """Type-check every field of frozen dataclass ``obj`` in place (ints stay ints, floats finite)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        optional = "None" in str(f.type)
        kind = str(f.type).replace(" | None", "")
        if optional and isinstance(value, str) and value.strip().lower() in NONE_WORDS:
            value = None
            object.__setattr__(obj, f.name, None)
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
            raise error(f.name, f"must be {WANT[kind]}{' or none' if optional else ''}, got {shown(value)}")
        object.__setattr__(obj, f.name, value)
        check_allowed(f, value, error)


def check_allowed(f: dataclasses.Field, value: Any, error: Callable[[str, str], Exception]) -> None:
    """Raise ``error`` unless ``value`` is one of field ``f``'s choices and within its documented range."""
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise error(f.name, f"must be one of {', '.join(choices)}; got {shown(value)}")
    bounds = f.metadata.get("range")
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise error(f.name, f"must be between {range_text(f)}, got {number_text(value)}")


def number_text(value: float | int) -> str:
    """``value`` as ``%g`` (an integer too large for a float: :func:`shown`)."""
    try:
        return f"{value:g}"
    except OverflowError:
        return shown(value)


def range_text(f: dataclasses.Field, joiner: str = "and") -> str:
    """The documented range of a numeric field, e.g. ``1e-06 and 1e+06 req/s``."""
    lo, hi = f.metadata["range"]
    unit = f.metadata.get("unit", "")
    return f"{lo:g} {joiner} {hi:g}" + (f" {unit}" if unit else "")


def unused_settings(obj: Any, names: Any) -> list[str]:
    """Which of ``names`` (settings a user gave) cannot change ``obj``'s result.

    ``obj`` is a settings dataclass with ``relevant_dict()`` (the settings its
    identity covers); a given setting outside it does nothing in this
    configuration (e.g. ``batch_size`` in a dynamic mode), and callers say so.
    """
    own = {f.name for f in dataclasses.fields(obj)}
    relevant = obj.relevant_dict()
    return sorted(n for n in set(names) & own if n not in relevant)
