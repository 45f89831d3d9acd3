"""A small diskcache memo layer: ``memoize(namespace, key, compute)``.

Keys are ``batchlab-v{CACHE_VERSION}:{namespace}:{sha256 of the canonical JSON
of key}``; bump CACHE_VERSION (or version the namespace) when what a namespace
computes changes. Values are pickled, so numpy arrays round-trip.

Environment:
    BATCHLAB_CACHE          ``off`` (or 0/false/no) disables the cache
    BATCHLAB_CACHE_DIR      the directory; else ``$BATCHLAB_HOME/cache``;
                            else ``$XDG_CACHE_HOME/batchlab`` or ``~/.cache/batchlab``
    BATCHLAB_CACHE_SIZE_MB  size limit, default 1024 (oldest entries are evicted)

The cache is best effort: an unusable directory, a corrupt database or an
unreadable entry logs a warning and the value is computed, never a crash.
Errors raised by ``compute`` itself propagate and nothing is stored.

Nothing is left behind: diskcache writes a large value (over 32 KB pickled) to
its own file before it commits the row naming it, so a writer killed in between
leaves a file no entry refers to. The first open of a directory in a process
removes such files once they are older than :data:`ORPHAN_GRACE_S` (a younger one
may belong to a write in progress in another process).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
CACHE_VERSION = 1
DEFAULT_SIZE_MB = 1024
_OFF = {"off", "0", "false", "no", "disabled"}

log = logging.getLogger(__name__)
_lock = threading.Lock()
_open_caches: dict[tuple[str, int], Any] = {}
_counts = {"hits": 0, "misses": 0, "errors": 0}
_MISSING = object()
_warned: set[str] = set()  # unusable directories already reported
_swept: set[str] = set()  # directories this process has removed orphan value files from
ORPHAN_GRACE_S = 3600.0
# diskcache's value files: two levels of hex directories, 28 hex digits and .val (diskcache.Disk.filename)
VALUE_FILES = "[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/" + "[0-9a-f]" * 28 + ".val"


def cache_enabled() -> bool:
    return os.environ.get("BATCHLAB_CACHE", "on").strip().lower() not in _OFF


def cache_dir() -> Path:
    """The cache directory the environment selects (not created here)."""
    if os.environ.get("BATCHLAB_CACHE_DIR"):
        return Path(os.environ["BATCHLAB_CACHE_DIR"]).expanduser()
    if os.environ.get("BATCHLAB_HOME"):
        return Path(os.environ["BATCHLAB_HOME"]).expanduser() / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "batchlab"


def cache_size_limit() -> int:
    """Size limit in bytes (BATCHLAB_CACHE_SIZE_MB; a bad value falls back to the default)."""
    raw = os.environ.get("BATCHLAB_CACHE_SIZE_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_SIZE_MB
        if not (mb > 0 and math.isfinite(mb)):
            raise ValueError
    except ValueError:
        log.warning("BATCHLAB_CACHE_SIZE_MB=%r is not a positive number; using %d MB", raw, DEFAULT_SIZE_MB)
        mb = DEFAULT_SIZE_MB
    return int(mb * 2**20)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cache key: {type(obj).__name__} is not JSON-serialisable")


def canonical_json(key: Any) -> str:
    """Sorted-key, compact JSON; numpy scalars/arrays and paths are converted."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=_jsonable, allow_nan=True)


def cache_key(namespace: str, key: Any) -> str:
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
    return f"batchlab-v{CACHE_VERSION}:{namespace}:{digest}"


def _cache():
    """The open diskcache for the current settings, or None (warned) if unusable."""
    import diskcache

    directory, limit = str(cache_dir()), cache_size_limit()
    with _lock:
        cache = _open_caches.get((directory, limit))
        if cache is None:
            try:
                cache = diskcache.Cache(directory, size_limit=limit)
            except Exception as exc:  # unwritable dir, a file in the way, corrupt database
                _counts["errors"] += 1
                level = logging.DEBUG if directory in _warned else logging.WARNING
                _warned.add(directory)
                log.log(level, "cache directory %s is unusable (%s); computing without the cache "
                        "(delete it or set BATCHLAB_CACHE_DIR)", directory, exc)
                return None
            _open_caches[(directory, limit)] = cache
            if directory not in _swept:
                _swept.add(directory)
                _remove_orphans(cache)
        return cache


def _remove_orphans(cache) -> int:
    """Delete the value files older than ORPHAN_GRACE_S that no entry refers to; returns how many."""
    import diskcache

    root = Path(cache.directory)
    cutoff = time.time() - ORPHAN_GRACE_S
    old = []
    for path in root.glob(VALUE_FILES):
        try:
            if path.stat().st_mtime < cutoff:
                old.append(path)
        except OSError:  # removed meanwhile
            continue
    if not old:
        return 0
    try:  # read after listing the files: a row committed meanwhile is seen
        db = sqlite3.connect(f"{(root / diskcache.core.DBNAME).resolve().as_uri()}?mode=ro", uri=True)
        try:
            used = {name for (name,) in db.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("cannot look for orphan files in the cache %s (%s)", root, exc)
        return 0
    removed = 0
    for path in old:
        if str(path.relative_to(root)) not in used:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        log.info("removed %d orphan value files from the cache %s", removed, root)
    return removed


def _forget(cache) -> None:
    """Drop a cache that failed so the next call reopens it."""
    with _lock:
        for k, v in list(_open_caches.items()):
            if v is cache:
                del _open_caches[k]
    try:
        cache.close()
    except Exception:
        pass


def memoize(namespace: str, key: dict, compute: Callable[[], T]) -> T:
    """``compute()``, served from the disk cache when ``(namespace, key)`` was computed before."""
    if not cache_enabled():
        return compute()
    full = cache_key(namespace, key)
    cache = _cache()
    if cache is not None:
        try:
            entry = cache.get(full, default=_MISSING)
        except Exception as exc:
            _counts["errors"] += 1
            log.warning("cache entry %s is unreadable (%s); recomputing", full, exc)
            entry = _MISSING
            try:
                cache.delete(full)
            except Exception:
                _forget(cache)
                cache = None
        if entry is not _MISSING:
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == full:
                _counts["hits"] += 1
                return entry[1]
            _counts["errors"] += 1
            log.warning("cache entry %s does not match its key; recomputing", full)
    _counts["misses"] += 1
    value = compute()
    if cache is not None:
        try:
            cache.set(full, (full, value))
        except Exception as exc:
            _counts["errors"] += 1
            log.warning("could not store cache entry %s (%s)", full, exc)
    return value


def cache_stats() -> dict:
    """Where the cache is, how full, and this process's hits, misses and errors."""
    stats: dict[str, Any] = {"enabled": cache_enabled(), "directory": str(cache_dir()),
                             "size_limit_bytes": cache_size_limit(), "entries": None,
                             "size_bytes": None, **_counts}
    if stats["enabled"]:
        cache = _cache()
        if cache is not None:
            try:
                stats["entries"], stats["size_bytes"] = len(cache), int(cache.volume())
            except Exception as exc:
                log.warning("cannot read cache statistics (%s)", exc)
    return stats


def clear_cache() -> int:
    """Remove every entry of the current cache directory; returns how many."""
    cache = _cache() if cache_enabled() else None
    if cache is None:
        return 0
    try:
        return int(cache.clear())
    except Exception as exc:
        log.warning("could not clear the cache (%s)", exc)
        _forget(cache)
        return 0


def close_caches() -> None:
    """Close every open cache (tests, shutdown); they reopen on demand."""
    with _lock:
        caches = list(_open_caches.values())
        _open_caches.clear()
    for cache in caches:
        try:
            cache.close()
        except Exception:
            pass
