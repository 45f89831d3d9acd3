"""A first continuous run says it compiles the engine before it does, and its time leaves the compile out
(core.continuous_engine.compiling / ensure_compiled / compile_watch; the CLI, the web job, the page)."""
from __future__ import annotations

import time

import pytest

from batchlab.core import continuous_engine as ce
from batchlab.core.config import SimConfig
from batchlab.core.continuous_kernel import simulate as kernel
from batchlab.workloads.spec import WorkloadSpec

COMPILE_S = 1000.0  # what the fake compile adds to the clock: far above any tiny run's own time


@pytest.fixture
def force_compile(monkeypatch):
    """``compiling()`` says True until the (fake) compile ran; the compile moves ``time.perf_counter``
    on by COMPILE_S. Returns the list of events (``"compile"``, then whatever the test adds)."""
    events: list[str] = []
    offset = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    monkeypatch.setattr(ce, "compiling", lambda: "compile" not in events)

    def fake_warm_up():
        events.append("compile")
        offset[0] += COMPILE_S

    monkeypatch.setattr(ce, "warm_up", fake_warm_up)
    return events


# -------------------------------------------------------------- the check --
def test_a_process_that_ran_the_kernel_does_not_compile_again():
    ce.warm_up()  # loaded (conftest compiled it)
    assert kernel.signatures and not ce.compiling()


def test_the_disk_cache_counts_only_for_the_current_source_and_this_machine(monkeypatch):
    assert ce._cached(kernel)  # conftest's compile left it on disk
    cache_file = kernel._cache._cache_file
    monkeypatch.setattr(cache_file, "_source_stamp", (0.0, 0))  # the source changed since
    assert not ce._cached(kernel)
    monkeypatch.undo()
    codegen = kernel.targetctx.codegen()
    other = type("Codegen", (), {"magic_tuple": lambda self: ("another", "cpu", "")})()
    monkeypatch.setattr(type(kernel.targetctx), "codegen", lambda self: other)
    assert not ce._cached(kernel) and codegen.magic_tuple() != other.magic_tuple()


def test_a_dispatcher_without_a_disk_cache_reads_as_needing_a_compile():
    class NoCache:
        _cache = object()  # numba's NullCache has no index
        targetctx = kernel.targetctx

    assert ce._cached(NoCache()) is False


# ----------------------------------------------------------- the compile --
def test_ensure_compiled_says_so_before_it_compiles_and_counts_the_seconds(force_compile):
    events = force_compile
    with ce.compile_watch(lambda text: events.append(text)) as watch:
        seconds = ce.ensure_compiled()
    assert events[:2] == [ce.COMPILE_NOTICE, "compile"]
    assert events[2] == ce.compiled_line(seconds) and events[2].startswith("compiled the continuous engine in")
    assert seconds >= COMPILE_S and watch.seconds == seconds


def test_ensure_compiled_does_nothing_when_no_compile_is_needed(monkeypatch):
    said = []
    monkeypatch.setattr(ce, "compiling", lambda: False)
    monkeypatch.setattr(ce, "warm_up", lambda: pytest.fail("compiled though nothing needed it"))
    assert ce.ensure_compiled(said.append) == 0.0 and said == []


def test_a_process_that_waited_for_another_compile_does_not_compile_again(monkeypatch):
    """Checked again under the lock: another process compiled it meanwhile."""
    answers = iter([True, False])  # before the lock: needed; under it: another process has done it
    said = []
    monkeypatch.setattr(ce, "compiling", lambda: next(answers))
    monkeypatch.setattr(ce, "warm_up", lambda: pytest.fail("compiled twice"))
    ce.ensure_compiled(said.append)
    assert said[0] == ce.COMPILE_NOTICE and said[1].startswith("compiled")


def test_the_lock_file_lives_in_numbas_cache_folder():
    with ce._compile_lock():
        pass
    from pathlib import Path

    assert (Path(kernel._cache.cache_path) / ce.LOCK_FILE).exists()


def test_a_run_leaves_the_compile_out_of_its_time(force_compile):
    from batchlab.core.simulation import simulate
    from batchlab.workloads import build_workload

    cfg = SimConfig(mode="continuous_static", gpus=1)
    with ce.compile_watch() as watch:
        result = simulate(cfg, build_workload(WorkloadSpec(num_requests=50)))
    assert force_compile == ["compile"] and watch.seconds >= COMPILE_S
    assert 0 <= result.meta["wall_s"] < COMPILE_S


def test_a_batch_run_never_compiles(force_compile):
    from batchlab.core.simulation import simulate
    from batchlab.workloads import build_workload

    simulate(SimConfig(mode="static_fifo", gpus=1), build_workload(WorkloadSpec(num_requests=50)))
    assert force_compile == []


# ------------------------------------------------------------------- CLI --
def test_cli_run_prints_the_notice_before_the_simulation_starts(force_compile, monkeypatch, capsys):
    import batchlab.core.simulation as simulation
    from batchlab.cli import cli

    engine = simulation.run_continuous_engine
    before_run = []

    def watched(*args, **kwargs):
        before_run.append(capsys.readouterr().err)  # what stderr held when the simulation started
        return engine(*args, **kwargs)

    monkeypatch.setattr(simulation, "run_continuous_engine", watched)
    with pytest.raises(SystemExit) as end:
        cli(["run", "--mode", "continuous_dynamic", "--num-requests", "50", "--no-store"], prog_name="batchlab")
    assert end.value.code == 0
    err = before_run[0]
    assert err.index(ce.COMPILE_NOTICE) < err.index("compiled the continuous engine in")
    assert ce.COMPILE_NOTICE not in capsys.readouterr().err  # said once


def test_cli_sweep_compiles_first_only_for_continuous_modes(force_compile, monkeypatch):
    import batchlab.cli as cli_module

    said = []
    monkeypatch.setattr(cli_module, "_compile_echo", said.append)
    cli_module._compile_before({"kind": "grid", "config": {"mode": "static_fifo"}, "vary": {"gpus": [1, 2]}}, None)
    assert said == [] and force_compile == []
    cli_module._compile_before({"kind": "grid", "config": {"mode": "static_fifo"},
                                "vary": {"mode": ["static_fifo", "continuous_static"]}}, "tcp://remote:8786")
    assert said == []  # a cluster's workers compile on their own machines
    cli_module._compile_before({"kind": "grid", "config": {"mode": "static_fifo"},
                                "vary": {"mode": ["static_fifo", "continuous_static"]}}, None)
    assert said[0] == ce.COMPILE_NOTICE and force_compile == ["compile"]


# ------------------------------------------------------------------- web --
def test_web_job_says_it_compiles_and_its_seconds_leave_the_compile_out(force_compile, tmp_path, monkeypatch):
    from batchlab.store import job_runs, open_store

    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path / "home"))
    cfg = SimConfig(mode="continuous_static", gpus=1)
    plan = job_runs.runs_plan([(cfg, WorkloadSpec(num_requests=50), False)])
    phases = []
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        outcomes = job_runs.run_runs(plan, store, None, lambda frac, phase, hashes: phases.append(phase))
    compiling = phases.index(job_runs.COMPILING)
    assert phases[compiling - 1] == "Simulating continuous_static… 0%"  # the run's own first report, then this
    assert phases[compiling + 1:] and job_runs.COMPILING not in phases[compiling + 1:]  # the run's progress next
    (outcome,) = outcomes
    assert outcome["compile_s"] >= COMPILE_S and 0 <= outcome["seconds"] < COMPILE_S


def test_a_starting_job_says_the_engine_compiles_while_it_does(monkeypatch):
    from batchlab.store.job_runs import COMPILING
    from batchlab.webapp import pageutil

    monkeypatch.setattr(pageutil, "_compiled", [])
    monkeypatch.setattr(ce, "compiling", lambda: True)
    assert pageutil.progress_of({"status": "starting"}) == (0.0, COMPILING)
    running = {"status": "running", "progress": {"fraction": 0.5, "phase": "Simulating x… 50%"}}
    assert pageutil.progress_of(running) == (0.5, "Simulating x… 50%")
    monkeypatch.setattr(ce, "compiling", lambda: False)
    assert pageutil.progress_of({"status": "starting"}) == (0.0, "Starting…")
    monkeypatch.setattr(ce, "compiling", lambda: pytest.fail("read the cache again once it was compiled"))
    assert pageutil.progress_of({"status": "starting"}) == (0.0, "Starting…")


def test_the_result_note_counts_the_compile_apart():
    from batchlab.webapp import pageutil
    from batchlab.webapp.services import Outcome

    assert pageutil._compile_part([Outcome("h", "continuous_static", False, 2.0)]) == ""
    text = pageutil._compile_part([Outcome("h", "continuous_static", False, 2.0, None, 41.0)])
    assert text.startswith(", plus ") and "compiling the continuous engine" in text


# ------------------------------------------------ a fresh install, at once --
def test_never_compiled_reads_file_names_only(tmp_path, monkeypatch):
    """No index of the kernel next to the sources nor in numba's user-wide folder: a fresh install."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sources = tmp_path / "core"
    (sources / "__pycache__").mkdir(parents=True)
    monkeypatch.setattr(ce, "__file__", str(sources / "continuous_engine.py"))
    assert ce.never_compiled()
    user_wide = tmp_path / "xdg" / "numba" / "somewhere"
    user_wide.mkdir(parents=True)
    (user_wide / "continuous_kernel.simulate-140.py311.nbi").write_bytes(b"")
    assert not ce.never_compiled()                      # numba's fallback folder holds one
    (user_wide / "continuous_kernel.simulate-140.py311.nbi").unlink()
    (sources / "__pycache__" / "continuous_kernel.simulate-140.py311.nbi").write_bytes(b"")
    assert not ce.never_compiled()                      # next to the sources
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert not ce.never_compiled()                      # numba's own layout: left to compiling()


def test_a_fresh_install_says_it_compiles_before_the_workload_is_built(force_compile, monkeypatch, capsys):
    """The notice comes before anything slow (the workload, numba's import), and only once."""
    import batchlab.workloads as workloads
    from batchlab.cli import cli

    monkeypatch.setattr(ce, "never_compiled", lambda: True)
    build = workloads.build_workload
    at_build = []

    def watched(spec):
        at_build.append(capsys.readouterr().err)
        return build(spec)

    monkeypatch.setattr(workloads, "build_workload", watched)
    with pytest.raises(SystemExit) as end:
        cli(["run", "--mode", "continuous_static", "--num-requests", "50", "--no-store"], prog_name="batchlab")
    assert end.value.code == 0
    assert ce.COMPILE_NOTICE in at_build[0]
    rest = capsys.readouterr().err
    assert ce.COMPILE_NOTICE not in rest and "compiled the continuous engine in" in rest


def test_an_early_notice_with_nothing_to_compile_says_so(monkeypatch, capsys):
    from batchlab.cli import cli

    monkeypatch.setattr(ce, "never_compiled", lambda: True)
    monkeypatch.setattr(ce, "compiling", lambda: False)
    with pytest.raises(SystemExit):
        cli(["run", "--mode", "continuous_static", "--num-requests", "50", "--no-store"], prog_name="batchlab")
    err = capsys.readouterr().err
    assert err.index(ce.COMPILE_NOTICE) < err.index("no compile was needed after all")


def test_a_batch_mode_run_gives_no_early_notice(monkeypatch, capsys):
    from batchlab.cli import cli

    monkeypatch.setattr(ce, "never_compiled", lambda: True)
    with pytest.raises(SystemExit):
        cli(["run", "--mode", "static_fifo", "--num-requests", "50", "--no-store"], prog_name="batchlab")
    assert ce.COMPILE_NOTICE not in capsys.readouterr().err


# ------------------------------------------- a cache from before the namespace --
def test_stale_kernel_indexes_are_dropped_and_nothing_else(tmp_path):
    for name in ("continuous_kernel.simulate-140.py311.nbi", "continuous_kernel.simulate-140.py311.1.nbc",
                 "latency_kernel.decode_time-220.py311.nbi", "metrics.summary-10.py311.nbi", "compile.lock"):
        (tmp_path / name).write_bytes(b"")
    assert ce.drop_stale_indexes(str(tmp_path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compile.lock", "metrics.summary-10.py311.nbi"]
    assert ce.drop_stale_indexes(str(tmp_path / "missing")) == 0


def test_an_index_naming_modules_gone_reads_as_needing_a_compile_and_is_dropped(monkeypatch):
    """A checkout upgraded in place keeps numba's index of the old names (core.*): unpickling it raises
    ModuleNotFoundError, which numba would let through instead of compiling."""
    dropped = []

    class Stale:
        cache_path = "/nonexistent/numba-cache"

        class _cache_file:
            @staticmethod
            def _load_index():
                raise ModuleNotFoundError("No module named 'core'")

        def _index_key(self, *args):
            raise AssertionError("no key is compared when the index cannot be read")

    class Dispatcher:
        _cache = Stale()
        targetctx = type("Ctx", (), {"codegen": staticmethod(lambda: None)})()

    monkeypatch.setattr(ce, "drop_stale_indexes", dropped.append)
    assert ce._cached(Dispatcher()) is False
    assert dropped == ["/nonexistent/numba-cache"]


@pytest.mark.parametrize("dropped, ends", [(3, "compiled"), (0, "raised")])
def test_a_compile_that_meets_a_stale_index_drops_the_indexes_and_compiles_afresh(monkeypatch, dropped, ends):
    calls = []

    def warm_up():
        calls.append("warm_up")
        if len(calls) == 1:
            raise ModuleNotFoundError("No module named 'core'")

    monkeypatch.setattr(ce, "warm_up", warm_up)
    monkeypatch.setattr(ce, "drop_stale_indexes", lambda folder: dropped)
    if ends == "raised":   # nothing stale to drop: the error is not ours to hide
        with pytest.raises(ModuleNotFoundError):
            ce._compile_afresh_if_stale()
        assert calls == ["warm_up"]
    else:
        ce._compile_afresh_if_stale()
        assert calls == ["warm_up", "warm_up"]
