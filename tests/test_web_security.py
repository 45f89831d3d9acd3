"""Security: a web user cannot make the server open a file or connect anywhere; Dask addresses are the
operator's and checked; no task carries a password; TLS clusters work through dask's security settings;
binding the app beyond localhost takes --expose; user text never becomes markup; messages stay short."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from batchlab.cli import cli
from batchlab.core import SimConfig
from batchlab.core.sweep import SweepError
from batchlab.workloads import WorkloadSpec, bundled_traces

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "webapp" / "app.py")
BUNDLED = "BurstGPT_1_first400"
BUNDLED_FILE = bundled_traces()[BUNDLED]
GOOD_CSV = BUNDLED_FILE.read_bytes()
HOSTILE_TRACES = ["/etc/passwd", "/proc/self/environ", "../../../../etc/passwd", "workloads/data/BurstGPT_1_first400.csv",
                  str(BUNDLED_FILE), "~/.bashrc", "other.csv"]
HOSTILE_GRIDS = ["grid:/etc/passwd", "grid:../../etc/passwd", "grid:calibration/data/qwen3-4b_sglang_grid.csv",
                 "grid:x.csv", "grid:~/g"]


def file_contents() -> list[str]:
    """Pieces of the files a hostile value names, that no message may quote."""
    pieces = [line for line in Path("/etc/passwd").read_text().splitlines() if line][:3]
    pieces += [e for e in Path("/proc/self/environ").read_bytes().decode(errors="replace").split("\0") if len(e) > 12]
    return [p[:20] for p in pieces] + ["Timestamp,Model", "CANARY-ROW"]


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", str(text))


def assert_clean_one_line(message: str, setting: str) -> None:
    """A refusal: one line, names the setting, quotes no file content, stays short."""
    text = plain(message)
    assert f"{setting}:" in text and "\n" not in text and len(text) < 400, text
    for piece in file_contents():
        assert piece not in text, (piece, text)


@pytest.fixture
def reads(monkeypatch):
    """Every path the server was asked to read as a trace or a grid file (bundled files included)."""
    from batchlab.calibration import resolve
    from batchlab.workloads import build

    seen: list[str] = []
    real_trace, real_grid = build.resolve_trace, resolve.parse_grid

    def trace(name):
        seen.append(str(name))
        return real_trace(name)

    def grid(data, *args, **kwargs):
        seen.append(str(data))
        return real_grid(data, *args, **kwargs)

    monkeypatch.setattr(build, "resolve_trace", trace)
    monkeypatch.setattr(resolve, "parse_grid", grid)
    return seen


def no_hostile_read(seen: list[str]) -> None:
    allowed = {BUNDLED, f"{BUNDLED}.csv"} | {str(p) for p in bundled_traces().values()}
    assert [s for s in seen if s not in allowed and "/uploads/" not in s] == []


# ------------------------------------------------------------------ policy --
def test_the_policy_allows_bundled_traces_session_uploads_and_grid_names_only():
    from batchlab.webapp import guard

    assert guard.trace_problem(BUNDLED) is None and guard.trace_problem(f"{BUNDLED}.csv") is None
    assert guard.trace_problem("/data/uploads/ab12-t.csv", {"/data/uploads/ab12-t.csv"}) is None
    for value in HOSTILE_TRACES + ["/data/uploads/ab12-t.csv"]:
        assert_clean_one_line(guard.trace_problem(value), "trace")
    assert guard.latency_problem("parametric") is None and guard.latency_problem("grid:qwen3-4b-sglang") is None
    assert guard.latency_problem("grid:my-stored.v2") is None
    for value in HOSTILE_GRIDS:
        assert_clean_one_line(guard.latency_problem(value), "latency")
    with pytest.raises(Exception, match="^trace: ") as exc:
        guard.check(SimConfig(), WorkloadSpec(workload="burstgpt", trace="/etc/passwd"))
    assert_clean_one_line(str(exc.value), "trace")


@given(st.text(max_size=300))
def test_a_refusal_quotes_at_most_a_short_prefix_of_any_value(value):
    from batchlab.webapp import guard

    for problem in (guard.trace_problem(value), guard.latency_problem("grid:" + value),
                    guard.link_trace_problem(value)):
        if problem is not None:
            assert "\n" not in problem and len(problem) < 260
    assert (guard.trace_problem(value) is None) == (value.removesuffix(".csv") in bundled_traces())


def test_the_web_resolves_grids_by_name_and_never_reads_a_file(reads):
    from batchlab.calibration import GridError
    from batchlab.webapp import services

    for value in HOSTILE_GRIDS:
        with pytest.raises(GridError) as exc:
            services.resolve_grid(value)
        assert_clean_one_line(str(exc.value), "latency")
    assert reads == []
    assert services.resolve_grid("grid:qwen3-4b-sglang").name == "qwen3-4b-sglang"


def test_loader_errors_quote_only_a_short_excerpt_of_a_file(tmp_path):
    from batchlab.calibration import GridError, parse_grid
    from batchlab.workloads import WorkloadError
    from batchlab.workloads.burstgpt import load_burstgpt

    secret = "SECRET-" + "x" * 5000
    bad = tmp_path / "t.csv"
    bad.write_text(f"{secret},{secret}2\n1,2\n")
    with pytest.raises(WorkloadError) as exc:
        load_burstgpt(bad)
    assert "column not found" in str(exc.value) and len(str(exc.value)) < 400
    with pytest.raises(GridError) as exc:
        parse_grid(f"batch_size,context_len,prefill_s,decode_step_s,{secret}\n1,1,1,1,1\n".encode())
    assert "unknown column" in str(exc.value) and len(str(exc.value)) < 300
    with pytest.raises(GridError) as exc:
        parse_grid(f"batch_size,context_len,prefill_s,decode_step_s\n1,1,{secret},1\n".encode())
    assert "not a number" in str(exc.value) and len(str(exc.value)) < 200


# --------------------------------------------------------------------- web --
def page(name: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(params)
    at.run()
    if name:
        at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, label: str) -> AppTest:
    [b for b in at.button if b.label == label][0].click().run()
    assert not at.exception, at.exception
    return at


def store():
    from batchlab.webapp import services

    return services.get_store()


@pytest.fixture
def launched(monkeypatch):
    """The jobs the web stored and would hand to a runner, as the runner's orders (none really run)."""
    from batchlab.store.sweep_jobs import open_plan
    from batchlab.webapp import jobs

    orders: list[dict] = []

    def launch(plan, cluster_address=None, workers=None, again=False):
        job_id = open_plan(store(), plan)
        orders.append({"sweep": job_id, "cluster": cluster_address, "workers": workers})
        return job_id

    monkeypatch.setattr(jobs, "launch", launch)
    return orders


def hostile_settings(tmp_path) -> list[tuple[str, str]]:
    """(setting, a line naming a file) pairs: every kind of path, and a real CSV outside the bundled set."""
    outside = tmp_path / "outside.csv"
    outside.write_bytes(GOOD_CSV + b"1,CANARY-ROW,1,1,2,Conversation log\n")
    traces = HOSTILE_TRACES + [str(outside)]
    return [("trace", f"trace={t}") for t in traces] + [("latency", f"latency={g}") for g in HOSTILE_GRIDS]


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("box,submit", [("cap.settings", "Find capacity"), ("grid.settings", "Run sweep"),
                                        ("plan.settings", "Plan")])
def test_every_settings_box_refuses_file_names(tmp_path, reads, launched, box, submit):
    at = page("plan" if box.startswith("plan") else "sweeps")
    for setting, line in hostile_settings(tmp_path):
        at.text_area(key=box).set_value(f"workload=burstgpt\n{line}")
        click(at, submit)
        assert at.error, line
        assert_clean_one_line(at.error[0].value, setting)
    no_hostile_read(reads)
    assert launched == [] and store().list_sweeps() == []


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_every_vary_value_is_refused_when_it_names_a_file(tmp_path, reads, launched):
    at = page("sweeps")
    at.text_area(key="grid.settings").set_value("workload=burstgpt\nnum_requests=50")
    for setting, line in hostile_settings(tmp_path):
        name, _, value = line.partition("=")
        default = BUNDLED if name == "trace" else "parametric"
        at.text_area(key="grid.vary").set_value(f"{name}={default},{value}")
        click(at, "Run sweep")
        assert at.error, line
        assert_clean_one_line(at.error[0].value, setting)
    no_hostile_read(reads)
    assert launched == [] and store().list_sweeps() == []


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,value", [("trace", t) for t in HOSTILE_TRACES] + [("latency", g) for g in HOSTILE_GRIDS])
def test_links_that_name_a_file_are_refused_and_the_default_used(reads, name, value):
    at = page(workload="burstgpt", **{name: value})
    warnings = [w.value for w in at.warning if plain(w.value).startswith("Link: ")]
    if name == "trace" and "/" not in value and not value.startswith(("~", ".")):
        assert warnings == [] and at.radio(key="source").value == "upload"  # a file name: the page asks for it
        return
    assert len(warnings) == 1
    assert_clean_one_line(warnings[0].removeprefix("Link: "), name)
    click(at, "Run simulation")
    run = store().get_run(at.query_params["run"])
    assert run.config.latency == "parametric" and run.workload["spec"]["trace"] == BUNDLED
    no_hostile_read(reads)


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_a_comparison_link_naming_a_file_for_one_run_is_refused(reads):
    at = page("compare", compare="a" * 64 + "," + "b" * 64, modes="static_fifo,static_fifo", workload="burstgpt",
              trace=[BUNDLED, "/etc/passwd"], latency=["parametric", "grid:/etc/passwd"])
    problems = [plain(w.value) for w in at.warning if plain(w.value).startswith("Link: ")]
    assert any("trace:" in p for p in problems) and any("latency:" in p for p in problems)
    for p in problems:
        assert "\n" not in p and "root:x" not in p
    no_hostile_read(reads)


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_the_run_form_refuses_a_grid_path_that_reached_it(reads, monkeypatch):
    from batchlab.webapp import state

    monkeypatch.setattr(state, "refused", lambda f, value: None)  # as if a link got past the link check
    at = page(latency="grid:/etc/passwd")
    assert at.selectbox(key="sim.latency").value == "grid:/etc/passwd"
    click(at, "Run simulation")
    assert_clean_one_line(at.error[0].value.split(": ", 1)[1], "latency")
    assert "the web takes parametric or grid:NAME" in plain(at.error[0].value)  # the form's check, first
    assert reads == [] and store().list_runs() == []


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_a_plan_may_name_the_upload_this_session_saved_and_no_other(reads, launched):
    from batchlab.webapp.plan import save_upload

    at = page("plan")
    at.radio(key="plan.source").set_value("upload").run()
    at.file_uploader(key="plan.upload").set_value(("mine.csv", GOOD_CSV, "text/csv")).run()
    at.multiselect(key="plan.modes").set_value(["continuous_dynamic"])
    click(at, "Plan")
    assert not at.error and len(launched) == 1
    plan = store().get_sweep(launched[0]["sweep"]).params["plan"]
    saved = plan["spec"]["trace"]
    assert "/uploads/" in saved and Path(saved).read_bytes() == GOOD_CSV
    # a user who types the saved path in another session (or any other upload's path) is refused
    other = save_upload("theirs.csv", GOOD_CSV + b"1,x,1,1,2,Conversation log\n")  # saved outside any session
    fresh = page("plan")
    for path in (saved, str(other)):
        fresh.text_area(key="plan.settings").set_value(f"workload=burstgpt\ntrace={path}")
        click(fresh, "Plan")
        assert_clean_one_line(fresh.error[0].value, "trace")
    assert len(launched) == 1


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_resume_applies_the_policy_to_a_stored_plan(reads, launched):
    from batchlab.store.sweep_jobs import grid_plan, open_plan

    plan = grid_plan(SimConfig(), WorkloadSpec(workload="burstgpt", trace="/etc/passwd", num_requests=50),
                     {"rate": [1.0]})
    sweep_id = open_plan(store(), plan, name="made on the command line")
    store().update_sweep(sweep_id, status="interrupted")
    at = page("sweeps", sweep=store().get_sweep(sweep_id).key)
    click(at, "Resume")
    assert_clean_one_line(at.error[0].value.split(": ", 1)[1], "trace")
    assert launched == [] and reads == []


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_pages_offer_only_the_clusters_the_operator_configured(monkeypatch, launched):
    from batchlab.webapp import clusters

    monkeypatch.delenv(clusters.ENV, raising=False)
    at = page("sweeps")
    assert not [t for t in at.text_input if "cluster" in (t.key or "") or "cluster" in t.label.lower()]
    assert at.selectbox(key="cap.cluster").options == [clusters.LOCAL_POOL]
    monkeypatch.setenv(clusters.ENV, "farm=tls://10.1.2.3:8786 cpu=tcp://sched:8786")
    at = page("sweeps")
    assert at.selectbox(key="cap.cluster").options == [clusters.LOCAL_POOL, "farm", "cpu"]
    at.selectbox(key="cap.cluster").set_value("farm")
    at.multiselect(key="cap.modes").set_value(["static_fifo"])
    click(at, "Find capacity")
    assert launched and launched[-1]["cluster"] == "tls://10.1.2.3:8786"
    plan_page = page("plan")
    assert not [t for t in plan_page.text_input if "cluster" in (t.key or "")]
    assert plan_page.selectbox(key="plan.cluster").options == [clusters.LOCAL_POOL, "farm", "cpu"]
    with pytest.raises(SweepError, match="^cluster: "):
        clusters.address("tcp://evil:1")  # a forged choice is never an address


def test_cluster_settings_are_checked():
    from batchlab.webapp import clusters

    assert clusters.parse(["a=local", "b=tls://h:1"]) == {"a": "local", "b": "tls://h:1"}
    assert clusters.parse(clusters.to_env({"x": "tcp://h:2"}).split()) == {"x": "tcp://h:2"}
    for entries in (["a"], ["=tcp://h:1"], ["a=tcp://h"], ["a=inproc://x"], ["a=local", "a=local"], ["a b=local"]):
        with pytest.raises(SweepError, match="--cluster"):
            clusters.parse(entries)


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_markdown_in_sweep_and_plan_names_is_text():
    from batchlab.core.plan_options import PlanOptions
    from batchlab.store.sweep_jobs import gpu_plan, grid_plan, open_plan

    name = "[x](https://evil.example)"
    sid = open_plan(store(), grid_plan(SimConfig(), WorkloadSpec(num_requests=50), {"rate": [1.0]}), name=name)
    pid = open_plan(store(), gpu_plan(SimConfig(), WorkloadSpec(num_requests=50), PlanOptions()), name=name)
    for at in (page("sweeps", sweep=store().get_sweep(sid).key), page("plan", plan=store().get_sweep(pid).key)):
        shown = " ".join(str(e.value) for e in [*at.subheader, *at.caption, *at.markdown])
        assert "](https://evil" not in shown and r"\[x\]\(https" in shown


@pytest.mark.usefixtures("isolated_app")
@pytest.mark.timeout(300)
def test_a_huge_value_gives_a_short_message():
    from batchlab.webapp.fmt import MAX_SHOWN

    huge = "A" * 100_000
    at = page("sweeps")
    at.text_area(key="cap.settings").set_value(f"mode={huge}")
    click(at, "Find capacity")
    assert at.error and all(len(e.value) < MAX_SHOWN + 100 for e in at.error)
    at = page(gpus=huge, mode=huge)
    assert at.warning and all(len(w.value) < MAX_SHOWN + 100 for w in at.warning)
    at = page("compare", compare="a" * 64 + "," + "b" * 64, modes="static_fifo,static_fifo", gpus=["1", huge])
    assert at.warning and all(len(w.value) < MAX_SHOWN + 100 for w in at.warning)


# ------------------------------------------------------------------- clusters --
@pytest.mark.parametrize("address", ["tcp://", "inproc://x", "ucx://h:8786", "tcp://h", "tcp://h:0", "tcp://h:70000",
                                     "tls://:8786", "http://h:1", "nowhere", "tcp://h:1/path"])
def test_bad_cluster_addresses_are_one_line_errors_before_anything_is_stored(tmp_path, address):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    for cmd in (["capacity", "--num-requests", "50"], ["sweep", "--vary", "rate=1,2"]):
        r = CliRunner().invoke(cli, [*cmd, "--db", db, "--cluster", address])
        assert r.exit_code == 1 and r.output.startswith("Error: --cluster") and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "store.db").exists()


def test_an_unreachable_cluster_is_a_one_line_error(monkeypatch):
    import socket

    from batchlab.core import executors

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(SweepError, match=rf"^--cluster tcp://127.0.0.1:{port}: cannot connect \(") as exc:
        with executors.open_executor(f"tcp://127.0.0.1:{port}"):
            pass
    assert "\n" not in str(exc.value)


def test_tls_cluster_through_dasks_security_settings(tmp_path):
    pytest.importorskip("cryptography")
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    from batchlab.core.executors import open_executor
    from batchlab.store import open_store
    from batchlab.store.sweep_jobs import grid_plan, open_plan, run_plan

    sec = Security.temporary()
    files = {}
    for key, text in (("ca-file", sec.tls_ca_file), ("client.cert", sec.tls_client_cert),
                      ("client.key", sec.tls_client_key)):
        files[f"distributed.comm.tls.{key}"] = str(tmp_path / f"{key}.pem")
        Path(files[f"distributed.comm.tls.{key}"]).write_text(text)
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    plan = grid_plan(SimConfig(mode="static_fifo"), WorkloadSpec(num_requests=200), {"rate": [1.0, 2.0]})
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tls://", security=sec,
                      dashboard_address=None) as lc:
        address = lc.scheduler_address
        assert address.startswith("tls://")
        with pytest.raises(SweepError, match="TLS needs a CA file"):
            with open_executor(address):
                pass
        with dask.config.set(files), open_executor(address) as (executor, n):
            out = run_plan(plan, executor, n, s, open_plan(s, plan))
    assert len(out.members) == 2 and not out.failed and len(s.list_runs(status="done")) == 2
    s.close()


# ------------------------------------------------------------------- passwords --
PASSWORD = "s3cret-Pa55"


def with_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_no_task_carries_the_password_and_workers_find_it_in_their_environment(pg_url, monkeypatch):
    from batchlab.store import open_store
    from batchlab.store.sweep_jobs import StoreJob, grid_plan, open_plan, run_plan, worker_env

    secret_url = with_password(pg_url)  # the test server trusts local connections: any password opens it
    s = open_store(secret_url)
    job = StoreJob.for_store(s, 7)
    blob = pickle.dumps(job)
    assert PASSWORD.encode() not in blob and PASSWORD not in repr(job) and job.secret
    copy = pickle.loads(blob)
    monkeypatch.delenv("BATCHLAB_DB_URL", raising=False)
    with pytest.raises(Exception, match="no store configured for .*BATCHLAB_DB_URL"):
        copy.store_url()
    monkeypatch.setenv("BATCHLAB_DB_URL", with_password(pg_url).replace("postgresql://", "postgres://"))
    assert PASSWORD in copy.store_url()
    monkeypatch.setenv("BATCHLAB_DB_URL", "postgresql://other@127.0.0.1:5432/elsewhere")
    with pytest.raises(Exception, match="no store configured"):
        copy.store_url()
    monkeypatch.delenv("BATCHLAB_DB_URL")
    # real sweeps on worker processes: with the store in their environment, and without it
    from batchlab.core.executors import open_executor

    plan = grid_plan(SimConfig(mode="static_fifo"), WorkloadSpec(num_requests=100), {"rate": [1.0, 2.0]})
    with open_executor(None, 1, worker_env(s)) as (executor, n):
        out = run_plan(plan, executor, n, s, open_plan(s, plan))
    assert not out.failed and len(s.list_runs(status="done")) == 2
    other = grid_plan(SimConfig(mode="static_fifo"), WorkloadSpec(num_requests=100), {"rate": [3.0]})
    with open_executor(None, 1) as (executor, n):
        out = run_plan(other, executor, n, s, open_plan(s, other))
    assert len(out.failed) == 1 and "no store configured" in out.failed[0].error
    assert PASSWORD not in out.failed[0].error
    s.close()


def test_a_store_without_a_password_needs_no_worker_configuration(tmp_path):
    from batchlab.store import open_store
    from batchlab.store.sweep_jobs import StoreJob

    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    copy = pickle.loads(pickle.dumps(StoreJob.for_store(s)))
    assert not copy.secret and copy.store_url() == f"sqlite:///{tmp_path / 'store.db'}"
    s.close()


# --------------------------------------------------------------------- the app --
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_flag_and_prints_nothing(host):
    from batchlab.webapp.launch import preflight

    assert preflight(host, 8501) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "myhost.example"])
def test_any_other_address_needs_expose_and_then_says_what_it_exposes(host, monkeypatch):
    from batchlab.webapp.launch import LaunchError, preflight

    with pytest.raises(LaunchError, match=rf"^--host {re.escape(host)}: .*--expose"):
        preflight(host, 8501)
    url = with_password("postgresql://batch@db.internal/runs")
    lines = preflight(host, 8501, expose=True, clusters={"farm": "tls://sched:8786"}, db_url=url)
    text = "\n".join(lines)
    assert PASSWORD not in text and "postgresql+psycopg://batch:***@db.internal/runs" in text
    for what in ("run simulations", "delete every stored run", "upload calibration grids", "farm (tls://sched:8786)"):
        assert what in text
    assert "none (the local process pool only)" in "\n".join(preflight(host, 1, expose=True))


@pytest.mark.parametrize("args,fragment", [
    (["--port", "-1"], "--port: must be from 1 to 65535"), (["--port", "70000"], "--port: must be from 1 to 65535"),
    (["--port", "0"], "--port: must be from 1 to 65535"), (["--host", "0.0.0.0"], "add --expose"),
    (["--cluster", "farm=tcp://h"], "--cluster tcp://h: the port"), (["--cluster", "farm"], "expected NAME=ADDRESS"),
])
def test_app_refuses_bad_bindings_in_one_line(args, fragment, monkeypatch):
    from batchlab.webapp import launch

    monkeypatch.setattr(launch, "serve", lambda *a, **k: pytest.fail("the app must not start"))
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: pytest.fail("the app must not start"))
    r = CliRunner().invoke(cli, ["app", *args])
    assert r.exit_code == 1 and fragment in r.output and r.output.count("\n") == 1, r.output


def test_app_exposed_prints_the_banner_first_and_passes_the_clusters(monkeypatch):
    from batchlab.webapp import clusters, launch

    seen = {}
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: None)
    monkeypatch.setattr(launch, "serve", lambda cmd, env: seen.update(cmd=cmd, env=env) or 0)
    r = CliRunner().invoke(cli, ["app", "--host", "0.0.0.0", "--expose", "--cluster", "farm=tls://sched:8786"])
    assert r.exit_code == 0, r.output
    assert "exposed on 0.0.0.0:8501" in r.stderr and "farm (tls://sched:8786)" in r.stderr
    assert seen["env"][clusters.ENV] == "farm=tls://sched:8786"
    assert "--server.enableXsrfProtection true" in " ".join(seen["cmd"])


def test_docker_binds_all_interfaces_only_with_expose_and_publishes_on_localhost():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["batchlab", "app", "--host", "0.0.0.0", "--port", "8501", "--expose"]' in dockerfile
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for text in (dockerfile, docs):
        published = re.findall(r"docker run[^\n`]*?-p (\S+)", text)
        assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert (ROOT / "docs" / "security.md").read_text().startswith("# Security model")


def test_a_cli_sweep_on_a_store_with_a_password_runs_on_the_local_pool(pg_url, monkeypatch):
    """``batchlab sweep --db URL-with-password``: the local pool's workers get the URL from their
    environment (never from the task), so every member is stored."""
    from click.testing import CliRunner

    from batchlab.cli import cli
    from batchlab.store import open_store

    monkeypatch.delenv("BATCHLAB_DB_URL", raising=False)
    url = with_password(pg_url)
    result = CliRunner().invoke(cli, ["sweep", "--db", url, "--workers", "1", "--mode", "static_fifo",
                                      "--num-requests", "100", "--vary", "rate=1,2"])
    assert result.exit_code == 0, result.output
    s = open_store(url)
    assert len(s.list_runs(status="done")) == 2 and not s.list_runs(status="failed")
    s.close()


@pytest.mark.parametrize("value", ["/etc/passwd", "../../config.json", "~/.ssh/config.json", "./models"])
def test_a_model_on_a_web_page_is_a_bundled_name_never_a_server_path(value, tmp_path, monkeypatch):
    """The CLI reads a local config.json (--model path); on the web the Run form picks a bundled name (a URL
    naming a path leaves it on auto), every other web entry refuses a path before any file is touched (the
    app marks its process, webapp/app.py), and the catalogue's names work."""
    from pathlib import Path

    touched: list[str] = []
    for name in ("is_file", "is_dir", "read_text", "stat"):
        real = getattr(Path, name)

        def spy(self, *a, _real=real, **k):
            if "catalogue" not in str(self):
                touched.append(str(self))
            return _real(self, *a, **k)

        monkeypatch.setattr(Path, name, spy)
    named = {str(Path(value).expanduser()), str(Path(value).expanduser() / "config.json")}
    at = page(model=value, num_requests="50")   # the Run form: a picker of bundled names
    assert at.selectbox(key="sim.model").value == "auto"
    at = click(at, "Run simulation")
    assert not named & set(touched)
    assert store().get_run(at.query_params["run"]).config.model is None
    from batchlab.core import SimConfig
    from batchlab.core.config import ConfigError

    # the text boxes (Sweeps' base settings, Plan's other settings) and the job runners build a SimConfig
    # in a process the app marked: refused there, before any file is touched
    with pytest.raises(ConfigError, match="never a path on the server"):
        SimConfig(model=value)
    assert not named & set(touched)
    at = click(page(model="llama-3.1-8b", gpu="h100", num_requests="50"), "Run simulation")
    assert store().get_run(at.query_params["run"]).config.model == "llama-3.1-8b"


@pytest.mark.parametrize("workload", ["azure", "splitwise", "vllm-bench", "csv", "trace", "mooncake"])
def test_every_trace_format_is_held_to_the_same_policy(workload):
    """The trace formats added since the policy was written name files the same way: a server path is
    refused whatever the workload says the file holds."""
    from batchlab.webapp import guard

    for value in HOSTILE_TRACES:
        with pytest.raises(Exception, match="^trace: ") as exc:
            guard.check(SimConfig(), WorkloadSpec(workload=workload, trace=value))
        assert_clean_one_line(str(exc.value), "trace")
