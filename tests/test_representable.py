"""No result that cannot be (issue 22, part 3).

Simulated time stays below 2^62 ns (4.61e9 s, 146 years): the continuous engine's 1 ns
clock counts in int64 with 2^62 as its "never". Workloads outside that are refused
before a run, naming the setting; a run whose serving reaches it stops with an error
instead of wrapping around; and a result with a negative latency, a time out of order
or a figure that is not finite is never returned nor stored ``done`` (core.validity).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchlab.cli import cli
from batchlab.core import SimConfig, simulate, simulation
from batchlab.core.config import MODES
from batchlab.core.continuous_engine import run_continuous_engine
from batchlab.core.validity import SimulationError, check_result
from batchlab.workloads import WorkloadError, WorkloadSpec, build_workload, load_trace_bytes
from batchlab.workloads.limits import MAX_TIME_S
from batchlab.workloads.workload import Workload

CONTINUOUS = [m for m in MODES if m.startswith("continuous")]
HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def trace_file(tmp_path, times, name="t.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER] + [f"{t},ChatGPT,100,50,150,Conversation log" for t in times]) + "\n")
    return str(path)


def refused(*args, store=None):
    """``batchlab run ARGS`` fails with one line naming what is wrong; returns that line."""
    flags = ["--db", store] if store else ["--no-store"]
    res = CliRunner().invoke(cli, ["run", *args, *flags])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output, res.output
    return lines[0][len("Error: "):]


def workload(arrival, prompt=100, output=50):
    n = len(arrival)
    return Workload(np.asarray(arrival, dtype=np.float64), np.full(n, prompt), np.full(n, output), np.full(n, output))


def done_runs(url):
    from batchlab.store import open_store

    with open_store(url) as store:
        return store.count_runs(status="done"), store.list_runs(status="failed")


# ------------------------------------------------------------ the cases, from the CLI
def test_a_compressed_trace_beyond_the_clock_names_rps_scaling(tmp_path):
    """Once: exit 0 with latency_mean_s -31277351734 s and 98 % attainment."""
    url = f"sqlite:///{tmp_path}/s.db"
    msg = refused("--trace", "BurstGPT_3_first400", "--rps-scaling", "1e-6", store=url)
    assert msg == ("rps_scaling: the window spans 4.15e+04 s, which compressed 1e-06x would span 4.15e+10 s; "
                   "the engines represent less than 4.61e+09 s (146 years) of simulated time")
    assert done_runs(url) == (0, [])


def test_trace_rows_two_billion_seconds_apart(tmp_path):
    """Past 2^62 ns the kernel took its "never" for an arrival (IndexError) and past 2^63 ns wrapped
    (p99 -979,999,998 s): now the row beyond the clock is named; rows within it run as at time 0."""
    msg = refused("--trace", trace_file(tmp_path, [0, 2e9, 4e9, 6e9]))
    assert msg.startswith("trace: line 5, column Timestamp: '6000000000.0' is 6e+09 s after the earliest "
                          "timestamp (line 2); the engines represent less than 4.61e+09 s")
    w = build_workload(WorkloadSpec(workload="burstgpt", trace=trace_file(tmp_path, [0, 2e9, 4e9], "fits.csv")))
    for mode in MODES:
        r = simulate(SimConfig(mode=mode), w)
        e2e = r.requests["e2e"]
        assert np.all(e2e > 0) and np.ptp(e2e) < 2e-6, mode   # float64 resolves 0.5 us at 4e9 s
        assert r.summary["latency_p99_s"] == pytest.approx(e2e[0], abs=2e-6)


@pytest.mark.parametrize("mode", CONTINUOUS + ["static_fifo"])
def test_synthetic_arrivals_beyond_the_clock_name_the_rate(mode):
    """Once: `IndexError: pop from empty list` in every continuous mode."""
    msg = refused("--num-requests", "10000", "--rate", "1e-6", "--mode", mode)
    assert msg == ("rate: 10,000 requests at 1e-06 req/s would span 1e+10 s; the engines represent less than "
                   "4.61e+09 s (146 years) of simulated time")


def test_a_timestamp_of_1e308_is_refused_with_its_line(tmp_path):
    msg = refused("--trace", trace_file(tmp_path, ["0", "1e308"]))
    assert msg.startswith("trace: line 3, column Timestamp: '1e308' is 1e+308 s after the earliest timestamp")


# ------------------------------------------------------------ the settings that make the time scale
def test_gamma_arrivals_with_a_tiny_shape_are_checked_as_drawn():
    """The mean span (4e9 s) fits; with shape 0.01 seed 3 draws 5.38e9 s, seed 1 3.45e9 s."""
    spec = WorkloadSpec(num_requests=4000, rate=1e-6, arrival="gamma", gamma_shape=0.01)
    with pytest.raises(WorkloadError, match=r"^rate: the 4,000 gamma arrivals drawn at 1e-06 req/s with gamma "
                                            r"shape 0.01 would span 5.38e\+09 s; the engines represent"):
        build_workload(spec.replace(workload_seed=3))
    assert build_workload(spec.replace(workload_seed=1)).duration == pytest.approx(3.454e9, rel=1e-3)


def test_a_trace_rescaled_or_redrawn_beyond_the_clock_names_the_setting(tmp_path):
    data = Path(trace_file(tmp_path, range(5000))).read_bytes()
    with pytest.raises(WorkloadError, match=r"^rate: the window's 5,000 requests at 1e-06 req/s would span "
                                            r"5e\+09 s"):
        load_trace_bytes(data, rate=1e-6)
    assert load_trace_bytes(data, rate=2e-6).duration == pytest.approx(4999 / 2e-6)
    with pytest.raises(WorkloadError, match=r"^rps_scaling: 5,000 requests at 1e-06 req/s would span 5e\+09 s"):
        load_trace_bytes(data, arrival="poisson", rps_scaling=1e-6)


def test_an_array_workload_beyond_the_clock_is_refused_before_the_run():
    """Through the API no builder saw the arrays: simulate refuses them, naming the column."""
    for mode in ("continuous_dynamic", "static_fifo"):
        with pytest.raises(WorkloadError, match=r"^arrival: the last request arrives at 1\.4e\+10 s; the engines "
                                                r"represent less than 4\.61e\+09 s"):
            simulate(SimConfig(mode=mode), workload([0.0, 1.4e10]))
    with pytest.raises(WorkloadError, match=r"^output: request 0 holds 10,000,000,000 tokens; a request holds "
                                            r"at most 1,000,000,000"):
        simulate(SimConfig(), workload([0.0], output=10**10))


@pytest.mark.parametrize("mode", MODES)
def test_serving_past_the_clock_is_an_error_not_a_wrapped_time(mode):
    """The last request arrives 1 s before the clock ends; its service would end after it."""
    w = workload([0.0, MAX_TIME_S - 1.0])
    if mode.startswith("continuous"):
        expect = r"^the simulation ran out of time serving requests that arrive until 4\.61e\+09 s; "
    else:
        expect = r"^the simulation finishes request [01] at 4\.61e\+09 s; "   # multi_bin_fixed: both wait
    with pytest.raises(SimulationError, match=expect + r"the engines represent less than 4\.61e\+09 s"):
        simulate(SimConfig(mode=mode), w)
    e2e = simulate(SimConfig(mode=mode), workload([0.0, MAX_TIME_S - 100.0])).requests["e2e"]
    assert np.all(e2e > 0) and 1 < e2e[1] < 2   # prefill and 50 decode steps, alone or with request 0


# ------------------------------------------------------------ the clock's ties
def test_a_request_admitted_at_its_arrivals_tick_starts_at_its_arrival():
    """A boundary whose sums round to 6.9e-18 s before an arrival at the same 1 ns tick admitted it
    there: its queueing delay came out negative."""
    w = Workload(np.array([0.005, 0.005, 0.005, 0.05]), np.array([200, 200, 100, 100]), np.array([20, 5, 1, 20]),
                 np.array([20, 5, 1, 20]))
    r = simulate(SimConfig(mode="continuous_dynamic", gpus=1), w)
    q = r.requests
    assert q["start"][3] == q["arrival"][3] and q["queue_delay"][3] == 0.0
    assert np.all(q["arrival"] <= q["start"]) and np.all(q["start"] <= q["first_token"])


# ------------------------------------------------------------ the last line of defence
@pytest.fixture(scope="module")
def result():
    w = build_workload(WorkloadSpec(num_requests=300, rate=20.0, arrival="poisson", prompt_lengths="uniform:100:8000",
                                    output_lengths="uniform:1:200"))
    return simulate(SimConfig(mode="multi_bin_dynamic", gpus=2, gpu_mem_gb=17.0), w)


def broken(result, change):
    """Copies of the result's requests, log and summary, with ``change`` applied to them."""
    req = {k: v.copy() for k, v in result.requests.items()}
    log = {k: v.copy() for k, v in result.batches.items()}
    summary = copy.deepcopy(result.summary)
    change(req, log, summary)
    return req, log, summary


def test_the_guard_passes_a_real_result_with_rejected_requests_and_no_data(result):
    assert result.summary["rejected_requests"] > 0   # their times are NaN: no data, not a violation
    req, log, summary = broken(result, lambda q, g, s: s.update(sla_attainment=None))
    check_result(req, log, summary)


def _negative_ttft(q, g, s):
    q["ttft"][7] = -0.5


def _start_before_arrival(q, g, s):
    q["start"][7] = q["arrival"][7] - 1e-12


def _first_token_after_finish(q, g, s):
    q["first_token"][7] = q["finish"][7] + 1.0


def _rejected_with_a_time(q, g, s):
    i = int(np.flatnonzero(np.isnan(q["finish"]))[0])
    q["e2e"][i] = 1.0


def _nan_figure(q, g, s):
    s["latency_p99_s"] = float("nan")


def _infinite_bin_figure(q, g, s):
    s["bins"][0]["latency_mean_s"] = float("inf")


def _negative_count(q, g, s):
    s["preemptions"] = -1


def _negative_duration(q, g, s):
    g["duration"][3] = -1e-3


def _a_gap_in_a_one_token_request(q, g, s):
    i = int(np.flatnonzero(np.isfinite(q["tbt"]))[0])
    q["output"] = q["output"].copy()
    q["output"][i] = 1                         # one token, yet a time between tokens


def _no_gap_in_a_longer_request(q, g, s):
    i = int(np.flatnonzero(q["output"] > 1)[0])
    q["tbt_max"][i] = float("nan")


def _finish_beyond_the_clock(q, g, s):
    served = np.flatnonzero(~np.isnan(q["finish"]))
    q["finish"][served[-1]] = MAX_TIME_S


@pytest.mark.parametrize("change, message", [
    (_negative_ttft, r"request 7 has ttft -0\.5 \(a latency is finite and >= 0\)"),
    (_start_before_arrival, r"request 7 has start .* \(before its arrival "),
    (_first_token_after_finish, r"request 7 has finish .* \(before its first_token "),
    (_rejected_with_a_time, r"request \d+ was never served but has e2e 1\.0"),
    (_nan_figure, r"the summary's latency_p99_s is nan"),
    (_infinite_bin_figure, r"the summary's bins\[0\]\.latency_mean_s is inf"),
    (_negative_count, r"the summary's preemptions is -1"),
    (_negative_duration, r"row 3 of the engine's log has duration -0\.001"),
    (_finish_beyond_the_clock, r"the simulation finishes request \d+ at 4\.61e\+09 s"),
    (_a_gap_in_a_one_token_request, r"request \d+ has tbt .* \(a request of one token has no gap between tokens\)"),
    (_no_gap_in_a_longer_request, r"request \d+ has tbt_max nan \(a latency is finite and >= 0\)"),
])
def test_the_guard_refuses_what_cannot_be(result, change, message):
    with pytest.raises(SimulationError, match=message) as info:
        check_result(*broken(result, change))
    assert "\n" not in str(info.value)


@pytest.fixture
def negative_latency(monkeypatch):
    """The continuous engine made to report request 0 finishing before it arrives."""
    def engine(*args, **kwargs):
        out = run_continuous_engine(*args, **kwargs)
        for key in ("start", "first_token", "finish"):
            out.requests[key][0] -= 1e6
        return out

    monkeypatch.setattr(simulation, "run_continuous_engine", engine)


SMALL = ["--num-requests", "50", "--rate", "2"]


def test_an_impossible_result_is_never_returned(negative_latency):
    with pytest.raises(SimulationError, match=r"^impossible result, refused: request 0 has start -"):
        simulate(SimConfig(), build_workload(WorkloadSpec(num_requests=50, rate=2.0)))
    assert refused(*SMALL).startswith("impossible result, refused: request 0 has start -")


def test_an_impossible_result_is_stored_failed_never_done(negative_latency, store_url):
    msg = refused(*SMALL, store=store_url)
    assert msg.startswith("impossible result, refused: request 0 has start -")
    done, failed = done_runs(store_url)
    assert done == 0 and len(failed) == 1
    from batchlab.store import open_store

    with open_store(store_url) as store:
        assert store.get_run(failed[0].id).error.splitlines()[0] == f"batchlab.core.validity.SimulationError: {msg}"


# ------------------------------------------------------------ every representable run is possible
arrivals = st.lists(st.sampled_from([0.0, 1e-3, 0.005, 0.05, 0.1, 0.5, 2.0, 30.0]), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gaps=arrivals, base=st.sampled_from([0.0, 1e6, 4e9]), mode=st.sampled_from(MODES),
       gpus=st.integers(1, 3), batch=st.integers(1, 8), seed=st.integers(0, 2**16),
       mem=st.sampled_from([17.0, 19.0]))
def test_every_representable_run_has_non_negative_latencies_and_finite_figures(gaps, base, mode, gpus, batch,
                                                                              seed, mem):
    """Arrivals on round grids (ties with boundaries), late in the clock (coarse floats), tight memory
    (preemptions, evictions): every time in order, every latency >= 0, every figure finite."""
    rng = np.random.default_rng(seed)
    n = len(gaps)
    prompt = rng.choice([0, 16, 100, 2000], n)
    output = rng.choice([1, 2, 17, 300], n)
    w = Workload(base + np.cumsum(gaps), prompt, output, np.maximum(output, 1))
    r = simulate(SimConfig(mode=mode, gpus=gpus, batch_size=batch, gpu_mem_gb=mem, k_bins=2), w)
    q = r.requests
    served = ~np.isnan(q["finish"])
    a, s, f, e = (q[k][served] for k in ("arrival", "start", "first_token", "finish"))
    assert np.all(a <= s) and np.all(s <= f) and np.all(f <= e) and np.all(e < MAX_TIME_S)
    gap = served & (output > 1)                  # a one-token request has no time between tokens
    for key in ("queue_delay", "ttft", "tbt", "tbt_max", "e2e"):
        values = q[key][gap if key.startswith("tbt") else served]
        assert np.all(np.isfinite(values) & (values >= 0)), key
    assert np.isnan(q["tbt"][served & (output == 1)]).all() and np.isnan(q["tbt_max"][served & (output == 1)]).all()
    figures = [v for v in r.summary.values() if isinstance(v, float)]
    assert figures and all(np.isfinite(v) and v >= 0 for v in figures)
    assert (r.summary["tbt_mean_s"] is None) == (not gap.any())


# ------------------------------------------------------------ the same from the web
APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")


def web_errors(at) -> list[str]:
    """The page's error messages as a reader sees them (Markdown escapes removed); never a traceback."""
    import re

    assert not at.exception, at.exception
    shown = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]
    assert not any("Traceback" in e for e in shown)
    return shown


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_the_web_says_what_is_wrong_and_stores_nothing_done():
    from streamlit.testing.v1 import AppTest

    from batchlab.webapp import services

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="source").set_value("upload").run()
    for rows, message in [
        (["0,A,5,6,11,x", "nan,A,5,6,11,x"], "line 3, column Timestamp: 'nan' is not a number"),
        (["0,A,5,6,11,x", "1,A,5,6,11,x,extra"], "line 3 has 7 fields, but the header has 6"),
        (["0,A,5,6,11,x", "1,A,5,1e19,11,x"], "line 3, column Response tokens: '1e19' is above 1,000,000,000"),
        (["0,A,5,6,11,x", "1e308,A,5,6,11,x"], "line 3, column Timestamp: '1e308' is 1e+308 s after"),
    ]:
        body = "\n".join([HEADER, *rows]).encode()
        at.file_uploader(key="trace_upload").set_value(("bad.csv", body, "text/csv")).run()
        assert any(message in e for e in web_errors(at)), (message, web_errors(at))
    at.radio(key="source").set_value("bundled").run()
    at.selectbox(key="wl.trace").set_value("BurstGPT_3_first400")
    at.number_input(key="wl.rps_scaling").set_value(1e-6)
    next(b for b in at.button if b.label == "Run simulation").click().run()
    assert any("rps_scaling: the window spans 4.15e+04 s, which compressed 1e-06x would span 4.15e+10 s" in e
               for e in web_errors(at)), web_errors(at)
    assert services.get_store().count_runs(status="done") == 0
