"""Fixtures shared by the whole test suite."""
from __future__ import annotations

import os

if "MUTANT_UNDER_TEST" in os.environ:  # mutmut (make mutate) runs the suite in its copy, mutants/
    from mutants_alias import import_the_copy_as_batchlab

    import_the_copy_as_batchlab(os.getcwd())

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

# A busy CI machine is slow, never wrong: no property test fails on how long an example takes.
settings.register_profile("batchlab", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("batchlab")


def _no_local_constants() -> None:
    """Hypothesis biases its draws with literals it finds in every loaded local module, so a
    derandomized test draws other examples when other test files are collected with it. The property
    tests that state a share of examples (that preempt, that run out of memory) must see the same
    examples alone and in the whole suite: draw from Hypothesis's own constants only."""
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants

    if hasattr(providers, "_get_local_constants"):
        providers._get_local_constants = Constants


_no_local_constants()


def pytest_sessionstart(session):
    """Compile the continuous engine once, before any test runs (its first compile takes tens of
    seconds, which no single test's timeout should pay; later processes load numba's disk cache)."""
    from batchlab.core.continuous_engine import warm_up

    warm_up()


@pytest.fixture(autouse=True)
def batchlab_cache_dir(tmp_path_factory, monkeypatch):
    """Every test gets a fresh, private diskcache directory (never the user's cache)."""
    from batchlab.workloads.cache import close_caches

    directory = tmp_path_factory.mktemp("batchlab-cache")
    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(directory))
    monkeypatch.delenv("BATCHLAB_CACHE", raising=False)
    monkeypatch.delenv("BATCHLAB_CACHE_SIZE_MB", raising=False)
    yield directory
    close_caches()


# ----------------------------------------------------------- results store --
@pytest.fixture(autouse=True)
def batchlab_store_home(tmp_path_factory, monkeypatch):
    """Every test gets a private BATCHLAB_HOME (so the default results store is never the user's)."""
    home = tmp_path_factory.mktemp("batchlab-home")
    monkeypatch.setenv("BATCHLAB_HOME", str(home))
    monkeypatch.delenv("BATCHLAB_DB_URL", raising=False)
    monkeypatch.delenv("BATCHLAB_STALE_AFTER_S", raising=False)
    monkeypatch.delenv("BATCHLAB_WEB", raising=False)   # a web app of an earlier test set it (webapp/app.py)
    return home


@pytest.fixture
def isolated_app(tmp_path, monkeypatch):
    """For Streamlit AppTests: a private store, data home and workload cache; Streamlit's caches
    cleared before and after (they persist across AppTest instances in one process). AppTest
    leaves ``sys.modules["__main__"]`` pointing at webapp/app.py, which a later spawned process
    (a process pool, ``batchlab bench``) would re-run: it is restored after each test."""
    import sys

    import streamlit as st

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATCHLAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(tmp_path / "cache"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


PG_ADMIN_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_database():
    """A throwaway PostgreSQL database for this test session (dropped at the end).

    The admin URL is BATCHLAB_TEST_PG_ADMIN or the local server's ``test`` database;
    tests that need PostgreSQL are skipped (with the reason) if it is unreachable.
    """
    import os
    import secrets

    psycopg = pytest.importorskip("psycopg")
    candidates = [os.environ["BATCHLAB_TEST_PG_ADMIN"]] if os.environ.get("BATCHLAB_TEST_PG_ADMIN") else PG_ADMIN_URLS
    admin, errors = None, []
    for url in candidates:
        try:
            admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
            break
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0]}")
    if admin is None:
        pytest.skip("PostgreSQL unreachable (" + "; ".join(errors) + ")")
    name = f"batchlab_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = url.rsplit("/", 1)[0] + "/" + name
    try:
        yield base
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(pg_database):
    """A SQLAlchemy URL to a fresh, empty schema of the session's PostgreSQL database."""
    import secrets

    import psycopg

    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{pg_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty store: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def main_module_kept():
    """A Streamlit AppTest can leave ``sys.modules["__main__"]`` as the app script: a process pool started
    later would then run webapp/app.py in every worker (multiprocessing re-imports the main module by path)."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main
