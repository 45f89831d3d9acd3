"""The diskcache memo layer: hits, versioned keys, corruption and unusable directories."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import batchlab.workloads.build as build_mod
import batchlab.workloads.cache as cache
from batchlab.workloads import WorkloadError, WorkloadSpec, build_workload, cache_stats, clear_cache, memoize


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return self.value


def test_second_call_is_served_from_the_cache():
    compute = Counter({"edges": np.arange(5.0)})
    first = memoize("ns", {"k": 4, "w": "abc"}, compute)
    second = memoize("ns", {"w": "abc", "k": 4}, compute)  # key order does not matter
    assert compute.calls == 1
    assert np.array_equal(second["edges"], np.arange(5.0)) and second["edges"].dtype == np.float64
    assert np.array_equal(first["edges"], second["edges"])
    memoize("ns", {"k": 5, "w": "abc"}, compute)
    memoize("other", {"k": 4, "w": "abc"}, compute)
    assert compute.calls == 3


def test_large_numpy_values_round_trip():
    value = np.random.default_rng(0).normal(size=100_000)  # > diskcache's inline size: stored as a file
    compute = Counter(value)
    memoize("big", {"n": 1}, compute)
    again = memoize("big", {"n": 1}, compute)
    assert compute.calls == 1 and np.array_equal(again, value)


def test_version_is_in_the_key(monkeypatch):
    key = cache.cache_key("ns", {"a": 1})
    assert key.startswith(f"batchlab-v{cache.CACHE_VERSION}:ns:")
    compute = Counter(1)
    memoize("ns", {"a": 1}, compute)
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert cache.cache_key("ns", {"a": 1}) != key
    memoize("ns", {"a": 1}, compute)
    assert compute.calls == 2


def test_canonical_keys_accept_numpy_and_paths():
    assert cache.cache_key("ns", {"k": np.int64(3), "p": Path("/x")}) == cache.cache_key("ns", {"p": "/x", "k": 3})
    with pytest.raises(TypeError):
        cache.cache_key("ns", {"f": object()})


def test_disabled_cache_always_computes(monkeypatch):
    monkeypatch.setenv("BATCHLAB_CACHE", "off")
    compute = Counter(7)
    assert memoize("ns", {}, compute) == 7 and memoize("ns", {}, compute) == 7
    assert compute.calls == 2 and cache_stats()["enabled"] is False


def test_compute_errors_propagate_and_are_not_stored():
    def boom():
        raise WorkloadError("rate: nope")

    with pytest.raises(WorkloadError):
        memoize("ns", {"x": 1}, boom)
    compute = Counter(3)
    assert memoize("ns", {"x": 1}, compute) == 3 and compute.calls == 1


def test_corrupt_value_file_is_recomputed(batchlab_cache_dir, caplog):
    value = np.arange(50_000, dtype=np.float64)
    compute = Counter(value)
    memoize("big", {"n": 2}, compute)
    files = list(Path(batchlab_cache_dir).rglob("*.val"))
    assert files, "the large value should live in its own file"
    for f in files:
        f.write_bytes(b"\x80\x05not a pickle at all")
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads.cache"):
        again = memoize("big", {"n": 2}, compute)
    assert compute.calls == 2 and np.array_equal(again, value)
    assert "recomputing" in caplog.text
    memoize("big", {"n": 2}, compute)  # stored afresh
    assert compute.calls == 2


def test_corrupt_inline_entry_is_recomputed(batchlab_cache_dir, caplog):
    compute = Counter({"small": 1})
    memoize("small", {"n": 3}, compute)
    with sqlite3.connect(Path(batchlab_cache_dir) / "cache.db") as db:
        assert db.execute("UPDATE Cache SET value = ?", (b"garbage",)).rowcount >= 1
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads.cache"):
        assert memoize("small", {"n": 3}, compute) == {"small": 1}
    assert compute.calls == 2 and "recomputing" in caplog.text


def test_corrupt_database_is_not_a_crash(batchlab_cache_dir, caplog):
    compute = Counter(5)
    memoize("ns", {"a": 1}, compute)
    cache.close_caches()
    (Path(batchlab_cache_dir) / "cache.db").write_bytes(b"this is not sqlite" * 100)
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads.cache"):
        assert memoize("ns", {"a": 1}, compute) == 5
    assert compute.calls == 2 and caplog.records


def test_unusable_directory_computes(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(blocker))
    compute = Counter([1, 2])
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads.cache"):
        assert memoize("ns", {}, compute) == [1, 2] and memoize("ns", {}, compute) == [1, 2]
    assert compute.calls == 2 and "unusable" in caplog.text
    assert cache_stats()["entries"] is None


def test_directory_and_size_settings(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("BATCHLAB_CACHE_DIR")
    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / "cache"
    monkeypatch.delenv("BATCHLAB_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "batchlab"
    assert cache.cache_size_limit() == 1024 * 2**20
    monkeypatch.setenv("BATCHLAB_CACHE_SIZE_MB", "2")
    assert cache.cache_size_limit() == 2 * 2**20
    monkeypatch.setenv("BATCHLAB_CACHE_SIZE_MB", "-5")
    with caplog.at_level(logging.WARNING, logger="batchlab.workloads.cache"):
        assert cache.cache_size_limit() == 1024 * 2**20
    assert "BATCHLAB_CACHE_SIZE_MB" in caplog.text


def test_stats_and_clear(batchlab_cache_dir):
    for i in range(3):
        memoize("ns", {"i": i}, Counter(i))
    stats = cache_stats()
    assert stats["directory"] == str(batchlab_cache_dir) and stats["entries"] == 3 and stats["size_bytes"] > 0
    assert clear_cache() == 3 and cache_stats()["entries"] == 0
    compute = Counter(0)
    memoize("ns", {"i": 0}, compute)
    assert compute.calls == 1


def test_build_workload_is_memoized(monkeypatch):
    calls = {"synthetic": 0, "trace": 0}
    real_synthetic, real_trace = build_mod._synthetic, build_mod._from_trace

    def synthetic(spec):
        calls["synthetic"] += 1
        return real_synthetic(spec)

    def from_trace(*args):
        calls["trace"] += 1
        return real_trace(*args)

    monkeypatch.setattr(build_mod, "_synthetic", synthetic)
    monkeypatch.setattr(build_mod, "_from_trace", from_trace)
    spec = WorkloadSpec(num_requests=3000, workload_seed=9)
    a, b = build_workload(spec), build_workload(WorkloadSpec(num_requests=3000, workload_seed=9, offset=5))
    assert calls["synthetic"] == 1  # offset cannot change a synthetic workload: same key
    assert a.key == b.key and np.array_equal(a.arrival, b.arrival)
    with pytest.raises(ValueError):
        b.arrival[0] = 1.0  # read-only even when served from the cache
    build_workload(spec.replace(workload_seed=10))
    assert calls["synthetic"] == 2
    t1 = build_workload(WorkloadSpec(workload="burstgpt"))
    t2 = build_workload(WorkloadSpec(workload="burstgpt"))
    assert calls["trace"] == 1 and np.array_equal(t1.predicted, t2.predicted) and t1.identity == t2.identity


KILLED_WRITER = """
import sys, time
from pathlib import Path
import diskcache, numpy as np
from batchlab.workloads.cache import memoize
marker = Path(sys.argv[1])
write_value_file = diskcache.Disk.store

def hang_before_commit(self, *args, **kwargs):
    out = write_value_file(self, *args, **kwargs)  # the value's file is written, its row not yet committed
    marker.touch()
    time.sleep(120)
    return out

diskcache.Disk.store = hang_before_commit
memoize("big", {"n": 2}, lambda: np.arange(300_000.0))
"""


def value_files(directory) -> set[Path]:
    return set(Path(directory).rglob("*.val"))


def reopen_as_a_new_process(monkeypatch):
    cache.close_caches()
    monkeypatch.setattr(cache, "_swept", set())
    return cache._cache()


def test_a_writer_killed_mid_write_leaves_no_orphan_file_behind(batchlab_cache_dir, tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    live = np.arange(100_000.0)
    memoize("big", {"n": 1}, Counter(live))
    [live_file] = value_files(batchlab_cache_dir)
    marker = tmp_path / "written"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(marker)], cwd=Path(__file__).parents[1],
                              env=dict(os.environ, BATCHLAB_CACHE_DIR=str(batchlab_cache_dir)))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never wrote its value file"
        time.sleep(0.02)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(30)
    [orphan] = value_files(batchlab_cache_dir) - {live_file}
    assert orphan.stat().st_size > 2_000_000  # the whole pickled value, never committed

    reopen_as_a_new_process(monkeypatch)
    assert orphan.exists()  # young: it could be a write still in progress in another process
    past = time.time() - cache.ORPHAN_GRACE_S - 60
    for f in (orphan, live_file):
        os.utime(f, (past, past))
    reopen_as_a_new_process(monkeypatch)
    assert value_files(batchlab_cache_dir) == {live_file}  # the orphan is gone; the live entry's file stays
    compute = Counter(None)
    assert np.array_equal(memoize("big", {"n": 1}, compute), live) and compute.calls == 0
    again = Counter(np.arange(300_000.0))
    memoize("big", {"n": 2}, again)
    memoize("big", {"n": 2}, again)
    assert again.calls == 1 and cache_stats()["entries"] == 2

    # the walk runs once per directory and process: a later orphan waits for the next process
    stray = orphan.with_name("f" * 28 + ".val")
    stray.write_bytes(b"x")
    os.utime(stray, (past, past))
    cache.close_caches()
    cache._cache()
    assert stray.exists()
    reopen_as_a_new_process(monkeypatch)
    assert not stray.exists()


def test_prefix_keys_are_stored_and_restored(monkeypatch):
    calls = []
    real = build_mod._synthetic
    monkeypatch.setattr(build_mod, "_synthetic", lambda spec: calls.append(spec) or real(spec))
    spec = WorkloadSpec(num_requests=300, system_prompts=3, conversation_turns=2)
    first, again = build_workload(spec), build_workload(spec)
    assert len(calls) == 1 and again.prefix is not None and again.prefix is not first.prefix
    assert again.prefix.block == first.prefix.block
    assert np.array_equal(again.prefix.offsets, first.prefix.offsets)
    assert np.array_equal(again.prefix.keys, first.prefix.keys) and again.key == first.key
    with pytest.raises(ValueError):
        again.prefix.keys[0] = 1  # re-validated, so read-only again
    stored = build_mod.memoize(build_mod.NAMESPACE, {"spec": spec.relevant_dict(), "generator": build_mod.GENERATOR},
                               lambda: pytest.fail("not served from the cache"))
    assert set(stored["prefix"]) == {"block", "offsets", "keys"}   # plain arrays, no PrefixKeys pickled
    plain = build_mod.memoize(build_mod.NAMESPACE, {"spec": WorkloadSpec(num_requests=300).relevant_dict(),
                                                    "generator": build_mod.GENERATOR}, lambda: real(WorkloadSpec(num_requests=300)))
    assert "prefix" not in plain   # a workload without prefix keys is cached as before
