"""Settings as text: the one reader (and writer) of a SimConfig or WorkloadSpec value.

Every way a user types a setting comes here: ``NAME=VALUE`` in a URL, ``--vary``, the
web's settings boxes, and the values of a TOML or JSON config file. A value is read by
its field's annotation:

* ``bool``: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case);
* ``int``: an integer (``8``, ``-3``, ``10_000``); ``float``: a finite number (``4``, ``0.05``, ``1e-7``);
* ``str``: the text, stripped; a field with choices takes one of them, exactly;
* an optional field (``| None``) also takes ``none``, ``auto``, ``off`` or nothing for None,
  after its own reading (``off`` is False for an optional bool, a choice named ``none`` is that choice);

then checked against the field's choices and documented range. A TOML or JSON value
means what its canonical text (:func:`setting_text`) means: ``gpus = 4`` and
``gpus = "4"`` are the same, ``gpus = 4.0`` is refused as ``gpus=4.0`` is. Cross-field
rules (``b_min <= b_max``) stay with the dataclasses. Every refusal is a
:class:`SettingError` naming the setting and quoting the text.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from batchlab.workloads.fields import NONE_WORDS, check_allowed, plain, shown
from batchlab.workloads.spec import SpecError, spec_fields

from .config import ConfigError, config_fields

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
EMPTY_WORDS = (*NONE_WORDS, "")  # what an optional field reads as None
MAX_VALUES = 100_000  # the most values one --vary list or range gives
SIM_FIELDS = {f.name: f for f in config_fields()}
SPEC_FIELDS = {f.name: f for f in spec_fields()}
_INT = re.compile(r"[+-]?\d+(?:_\d+)*", re.ASCII)


class SettingError(ConfigError, SpecError):
    """Settings text that cannot be read: ``field`` names the setting and the message quotes the text."""


def _base(f: dataclasses.Field) -> tuple[str, bool]:
    """(the annotation without ``| None``, whether None is allowed)."""
    kind = str(f.type)
    return kind.replace(" | None", ""), kind.endswith("| None")


# ------------------------------------------------------------------ names --
def setting_field(name: str) -> dataclasses.Field:
    """The SimConfig or WorkloadSpec field ``name`` (dashes read as underscores)."""
    key = str(name).strip().replace("-", "_")
    f = SIM_FIELDS.get(key) or SPEC_FIELDS.get(key)
    if f is not None:
        return f
    known = sorted(SIM_FIELDS.keys() | SPEC_FIELDS.keys())
    close = difflib.get_close_matches(key, known, n=1) if len(key) <= 40 else []
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
    raise SettingError(plain(name) if key else "setting", f"unknown setting ({hint})")


def is_sim(name: str) -> bool:
    """True for a SimConfig setting, False for a WorkloadSpec one (names are unique across both)."""
    return setting_field(name).name in SIM_FIELDS


# ------------------------------------------------------------------ values --
def setting_text(value: Any) -> str:
    """The canonical text of a setting's value (what :func:`parse_setting` reads back as ``value``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_setting(name: str, value: Any) -> Any:
    """The typed, checked value of setting ``name`` from text (or a TOML/JSON scalar)."""
    f = setting_field(name)
    if not isinstance(value, str):
        value = _scalar_text(f, value)
    return check_setting(f.name, _read(f, value))


def check_setting(name: str, value: Any) -> Any:
    """``value`` if setting ``name`` allows it (its choices and documented range), else SettingError."""
    f = setting_field(name)
    if value is None:
        return value
    check_allowed(f, value, SettingError)
    return value




def _scalar_text(f: dataclasses.Field, value: Any) -> str:
    """A TOML/JSON value as its canonical text; a list, a table or another object is refused."""
    if value is not None and not isinstance(value, (bool, int, float)):
        raise SettingError(f.name, f"{shown(value)} is not a single value")
    try:
        return setting_text(value)
    except ValueError:  # an integer beyond Python's int-to-str limit
        raise SettingError(f.name, f"{shown(value)} is not {_want(f)}") from None


def _want(f: dataclasses.Field) -> str:
    base, optional = _base(f)
    want = {"int": "an integer", "float": "a finite number", "bool": "true or false"}.get(base, "a value")
    return f"{want} or none" if optional else want


def _read(f: dataclasses.Field, text: str) -> Any:
    """``text`` as a value of ``f``'s type: its own reading first, then (optional fields) a none word."""
    base, optional = _base(f)
    t = text.strip()
    low = t.lower()
    value = _typed(base, t, low, f.metadata.get("choices"))
    if value is not _UNREAD:
        return value
    if optional and low in EMPTY_WORDS:
        return None
    if not t:
        raise SettingError(f.name, "no value given")
    if base == "str":  # a text with choices, none of them
        return t
    raise SettingError(f.name, f"{shown(t)} is not {_want(f)}")


_UNREAD = object()


def _typed(base: str, t: str, low: str, choices: Any) -> Any:
    """The value ``t`` spells in type ``base``, or _UNREAD."""
    if base == "bool":
        return True if low in TRUE_WORDS else False if low in FALSE_WORDS else _UNREAD
    if base == "int":
        if not _INT.fullmatch(t):
            return _UNREAD
        try:
            return int(t)
        except ValueError:  # more digits than Python reads
            return _UNREAD
    if base == "float":
        if not t.isascii() or not t:
            return _UNREAD
        try:
            v = float(t)
        except ValueError:
            return _UNREAD
        return v if math.isfinite(v) else _UNREAD
    if not t or (choices and t not in choices) or (not choices and low in EMPTY_WORDS):
        return _UNREAD
    return t


# ------------------------------------------------------------ assignments --
def split_assignment(text: str, expected: str = "NAME=VALUE") -> tuple[str, str]:
    """``NAME=VALUE`` -> (the setting's field name, the value text); the name must be known."""
    text = str(text)
    if "=" not in text:
        raise SettingError(shown(text.strip()) if text.strip() else "setting", f"expected {expected}")
    name, _, rhs = text.partition("=")
    return setting_field(name).name, rhs


def parse_lines(lines: Iterable[str]) -> dict[str, Any]:
    """Settings from ``NAME=VALUE`` lines (blank lines and ``#`` comments skipped; a later line wins)."""
    out: dict[str, Any] = {}
    for raw in lines:
        line = str(raw).split("#", 1)[0].strip()
        if line:
            name, text = split_assignment(line)
            out[name] = parse_setting(name, text)
    return out


def parse_mapping(values: dict) -> dict[str, Any]:
    """Settings from a name -> value mapping (a config file's table): each value read as its text."""
    return {setting_field(k).name: parse_setting(k, v) for k, v in values.items()}


def split_settings(values: dict[str, Any]) -> tuple[dict, dict]:
    """(SimConfig settings, WorkloadSpec settings) of a name -> value mapping."""
    sim = {k: v for k, v in values.items() if is_sim(k)}
    return sim, {k: v for k, v in values.items() if k not in sim}


# ------------------------------------------------------------------- lists --
def parse_values(name: str, text: str) -> list:
    """``V1,V2,...`` or, for a number, an inclusive ``START:STOP:STEP`` -> distinct values in order."""
    f = setting_field(name)
    rhs = str(text).strip()
    if not rhs:  # one empty value: None for an optional setting, as everywhere
        return [parse_setting(f.name, rhs)]
    parts = rhs.split(":")
    if len(parts) == 3 and "," not in rhs and _base(f)[0] in ("int", "float"):
        values = [check_setting(f.name, v) for v in _range(f, parts)]
    else:
        values = [parse_setting(f.name, v) for v in rhs.split(",") if v.strip()]
    if not values:
        raise SettingError(f.name, "no values given")
    return list(dict.fromkeys(values))


def _range(f: dataclasses.Field, parts: list[str]) -> list:
    """The values of an inclusive ``START:STOP:STEP`` range: finite, at most MAX_VALUES of them,
    each distinct (a STEP below the resolution of the values is an error, not a silent merge)."""
    base = _base(f)[0]
    given = shown(":".join(parts))
    read = [_typed(base, p.strip(), p.strip().lower(), None) for p in parts]
    if any(v is _UNREAD for v in read):
        bad = next(p for p, v in zip(parts, read) if v is _UNREAD)
        if base == "float" and bad.strip().isascii() and _is_float_word(bad):
            raise SettingError(f.name, f"START, STOP and STEP must be finite numbers, got {given}")
        raise SettingError(f.name, f"{shown(bad.strip())} is not {_want(f).removesuffix(' or none')} "
                                   f"(in the range {given})")
    start, stop, step = read
    if not step > 0:
        raise SettingError(f.name, f"STEP must be > 0 in {given}")
    if stop < start:
        raise SettingError(f.name, f"STOP ({shown(stop)}) is below START ({shown(start)})")
    if base == "int":
        count = (stop - start) // step + 1
    else:
        span = (stop - start) / step  # inf when the span or the count overflows a float
        count = math.floor(span + 1e-9) + 1 if span < MAX_VALUES else MAX_VALUES + 1
    if count > MAX_VALUES:
        raise SettingError(f.name, f"more than {MAX_VALUES:,} values in {given}")
    values = [start + i * step for i in range(count)]
    values = [int(v) for v in values] if base == "int" else [round(v, 12) for v in values]
    if len(set(values)) < len(values):
        raise SettingError(f.name, f"STEP is below the resolution of the values in {given} (they would repeat)")
    return values


def _is_float_word(text: str) -> bool:
    """True for text Python reads as a number that is not finite (``nan``, ``-inf``, ``1e999``)."""
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False
