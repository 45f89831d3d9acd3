"""Extras: the command line works without any of them, and a missing one is a one-line error
that names it and its install command (core.extras, pyproject.toml)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchlab.cli import cli
from batchlab.core import extras
from batchlab.core.executors import open_executor
from batchlab.core.sweep import SweepError
from batchlab.store.db import make_engine, resolve_url
from batchlab.store.errors import StoreError
from batchlab.webapp import launch

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRA_MODULES = sorted({m for mods in extras.EXTRAS.values() for m in mods} | {"vllm"})


def canonical(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def without(monkeypatch, *modules: str) -> None:
    """Make ``modules`` look not installed to core.extras."""
    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name in modules else real(name))


def test_an_unknown_extra_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown extra 'gpu'; expected one of web, dask"):
        extras.missing("gpu")


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_each_extra_names_modules_its_declared_distributions_provide(extra):
    declared = {canonical(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]}
    provided = packages_distributions()
    for module in extras.EXTRAS[extra]:
        dists = {d.lower() for d in provided.get(module, [])}
        assert dists & declared, f"{module} ({dists or 'not installed'}) is not from batchlab[{extra}] {declared}"
    assert extras.missing(extra) == []  # the test environment has every extra


def test_the_core_dependencies_hold_no_extra_and_all_holds_every_extra():
    core = {canonical(r) for r in PYPROJECT["project"]["dependencies"]}
    optional = PYPROJECT["project"]["optional-dependencies"]
    for extra in extras.EXTRAS:
        assert not core & {canonical(r) for r in optional[extra]}, extra
    assert optional["all"] == [f"batchlab[{','.join(extras.EXTRAS)}]"]


def test_a_missing_extra_names_itself_and_its_install_command(monkeypatch):
    without(monkeypatch, "altair", "PIL")
    with pytest.raises(extras.MissingExtra) as info:
        extras.require("web", "the web app")
    assert str(info.value) == ("the web app needs batchlab[web] (altair, PIL not installed): "
                               "pip install 'batchlab[web]'")


def test_the_web_app_without_streamlit_is_refused_before_anything_starts(monkeypatch):
    without(monkeypatch, "streamlit")
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: pytest.fail("nothing may start"))
    res = CliRunner().invoke(cli, ["app"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "the web app needs batchlab[web] (streamlit not installed): pip install 'batchlab[web]'" in res.stderr


def test_clusters_offered_to_the_web_app_need_the_dask_extra(monkeypatch):
    without(monkeypatch, "distributed")
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: pytest.fail("nothing may start"))
    with pytest.raises(launch.LaunchError, match=r"needs batchlab\[dask\] \(distributed not installed\)"):
        launch.launch(clusters={"farm": "tcp://sched:8786"}, echo=lambda _: None)


def test_a_dask_cluster_without_the_dask_extra_is_a_sweep_error(monkeypatch):
    without(monkeypatch, "dask", "distributed")
    with pytest.raises(SweepError, match=r"^--cluster local needs batchlab\[dask\] \(dask, distributed not "
                                         r"installed\): pip install 'batchlab\[dask\]'$"):
        with open_executor("local", 1):
            pass
    with open_executor(None, 1) as (pool, n):  # the local process pool needs no extra
        assert n == 1 and pool.submit(abs, -3).result() == 3


def test_a_postgresql_store_without_psycopg_names_the_postgres_extra(monkeypatch):
    without(monkeypatch, "psycopg")
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://u:\*\*\*@db.invalid/x needs batchlab\[postgres\]"):
        make_engine(resolve_url("postgresql://u:secret@db.invalid/x")[0])
    make_engine(resolve_url("sqlite://")[0]).dispose()  # SQLite needs no extra


# -- the command line with every extra's modules hidden ----------------------------------------------
HIDE = ("import sys\nfor m in {mods!r}: sys.modules[m] = None\n"
        "import batchlab.cli as batchlab\nsys.argv[0] = 'batchlab'\nbatchlab.main()\n")


def hidden_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``batchlab ARGS`` in a Python where no extra's module can be imported (nor found)."""
    env = {**os.environ, "BATCHLAB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    env.pop("BATCHLAB_DB_URL", None)
    return subprocess.run([sys.executable, "-c", HIDE.format(mods=EXTRA_MODULES), *args], cwd=tmp_path, env=env,
                          text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)


def test_the_command_line_runs_stores_and_sweeps_without_any_extra(tmp_path):
    assert hidden_cli(tmp_path, "--help").returncode == 0
    run = hidden_cli(tmp_path, "run", "--mode", "dynamic_no_bins", "--num-requests", "200", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["num_requests"] == 200
    listed = hidden_cli(tmp_path, "runs", "list", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed.stderr
    swept = hidden_cli(tmp_path, "sweep", "--mode", "static_fifo", "--vary", "rate=1,2", "--num-requests", "100",
                       "--workers", "1", "--no-store")
    assert swept.returncode == 0, swept.stderr


@pytest.mark.parametrize("args, extra", [
    (["app"], "web"),
    (["sweep", "--vary", "rate=1,2", "--num-requests", "100", "--no-store", "--cluster", "local"], "dask"),
    (["runs", "list", "--db", "postgresql://u@db.invalid/x"], "postgres"),
    (["calibrate", "--model", "tiny", "--out", "grid.csv"], "calibrate"),
])
def test_each_extra_missing_from_the_command_line_is_one_line(tmp_path, args, extra):
    res = hidden_cli(tmp_path, *args)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert f"batchlab[{extra}]" in lines[0] and f"pip install 'batchlab[{extra}]'" in lines[0], lines[0]


# -- a real install without extras ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_base_install_gives_a_working_cli_and_no_extra(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "*.egg-info", "build",
                                                             "__pycache__", ".pytest_cache", ".hypothesis"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bindir = venv / "bin"
    subprocess.run([bindir / "python", "-m", "pip", "install", "-q", str(src)], check=True, timeout=1100)
    listed = subprocess.run([bindir / "python", "-m", "pip", "list", "--format", "json"], check=True,
                            capture_output=True, text=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"numpy", "numba", "sqlalchemy", "click"} <= installed
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        if extra not in ("all", "dev"):
            assert not installed & {canonical(r) for r in requirements}, extra
    env = {**os.environ, "BATCHLAB_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)

    def batchlab(*args):
        return subprocess.run([bindir / "batchlab", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600)

    shown = batchlab("--help")
    assert shown.returncode == 0 and "Commands:" in shown.stdout, shown.stderr
    run = batchlab("run", "--num-requests", "300", "--json")  # the default mode: the compiled continuous engine
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["num_requests"] == 300
    app = batchlab("app")
    assert app.returncode == 1 and "pip install 'batchlab[web]'" in app.stderr, app.stderr
    # one namespace: nothing of a generic name at the top level, the version and python -m batchlab
    probe = ("import importlib.util, json, batchlab; print(json.dumps([batchlab.__version__, "
             "[m for m in ('core', 'store', 'workloads', 'calibration', 'webapp', 'cli') "
             "if importlib.util.find_spec(m)]]))")
    version, generic = json.loads(subprocess.run([bindir / "python", "-c", probe], cwd=tmp_path, env=env, check=True,
                                                 capture_output=True, text=True).stdout)
    assert version == PYPROJECT["project"]["version"] and generic == []
    as_module = subprocess.run([bindir / "python", "-m", "batchlab", "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert as_module.returncode == 0 and "Commands:" in as_module.stdout
