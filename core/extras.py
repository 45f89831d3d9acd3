"""Optional parts of batchlab and what each needs (pyproject.toml's extras).

The command line needs none of them. Code that uses an extra imports it where it is used,
after :func:`require`, so a missing extra is one line that names it and its install
command instead of an ImportError from deep inside a page or a worker.
"""
from __future__ import annotations

from importlib.util import find_spec

# extra -> the top-level modules it provides (import names, not distribution names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "web": ("streamlit", "altair", "vl_convert", "PIL"),
    "dask": ("dask", "distributed"),
    "postgres": ("psycopg",),
    "calibrate": ("torch", "transformers"),
    "parquet": ("pyarrow",),
}


class MissingExtra(ImportError):
    """An optional part of batchlab is used without its extra installed."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that this Python cannot import (found without importing them)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; expected one of {', '.join(EXTRAS)}")
    return [name for name in EXTRAS[extra] if find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Return when ``extra`` is installed; else raise :class:`MissingExtra`:
    ``{what} needs batchlab[{extra}] (... not installed): pip install 'batchlab[{extra}]'``."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(f"{what} needs batchlab[{extra}] ({', '.join(absent)} not installed): "
                           f"pip install 'batchlab[{extra}]'")
