"""Ids, limits, offsets and searches: the same answers on SQLite and PostgreSQL, one-line CLI errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import batchlab.cli as batchlab
from batchlab.core import SimConfig
from batchlab.store import StoreError, open_store
from batchlab.store.keys import MAX_ID, MAX_ROWS
from batchlab.workloads import WorkloadSpec, build_workload

HUGE = 99999999999999999999  # beyond 64 bits


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    w = build_workload(WorkloadSpec(num_requests=60, workload_seed=2))
    for gpus in (1, 2, 3):
        s.get_or_run(SimConfig(gpus=gpus), w)
    yield s
    s.close()


def test_limit_and_offset_range_is_the_same_on_every_backend(store):
    assert len(store.list_runs(limit=MAX_ROWS)) == 3
    assert store.list_runs(offset=MAX_ROWS) == [] and store.list_runs(limit=0) == []
    assert [r.gpus for r in store.list_runs(order_by="gpus", descending=False, limit=1, offset=1)] == [2]
    for status in (None, "stale"):  # the SQL page and the page cut in Python
        for bad in ({"limit": MAX_ROWS + 1}, {"limit": -1}, {"offset": -1}, {"offset": HUGE}, {"limit": 2.5},
                    {"limit": True}, {"offset": "3"}):
            name, value = next(iter(bad.items()))
            with pytest.raises(StoreError, match=rf"^{name}: must be a whole number from 0 to "
                                                 rf"9,223,372,036,854,775,807, got {value!r}$"):
                store.list_runs(status=status, **bad)


def test_out_of_range_ids_name_no_run_on_every_backend(store):
    first = store.list_runs(order_by="id", descending=False)[0]
    assert store.get_run(first.id).id == first.id and store.get_run(str(first.id)).id == first.id
    for key in (0, -1, MAX_ID + 1, 2**63, HUGE, str(HUGE), "9" * 5000, "0" * 70, str(MAX_ID + 1), True):
        assert store.resolve_run(key) is None, key
        assert store.get_run(key) is None, key
        assert store.delete_run(key) is False, key
    assert store.count_runs() == 3
    for key in ("zzzz-not-hex", "é" * 10, "a\x00bcd"):  # no hash looks like this: no query, no driver error
        assert store.get_run(key) is None
    with pytest.raises(StoreError, match="at least 4 characters"):
        store.get_run("ab")
    assert store.get_run(first.hash.upper()[:10]).id == first.id


def test_sweep_ids_out_of_range(store):
    sweep = store.create_sweep("s")
    for key in (0, MAX_ID + 1, HUGE):
        with pytest.raises(StoreError, match=f"no sweep {key} in the store"):
            store.require_sweep(key)
        assert store.sweep_runs(key) == [] and store.delete_sweep(key) is False
        with pytest.raises(StoreError, match="no such run"):
            store.add_sweep_run(sweep, key)
    assert store.sweep_runs(sweep) == []


def test_search_with_a_nul_character_is_refused_on_every_backend(store):
    with pytest.raises(StoreError, match="search: must not contain a NUL character"):
        store.list_runs(search="multi\x00bin")
    with pytest.raises(StoreError, match="NUL"):
        store.count_runs(search="\x00")


def invoke(*args):
    return CliRunner().invoke(batchlab.cli, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a ClickException, not a crash
    for needle in needles:
        assert needle in result.output, result.output


def test_cli_limits_offsets_and_ids(store, store_url):
    one_line_error(invoke("runs", "list", "--limit", HUGE, "--db", store_url), "--limit: must be a whole number",
                   str(HUGE))
    one_line_error(invoke("runs", "list", "--offset", -5, "--db", store_url), "--offset: must be a whole number")
    one_line_error(invoke("runs", "list", "--limit", -1, "--json", "--db", store_url), "--limit")
    for command in (("runs", "show"), ("runs", "delete", "--yes"), ("runs", "export")):
        one_line_error(invoke(*command, HUGE, "--db", store_url), f"no run '{HUGE}'")
    one_line_error(invoke("runs", "export", "--requests", MAX_ID + 1, "--db", store_url), "no run")
    rows = json.loads(invoke("runs", "list", "--json", "--limit", MAX_ROWS, "--db", store_url).output)
    assert len(rows) == 3
    assert store.count_runs() == 3


def test_a_search_without_matches_does_not_call_the_store_empty(store, store_url, tmp_path):
    out = invoke("runs", "list", "--search", "no such label", "--db", store_url).output
    assert out == "no runs match search 'no such label' (3 runs in the store)\n"
    out = invoke("runs", "list", "--mode", "static_fifo", "--status", "failed", "--db", store_url).output
    assert out == "no runs match mode static_fifo, status failed (3 runs in the store)\n"
    out = invoke("runs", "list", "--search", "continuous", "--offset", 10, "--db", store_url).output
    assert out == "no runs on this page (3 match search 'continuous')\n"
    assert invoke("runs", "list", "--offset", 10, "--db", store_url).output == "no runs on this page (3 in all)\n"
    empty = f"sqlite:///{tmp_path}/empty.db"
    assert invoke("runs", "list", "--search", "x", "--db", empty).output == \
        "no runs match search 'x' (the store is empty)\n"
    assert invoke("runs", "list", "--db", empty).output == "no runs in the store\n"
