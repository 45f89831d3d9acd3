"""Capacity search: common random numbers, the bisection state machine, M/M/1 closed forms, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from batchlab.core import SimConfig, simulate
from batchlab.core.capacity import BisectionSearch, capacity, check_capacity_inputs
from batchlab.core.stats import mean_ci, t_quantile
from batchlab.core.sweep import SweepError
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.synthetic import arrival_times, parse_length_spec, sample_lengths
from batchlab.workloads.workload import WorkloadError

# M/M/1 with batch size 1: service = geometric output tokens x a constant decode step, mean 0.1 s (mu = 10/s)
MU = 10.0
MM1 = dict(mode="static_fifo", batch_size=1, gpus=1, prefill_base=0.0, prefill_per_token=0.0,
           decode_base=1 / (MU * 500), decode_per_seq=0.0, decode_per_ctx_token=0.0, d_sla_ttft=None,
           d_sla_tbt=None)
MM1_SPEC = dict(arrival="poisson", prompt_lengths="fixed:1", output_lengths="geometric:500", predictor="oracle")


def mm1_capacity(target: float, deadline: float) -> float:
    """P(T <= d) = 1 - exp(-(mu - lambda) d) >= target  <=>  lambda <= mu + ln(1 - target) / d."""
    return MU + math.log(1 - target) / deadline


# ---------------------------------------------------------- random numbers --
@pytest.mark.parametrize("kind", ["poisson", "gamma"])
def test_same_seed_at_another_rate_is_the_same_arrivals_rescaled(kind):
    a = arrival_times(kind, 5000, 2.0, np.random.default_rng(7), 0.5)
    b = arrival_times(kind, 5000, 5.0, np.random.default_rng(7), 0.5)
    np.testing.assert_allclose(a * 2.0, b * 5.0, rtol=1e-12)
    wa = build_workload(WorkloadSpec(num_requests=3000, rate=1.0, workload_seed=3))
    wb = build_workload(WorkloadSpec(num_requests=3000, rate=4.0, workload_seed=3))
    np.testing.assert_array_equal(wa.output, wb.output)
    np.testing.assert_array_equal(wa.predicted, wb.predicted)
    np.testing.assert_allclose(wa.arrival, wb.arrival * 4.0, rtol=1e-12)


def test_geometric_lengths_have_the_stated_mean_and_are_memoryless():
    spec = parse_length_spec("Geometric:400", "output_lengths", 8192, (1, 1))
    assert str(spec) == "geometric:400"
    x = sample_lengths(spec, 400_000, np.random.default_rng(1), 8192)
    assert x.min() >= 1 and x.mean() == pytest.approx(400, rel=0.01)
    # P(X > a + b | X > a) = P(X > b)
    assert (x > 700).sum() / (x > 300).sum() == pytest.approx((x > 400).mean(), rel=0.03)
    assert WorkloadSpec(output_lengths="geometric:50").output_lengths == "geometric:50"
    with pytest.raises(WorkloadError, match="output_lengths: MEAN must be between 1 and 8192"):
        parse_length_spec("geometric:0.5", "output_lengths", 8192, (1, 1))


# ---------------------------------------------------------------- the search --
def run_search(passes, **kw) -> BisectionSearch:
    s = BisectionSearch(**{"target": 0.9, "tolerance": 0.02, "start": 1.0, **kw})
    for _ in range(200):
        if s.status != "searching":
            break
        rates = s.propose(3)
        if not rates:
            break
        for r in rates:
            s.observe(r, passes(r))
    return s


def test_bisection_brackets_the_crossing_to_half_the_tolerance():
    s = run_search(lambda r: r <= 37.3)
    assert s.status == "ok" and s.lo <= 37.3 < s.hi
    assert s.hi - s.lo <= 0.01 * s.lo * (1 + 1e-9) and s.capacity == s.lo
    s = run_search(lambda r: r <= 0.0123)
    assert s.status == "ok" and s.lo <= 0.0123 < s.hi


def test_unreachable_and_unbounded_targets():
    s = run_search(lambda r: False)
    assert s.status == "unreachable" and s.capacity == 0.0 and s.hi == s.min_rate
    s = run_search(lambda r: True, max_rate=500.0)
    assert s.status == "unbounded" and s.capacity == 500.0


def test_student_t_quantiles_and_interval():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-3)
    assert t_quantile(0.975, 9) == pytest.approx(2.2622, abs=1e-3)
    assert t_quantile(0.995, 20) == pytest.approx(2.8453, abs=1e-3)
    assert t_quantile(0.975, 2000) == pytest.approx(1.9612, abs=2e-3)
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.3027 * 1 / math.sqrt(3), rel=1e-3) and lo == pytest.approx(2 * m - hi)
    assert mean_ci([5.0]) == (5.0, None, None)


@pytest.mark.parametrize("kw,message", [
    (dict(target=1.5), "target: must be in (0, 1]"),
    (dict(tolerance=0.9), "tolerance: must be between 0.0001 and 0.5"),
    (dict(spec=WorkloadSpec(workload="burstgpt", rps_scaling=2.0)), "rps_scaling: capacity probes the arrival rate"),
    (dict(config=SimConfig(d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None)), "every SLA deadline is off"),
])
def test_bad_capacity_inputs_are_named(kw, message):
    args = dict(config=SimConfig(), spec=WorkloadSpec(), target=0.9, tolerance=0.02, replications=1) | kw
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace("]", r"\]")):
        check_capacity_inputs(**args)


# ---------------------------------------------------------- closed forms --
def test_mm1_capacity_lands_within_tolerance_of_the_formula():
    """Deadline 1 s on the M/M/1 sojourn time, 90 % attainment: lambda* = 10 - ln 10 = 7.697 req/s."""
    cfg = SimConfig(d_sla_e2e=1.0, **MM1)
    spec = WorkloadSpec(num_requests=150_000, **MM1_SPEC)
    res = capacity(cfg, spec, target=0.9, tolerance=0.02, replications=3, workers=2)
    truth = mm1_capacity(0.9, 1.0)
    assert res.status == "ok" and res.replications == 3
    assert abs(res.capacity_rps - truth) <= 0.02 * truth
    assert res.ci_low < res.capacity_rps < res.ci_high
    assert res.ci_low - 0.01 * truth <= truth <= res.ci_high + 0.01 * truth
    for (lo, hi), rep in zip(res.brackets, range(3)):
        probes = {p.rate: p for p in res.probes if p.replication == rep}
        assert probes[lo].attainment >= 0.9 > probes[hi].attainment  # lo observed to pass, hi to fail
        assert hi <= lo * 1.01 * (1 + 1e-9)
    # common random numbers: a replication's probes all use its own seeds, whatever the rate
    assert {p.replication for p in res.probes} == {0, 1, 2}


def test_capacity_is_not_throughput():
    """Saturation throughput of an M/M/1 is mu = 10 req/s; with 99 % within 0.6 s its capacity is 2.3 req/s."""
    cfg = SimConfig(d_sla_e2e=0.6, **MM1)
    res = capacity(cfg, WorkloadSpec(num_requests=60_000, **MM1_SPEC), target=0.99, tolerance=0.04, workers=2)
    truth = mm1_capacity(0.99, 0.6)
    assert abs(res.capacity_rps - truth) <= 0.04 * truth
    flooded = simulate(cfg, build_workload(WorkloadSpec(num_requests=60_000, rate=1000.0, **MM1_SPEC)))
    assert flooded.summary["throughput_rps"] == pytest.approx(MU, rel=0.02)
    assert flooded.summary["throughput_rps"] > 2 * res.capacity_rps
    # below capacity, throughput is just the arrival rate: it cannot tell where the SLA breaks
    at_capacity = [p for p in res.probes if p.rate == res.capacity_rps][0]
    assert at_capacity.throughput_rps == pytest.approx(res.capacity_rps, rel=0.03)


def test_capacity_cli_json_is_within_tolerance_and_compares_modes(tmp_path):
    from batchlab.cli import cli

    db = f"sqlite:///{tmp_path / 'store.db'}"
    flags = ["--mode", "static_fifo", "--batch-size", "1", "--gpus", "1", "--prefill-base", "0",
             "--prefill-per-token", "0", "--decode-base", str(1 / (MU * 500)), "--decode-per-seq", "0",
             "--decode-per-ctx-token", "0", "--d-sla-ttft", "none", "--d-sla-tbt", "none", "--d-sla-e2e", "0.5",
             "--num-requests", "120000", "--arrival", "poisson", "--prompt-lengths", "fixed:1",
             "--output-lengths", "geometric:500", "--predictor", "oracle", "--target", "0.9", "--tolerance", "0.03"]
    r = CliRunner().invoke(cli, ["capacity", "--db", db, "--workers", "2", "--json", *flags])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    truth = mm1_capacity(0.9, 0.5)
    assert {"capacity_rps", "tolerance", "replications", "ci_low", "ci_high", "probes"} <= set(out)
    assert out["tolerance"] == 0.03 and out["replications"] == 1 and out["ci_low"] is None
    assert abs(out["capacity_rps"] - truth) <= 0.03 * truth
    assert all({"rate", "attainment"} <= set(p) for p in out["probes"])
    # served from the store the second time; several modes give a list
    r = CliRunner().invoke(cli, ["capacity", "--db", db, "--workers", "2", "--json", *flags[2:],
                                 "--mode", "static_fifo,multi_bin_dynamic", "--num-requests", "20000"])
    assert r.exit_code == 0, r.output
    both = json.loads(r.stdout)
    assert [c["mode"] for c in both] == ["static_fifo", "multi_bin_dynamic"]
    assert all(c["status"] == "ok" and c["capacity_rps"] > 0 for c in both)
    r = CliRunner().invoke(cli, ["capacity", "--no-store", "--mode", "fifo"])
    assert r.exit_code != 0 and "unknown mode(s) fifo" in r.output
    r = CliRunner().invoke(cli, ["capacity", "--no-store", "--rate", "3"])
    assert r.exit_code != 0 and "No such option '--rate'" in r.output


def test_each_configuration_may_have_its_own_start_and_bracketing_step():
    """Per-base start and factor: a search started at a passing rate with step 1.25 probes 1.25x above it first."""
    cfg = SimConfig(d_sla_e2e=1.0, **MM1)
    spec = WorkloadSpec(num_requests=20_000, **MM1_SPEC)
    from batchlab.core.capacity import search_capacities

    res = search_capacities([(cfg, spec), (cfg.replace(gpus=2), spec)], 0.9, 0.04, workers=2, start=[6.0, None],
                            factor=[1.25, 4.0])
    first = sorted({p.rate for p in res[0].probes})
    assert 6.0 in first and 7.5 in first  # 6 passes (truth 7.7), then 6 x 1.25
    assert res[1].probes[0].rate == 1.0 and 4.0 in {p.rate for p in res[1].probes}  # default start 1, step 4
    for r in res:
        assert r.status == "ok"
    with pytest.raises(SweepError, match="one start and one factor per configuration"):
        search_capacities([(cfg, spec)], 0.9, factor=[1.5, 2.0])
    with pytest.raises(SweepError, match="need factor > 1"):
        search_capacities([(cfg, spec)], 0.9, factor=[1.0])


def test_each_replication_probes_with_its_own_workload_and_scheduler_seeds():
    """Replication r runs every probe on workload seed and scheduler seed base + r: common random numbers
    across the rates of one replication, independent samples across replications."""
    from concurrent.futures import ThreadPoolExecutor

    from batchlab.core.sweep import simulate_member

    seen = []

    def job(member):
        seen.append((member.point["replication"], member.config.seed, member.spec.workload_seed))
        return simulate_member(member)

    cfg = SimConfig(d_sla_e2e=1.0, seed=5, **MM1)
    spec = WorkloadSpec(num_requests=3000, workload_seed=7, **MM1_SPEC)
    with ThreadPoolExecutor(2) as pool:
        res = capacity(cfg, spec, target=0.9, tolerance=0.1, replications=3, executor=pool, job=job, workers=2)
    assert res.status == "ok" and len(seen) == len(res.probes) > 3
    assert set(seen) == {(r, 5 + r, 7 + r) for r in range(3)}
    assert len(set(res.per_replication)) > 1                   # independent samples, not one repeated
