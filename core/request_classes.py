"""Request classes (docs/semantics.md#request-classes): named groups of requests, keyed by priority, each
with its own deadlines.

``NAME:priority=P[:ttft=D][:tpot=D][:e2e=D];NAME:...`` — e.g.
``interactive:priority=0:ttft=500ms:tpot=50ms;batch:priority=1:e2e=120s``. A class holds the requests whose
priority is P (a synthetic workload's ``priority_mix``, a trace's Priority column; a workload without
priorities has every request at 0). A deadline a class names replaces the run's (``d_sla_ttft``,
``d_sla_tbt``, ``d_sla_e2e``) for its requests, ``none`` turns it off for them, and one it does not name
is the run's. ``tpot`` is the TBT deadline (applied as ``tbt_sla`` says: the mean gap, or the largest).
Durations as in :mod:`core.slo` (``500ms``, ``2s``, a bare number of seconds).

Per class the summary reports its share of the requests, its attainment (share of its requests meeting
every deadline it has, rejected requests missing them all, exactly as the run's attainment) and its
TTFT, TPOT and E2E percentiles (p50, p90, p99 of its served requests, as the summary's).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .slo import SloError, duration_text, parse_duration

DEADLINES = {"ttft": "ttft", "tpot": "tbt", "e2e": "e2e"}   # key -> the deadline it replaces
ALIASES = {"tbt": "tpot", "e2el": "e2e"}
PCTS = (50, 90, 99)
FORM = "NAME:priority=P[:ttft=D][:tpot=D][:e2e=D];..., e.g. interactive:priority=0:ttft=500ms;batch:priority=1"
MAX_CLASSES = 64
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")
UNSET = "unset"   # a class deadline not named: the run's own applies


@dataclass(frozen=True)
class RequestClass:
    """A class: its name, the priority value of its requests and its own deadlines (seconds; None = off,
    :data:`UNSET` = the run's)."""

    name: str
    priority: int
    ttft: float | None | str = UNSET
    tpot: float | None | str = UNSET
    e2e: float | None | str = UNSET

    @property
    def text(self) -> str:
        parts = [self.name, f"priority={self.priority}"]
        for key in DEADLINES:
            value = getattr(self, key)
            if value != UNSET:
                parts.append(f"{key}={'none' if value is None else duration_text(value)}")
        return ":".join(parts)

    def deadlines(self, ttft: float | None, tbt: float | None, e2e: float | None) -> dict[str, float | None]:
        """This class's deadlines (ttft, tbt, e2e) given the run's."""
        run = {"ttft": ttft, "tbt": tbt, "e2e": e2e}
        return {DEADLINES[k]: run[DEADLINES[k]] if getattr(self, k) == UNSET else getattr(self, k)
                for k in DEADLINES}


def _parse_one(text: str) -> RequestClass:
    parts = [p.strip() for p in text.split(":")]
    name = parts[0]
    if not _NAME.fullmatch(name):
        raise SloError("classes", f"{name!r} is not a class name (a letter, then letters, digits, _ or -; "
                       f"expected {FORM})")
    fields: dict[str, object] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        key = ALIASES.get(key, key)
        where = f"class {name}, {part!r}"
        if not sep:
            raise SloError("classes", f"{where}: expected KEY=VALUE (keys priority, {', '.join(DEADLINES)})")
        if key in fields:
            raise SloError("classes", f"{where}: {key} is given twice")
        if key == "priority":
            try:
                fields[key] = int(value.strip())
            except ValueError:
                raise SloError("classes", f"{where}: the priority must be an integer") from None
            if not -2**31 <= fields[key] < 2**31:
                raise SloError("classes", f"{where}: the priority must be a 32-bit integer")
        elif key in DEADLINES:
            off = value.strip().lower() in ("none", "off")
            fields[key] = None if off else parse_duration(value, f"{where}: ", "classes")
        else:
            raise SloError("classes", f"{where}: unknown key {key!r} (keys priority, {', '.join(DEADLINES)})")
    if "priority" not in fields:
        raise SloError("classes", f"class {name} has no priority=P (which requests it holds)")
    return RequestClass(name, **fields)


def parse_classes(text: str | None) -> tuple[RequestClass, ...]:
    """Classes separated by ``;``; names and priorities unique. SloError names the bad part."""
    if text is None or not text.strip():
        return ()
    classes = tuple(_parse_one(part) for part in text.split(";") if part.strip())
    if len(classes) > MAX_CLASSES:
        raise SloError("classes", f"at most {MAX_CLASSES} classes, got {len(classes)}")
    for i, c in enumerate(classes):
        for other in classes[:i]:
            if c.name == other.name:
                raise SloError("classes", f"the name {c.name} is given twice")
            if c.priority == other.priority:
                raise SloError("classes", f"{other.name} and {c.name} both hold priority {c.priority}")
    return classes


def classes_text(classes: tuple[RequestClass, ...]) -> str:
    """The canonical text of parsed classes."""
    return ";".join(c.text for c in classes)


def request_priorities(priority: np.ndarray | None, n: int) -> np.ndarray:
    """Each request's priority (0 for all when the workload has none)."""
    return np.zeros(n, dtype=np.int64) if priority is None else np.asarray(priority, dtype=np.int64)


def check_covered(classes: tuple[RequestClass, ...], priority: np.ndarray) -> None:
    """SloError naming a priority value of the workload that no class holds."""
    known = {c.priority for c in classes}
    values, counts = np.unique(priority, return_counts=True)
    for v, count in zip(values.tolist(), counts.tolist()):
        if v not in known:
            raise SloError("classes", f"{count:,} request(s) have priority {v}, which no class holds; give every "
                           f"priority in the workload a class (classes hold {', '.join(map(str, sorted(known)))})")


def _percentiles(values: np.ndarray) -> dict[int, float | None]:
    values = values[~np.isnan(values)]
    return {p: (float(np.percentile(values, p)) if len(values) else None) for p in PCTS}


def class_rows(classes: tuple[RequestClass, ...], req: dict, priority: np.ndarray, run_deadlines: dict,
               violations) -> list[dict]:
    """One row per class: name, priority, requests, share, rejected, its deadlines, attainment and
    percentiles. ``run_deadlines``: the run's ``ttft``, ``tbt``, ``e2e`` deadlines; ``violations(ttft=,
    tbt=, e2e=)`` gives the per-request violation arrays (None = off) under deadlines
    (:func:`core.metrics.deadline_violations`)."""
    n = len(priority)
    done = np.isfinite(req["finish"])
    rows = []
    for c in classes:
        m = priority == c.priority
        count = int(m.sum())
        deadlines = c.deadlines(**run_deadlines)
        viol = violations(**deadlines)
        on = [v[m] for v in viol.values() if v is not None]
        attainment = None
        if on and count:
            attainment = float(1.0 - np.logical_or.reduce(on).mean())
        served = m & done
        row = {"name": c.name, "priority": c.priority, "requests": count, "share": count / n if n else 0.0,
               "rejected": int(count - served.sum()),
               **{f"d_{k}_s": v for k, v in deadlines.items()}, "attainment": attainment}
        for metric, key in (("ttft", "ttft"), ("tpot", "tbt"), ("e2e", "e2e")):
            for p, value in _percentiles(req[key][served]).items():
                row[f"{metric}_p{p}_s"] = value
        rows.append(row)
    return rows
