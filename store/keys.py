"""Ids, hash prefixes and row counts, validated the same way on every backend.

SQLite and PostgreSQL disagree at the edges (SQLite ids are 64-bit, PostgreSQL's
INTEGER is 32-bit; SQLite reads a negative LIMIT as "no limit", PostgreSQL
refuses it; a Python int beyond 64 bits overflows the SQLite driver; SQLite
refuses a LIKE pattern over 50,000 bytes, PostgreSQL takes any), so the store
checks these values itself before they reach SQL.
"""
from __future__ import annotations

from .errors import StoreError

MAX_ID = 2**31 - 1  # ids are INTEGER: 32-bit on PostgreSQL
MAX_ROWS = 2**63 - 1  # the largest LIMIT / OFFSET both backends take
HASH_CHARS = frozenset("0123456789abcdef")
HASH_LEN = 64
MAX_SEARCH_CHARS = 1000  # a run's label is a few hundred characters; a longer search is a mistake


def valid_id(value) -> bool:
    """Whether ``value`` can be a run or sweep id (no id outside ``1..MAX_ID`` exists on any backend)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def could_be_hash_prefix(text: str) -> bool:
    """Whether lower-case ``text`` can start a run hash (hex digits, at most 64)."""
    return 0 < len(text) <= HASH_LEN and set(text) <= HASH_CHARS


def check_count(name: str, value) -> int:
    """``value`` as a row count or offset in ``0..MAX_ROWS``, else StoreError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROWS:
        raise StoreError(f"{name}: must be a whole number from 0 to {MAX_ROWS:,}, got {value!r}")
    return value


def check_search(text: str) -> str:
    """A run search (substring of a label or mode, or hash prefix), stripped; StoreError, the same on
    every backend, for one longer than MAX_SEARCH_CHARS or with a NUL character."""
    text = text.strip()
    if len(text) > MAX_SEARCH_CHARS:
        raise StoreError(f"search: at most {MAX_SEARCH_CHARS:,} characters, got {len(text):,}")
    if "\x00" in text:
        raise StoreError("search: must not contain a NUL character")
    return text
