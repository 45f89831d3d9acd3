"""Grid names and what ``latency = grid:REF`` refers to.

``REF`` is one of, in this order:

1. a **CSV path** — any REF other than a bundled name that ends in ``.csv`` or contains a path
   separator (``grid:runs/a100.csv``, ``grid:~/grids/x.csv``). The file is read and
   validated on every use; the grid is named by the path as given and
   identified by the file's sha256, so a run's hash changes when the file does.
2. a **bundled** grid (:func:`calibration.data.bundled_grids`). Bundled names
   are reserved: no grid can be stored under one, so ``grid:NAME`` never means
   two different grids.
3. a **stored** grid, looked up through the ``stored`` callable the caller
   passes (the results store's ``get_grid``); this package never opens a store.

A storable grid name (:func:`check_grid_name`) is 1-100 characters from
letters, digits and ``. _ + -``, starting with a letter or digit, not ending in
``.csv`` (that would read as a path) and not a bundled name.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .data import bundled_grids, load_bundled
from .schema import Grid, GridError, excerpt
from .validate import parse_grid

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,99}")
NAME_RULE = ("1-100 characters: letters, digits and . _ + -, starting with a letter or digit, "
             "not ending in .csv")


def is_grid_path(ref: str) -> bool:
    """True when a ``grid:REF`` reference is a file path rather than a grid name (a bundled name such as
    ``llama-3.1-8b@h100/tp1`` never is)."""
    if ref in bundled_grids():
        return False
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return ref.lower().endswith(".csv") or any(s in ref for s in seps) or ref.startswith("~")


def check_grid_name(name: str) -> str:
    """The name, stripped, if a grid may be stored under it; else :class:`GridError` saying why."""
    name = (name or "").strip()
    if name in bundled_grids():
        raise GridError(f"grid name {name!r} is taken by a bundled grid (grid:{name} always means the "
                        "bundled one); choose another name")
    if not NAME_RE.fullmatch(name) or name.lower().endswith(".csv"):
        raise GridError(f"grid name {name!r} is not allowed: use {NAME_RULE}")
    return name


def named(grid: Grid, name: str) -> Grid:
    """``grid`` under ``name`` (checked by :func:`check_grid_name`), its ``# name:`` metadata set to match,
    so the grid's file carries the name it is stored under."""
    name = check_grid_name(name)
    return replace(grid, name=name, meta={**grid.meta, "name": name})


def upload_name(grid: Grid, file_name: str | None) -> str:
    """The name an uploaded file suggests: its ``# name:`` metadata, else its file stem."""
    return grid.meta.get("name") or (Path(file_name).stem if file_name else "") or grid.name


def resolve_grid(latency: str, stored: Callable[[str], Grid | None] | None = None,
                 files: bool = True) -> Grid | None:
    """The Grid a latency setting refers to (module doc); None for ``parametric``.

    ``stored(name)`` returns a stored grid or None; it is called only for a
    REF that is neither a path nor a bundled name. ``files=False`` (the web):
    REF is a name, never a path; a path-like REF is refused and no file is read.
    Raises :class:`GridError` (one line) for an unreadable or invalid file or an
    unknown name.
    """
    if not latency.startswith("grid:"):
        return None
    ref = latency[len("grid:"):].strip()
    if not ref:
        raise GridError("latency 'grid:' names no grid: use grid:NAME" + (" or grid:PATH.csv" if files else ""))
    if is_grid_path(ref) and not files:
        raise GridError(f"latency: grid:NAME names a bundled or stored grid, never a file; got {excerpt(latency)}")
    if is_grid_path(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise GridError(f"grid file {ref}: no such file")
        try:
            return parse_grid(path, name=ref)
        except GridError as exc:
            raise GridError(f"grid file {ref}: {exc}") from None
        except OSError as exc:
            raise GridError(f"grid file {ref}: cannot read it ({exc.strerror or exc})") from None
    if ref in bundled_grids():
        return load_bundled(ref)
    grid = stored(ref) if stored is not None else None
    if grid is None:
        searched = "not in the results store" if stored is not None else "no results store was searched"
        raise GridError(f"no calibration grid named {ref!r}: not bundled ({', '.join(sorted(bundled_grids()))}) "
                        f"and {searched}; a CSV file is grid:PATH.csv")
    return grid


__all__ = ["NAME_RE", "check_grid_name", "is_grid_path", "named", "resolve_grid", "upload_name"]
