"""Fixtures shared by the whole test suite."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def batchlab_cache_dir(tmp_path_factory, monkeypatch):
    """Every test gets a fresh, private diskcache directory (never the user's cache)."""
    from workloads.cache import close_caches

    directory = tmp_path_factory.mktemp("batchlab-cache")
    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(directory))
    monkeypatch.delenv("BATCHLAB_CACHE", raising=False)
    monkeypatch.delenv("BATCHLAB_CACHE_SIZE_MB", raising=False)
    yield directory
    close_caches()
