"""Capacity planning: the M/M/c answer from Erlang C, pruning against brute force, determinism, reuse, CLI."""
from __future__ import annotations

import json
import math
import random
import shlex
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from batchlab.core import SimConfig
from batchlab.core.plan import candidates, check_plan_inputs, offered_rate, plan
from batchlab.core.plan_options import PlanOptions
from batchlab.core.plan_report import changed_settings, pct, plan_sentence, run_command, toml_config
from batchlab.core.sweep import Member, MemberResult, SweepError, run_members, simulate_member
from batchlab.store import open_store
from batchlab.store.sweep_jobs import gpu_plan, open_plan, run_plan
from batchlab.workloads import WorkloadSpec, build_workload

# M/M/c with batch size 1: service = geometric output tokens x a constant decode step, mean 1/MU = 0.1 s
MU = 10.0
MMC = dict(prefill_base=0.0, prefill_per_token=0.0, decode_base=1 / (MU * 500), decode_per_seq=0.0,
           decode_per_ctx_token=0.0, d_sla_ttft=None, d_sla_tbt=None)
MMC_SPEC = dict(arrival="poisson", prompt_lengths="fixed:1", output_lengths="geometric:500", predictor="oracle")
FIFO1 = PlanOptions(modes=("static_fifo",), batch_values=(1,), max_gpus=10, target=0.9, evidence=False)


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c with offered load a = lambda / mu < c."""
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


def mmc_within(c: int, lam: float, d: float) -> float:
    """P(T <= d) for the M/M/c FCFS sojourn time T = W + S: W is 0 with probability 1 - C, else
    Exp(c mu - lambda); S ~ Exp(mu) independent, so P(W + S > d) is a two-phase hypoexponential tail."""
    a = lam / MU
    if a >= c:
        return 0.0
    C, alpha = erlang_c(c, a), c * MU - lam
    if abs(alpha - MU) < 1e-12:
        both = (1 + MU * d) * math.exp(-MU * d)
    else:
        both = (alpha * math.exp(-MU * d) - MU * math.exp(-alpha * d)) / (alpha - MU)
    return 1 - ((1 - C) * math.exp(-MU * d) + C * both)


def fewest_servers(lam: float, d: float, target: float) -> int:
    return next(c for c in range(1, 100) if mmc_within(c, lam, d) >= target)


# ---------------------------------------------------------- M/M/c closed form --
@pytest.mark.parametrize("lam,d", [(35.0, 0.4), (45.0, 0.4)])
def test_plan_returns_the_erlang_c_server_count(lam, d):
    """static_fifo with B = 1 on Poisson arrivals and exponential service is M/M/c: the plan's GPU count
    is the smallest c with P(T <= d) >= target. The cases are chosen with theory at least 2 points away
    from the target on both sides of c*, so the discreteness of a finite run cannot move the answer."""
    target = FIFO1.target
    c_star = fewest_servers(lam, d, target)
    assert mmc_within(c_star, lam, d) - target >= 0.02 and target - mmc_within(c_star - 1, lam, d) >= 0.02
    cfg = SimConfig(d_sla_e2e=d, **MMC)
    spec = WorkloadSpec(num_requests=30_000, rate=lam, **MMC_SPEC)
    with ThreadPoolExecutor(2) as pool:
        res = plan(cfg, spec, FIFO1, executor=pool, workers=2)
    assert res.status == "ok" and res.gpus == c_star
    cells = {c["gpus"]: c["attainment"] for c in res.cells}
    assert cells[c_star] == pytest.approx(mmc_within(c_star, lam, d), abs=0.015)
    assert cells[c_star - 1] == pytest.approx(mmc_within(c_star - 1, lam, d), abs=0.03)
    assert res.below["gpus"] == c_star - 1 and res.below["attainment"] < target
    assert res.recommended["config"]["gpus"] == c_star and res.recommended["config"]["batch_size"] == 1
    # bisection on 1..10 GPUs: at most 4 GPU counts tried, never the whole range
    assert res.counts["cells"] <= 4 < res.counts["grid_cells"]


def test_capacity_evidence_matches_the_erlang_c_capacity():
    """At c* GPUs, the highest rate whose P(T <= d) >= target, solved from the formula by bisection."""
    lam, d, target = 35.0, 0.4, 0.9
    c_star = fewest_servers(lam, d, target)
    lo, hi = lam, c_star * MU
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mmc_within(c_star, mid, d) >= target else (lo, mid)
    options = PlanOptions(modes=("static_fifo",), batch_values=(1,), max_gpus=8, target=target, tolerance=0.04)
    res = plan(SimConfig(d_sla_e2e=d, **MMC), WorkloadSpec(num_requests=30_000, rate=lam, **MMC_SPEC), options,
               workers=2)
    [cap] = res.capacities
    assert cap["status"] == "ok" and cap["label"]["gpus"] == c_star
    assert cap["capacity_rps"] >= lam  # the plan's own rate passes at c*
    assert abs(cap["capacity_rps"] - lo) <= 0.04 * lo
    # the probe at the planned rate is the plan's own run, not simulated again
    at_rate = [p for p in cap["probes"] if p["rate"] == lam]
    assert at_rate and at_rate[0]["cached"] and at_rate[0]["run_hash"] == res.recommended["run_hash"]


# ------------------------------------------------- pruning vs brute force --
class TableJob:
    """A job answering from a table ``attainment[candidate][gpus]`` (``pilot``: the table of the pilot's
    smaller workload); it records every full-size call."""

    def __init__(self, table: list[list[float]], pilot: list[list[float]] | None = None):
        self.table, self.pilot, self.calls, self.pilot_calls = table, pilot, [], []

    def __call__(self, member: Member) -> MemberResult:
        ci, g = member.point["candidate"], member.point["gpus"]
        small = member.spec.num_requests < 50_000 and self.pilot is not None
        (self.pilot_calls if small else self.calls).append((ci, g))
        att = (self.pilot if small else self.table)[ci][g - 1]
        return MemberResult(member.key, member.point, "done",
                            {"sla_attainment": att, "latency_p99_s": 10.0 + ci, "throughput_rps": 1.0})


def brute_force(table: list[list[float]], target: float) -> int | None:
    return next((g for g in range(1, len(table[0]) + 1) if any(row[g - 1] >= target for row in table)), None)


def table_plan(table, target, pilot_table=None, **kw):
    options = PlanOptions(modes=("static_fifo", "multi_bin_dynamic"), batch_values=(8, 16), k_values=(1, 2),
                          b_max_values=(64,), max_gpus=len(table[0]), target=target, evidence=False, **kw)
    assert len(candidates(options)) == len(table)
    job = TableJob(table, pilot_table)
    spec = WorkloadSpec(num_requests=100 if pilot_table is None else 50_000)
    with ThreadPoolExecutor(1) as one:
        return plan(SimConfig(), spec, options, executor=one, job=job, workers=1), job


def monotone_table(rng: random.Random, G: int) -> list[list[float]]:
    return [sorted(rng.choice([0.0, 0.25, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0]) for _ in range(G)) for _ in range(4)]


def test_pruning_never_skips_the_optimum_on_random_monotone_tables():
    rng = random.Random(11)
    fewer = 0
    for _ in range(300):
        G = rng.randint(1, 16)
        table = monotone_table(rng, G)
        target = rng.choice([0.5, 0.9, 0.95, 0.99, 1.0])
        res, job = table_plan(table, target)
        truth = brute_force(table, target)
        assert res.gpus == truth, (table, target)
        assert len(job.calls) == len(set(job.calls))  # no cell runs twice
        at = truth or G
        want = sorted(range(4), key=lambda ci: (table[ci][at - 1] < target, -table[ci][at - 1], ci))
        assert [r["candidate"] for r in res.ranking] == want
        if truth:
            assert res.recommended["attainment"] >= target and res.status == "ok"
            if truth > 1:  # "at best" one GPU below is exact
                assert res.below["attainment"] == max(row[truth - 2] for row in table)
        else:
            assert res.status == "unreachable" and res.recommended["gpus"] == G
        fewer += len(job.calls) < 4 * G
    assert fewer > 150  # monotonicity pruning saves runs on most grids


def test_a_pilot_only_chooses_where_to_look():
    """Whatever the pilot's (smaller workload's) table says, the answer is the full table's; when the pilot
    agrees with it, the full-size search runs only the answer and the count below it."""
    rng = random.Random(5)
    for trial in range(200):
        G = rng.randint(1, 16)
        table = monotone_table(rng, G)
        target = rng.choice([0.5, 0.9, 0.95, 0.99])
        pilot = table if trial % 2 else [[rng.random() for _ in range(G)] for _ in range(4)]
        res, job = table_plan(table, target, pilot_table=pilot)
        truth = brute_force(table, target)
        assert res.gpus == truth and res.counts["pilot_requests"] == 5000
        assert job.pilot_calls and res.counts["pilot_cells"] == len(set(job.pilot_calls))
        assert res.counts["cells"] == len(set(job.calls))  # pilot cells are not the answer's cells
        if pilot is table and truth is not None:
            assert res.counts["pilot_guess"] == truth
            assert {g for _, g in job.calls} <= {truth, truth - 1}
    table = monotone_table(rng, 8)
    res, job = table_plan(table, 0.9, pilot_table=table, pilot=False)
    assert res.counts["pilot_requests"] is None and res.counts["pilot_cells"] == 0 and not job.pilot_calls


def test_a_non_monotone_answer_walks_down_to_a_passing_count():
    """B meets the target at 3 GPUs only (noise): bisection lands on 4 (A), the boundary check finds B at 3."""
    table = [[0.1, 0.2, 0.3, 0.95, 0.96, 0.97, 0.98, 0.99],   # A
             [0.1, 0.1, 0.95, 0.5, 0.5, 0.5, 0.5, 0.5],       # B
             [0.0] * 8, [0.0] * 8]
    res, job = table_plan(table, 0.9)
    assert res.gpus == 3 and res.recommended["candidate"] == 1
    assert res.below == {"gpus": 2, "attainment": 0.2, "configuration": candidates(PlanOptions(
        modes=("static_fifo", "multi_bin_dynamic"), batch_values=(8, 16), k_values=(1, 2), b_max_values=(64,)))[0].label}


SMALL = WorkloadSpec(num_requests=2000, rate=5.0)
GRID = PlanOptions(modes=("static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic"),
                   k_values=(1, 4), b_max_values=(32, 128), batch_values=(8, 32), max_gpus=8, evidence=False)


class Memo:
    """simulate_member with answers kept by member key (the brute force fills it; the plan reads it)."""

    def __init__(self):
        self.done, self.calls = {}, []

    def __call__(self, member: Member) -> MemberResult:
        self.calls.append(member.key)
        if member.key not in self.done:
            self.done[member.key] = simulate_member(member)
        return self.done[member.key]


@pytest.mark.parametrize("modes,target", [(GRID.modes, 0.95), (GRID.modes[:2], 0.15), (GRID.modes[:2], 0.1)])
def test_plan_finds_the_brute_force_optimum_of_a_small_simulated_grid(modes, target):
    options = PlanOptions(**{**GRID.to_dict(), "modes": modes, "target": target})
    cands = candidates(options)
    memo = Memo()
    with ThreadPoolExecutor(2) as pool:
        members = [Member(c.config(SimConfig(), g), SMALL, {"candidate": i, "gpus": g})
                   for i, c in enumerate(cands) for g in range(1, 9)]
        grid = run_members(members, memo, pool)
        table = [[r.summary["sla_attainment"] for r in grid if r.point["candidate"] == i] for i in range(len(cands))]
        truth = brute_force(table, target)
        meets = [any(row[g] >= target for row in table) for g in range(8)]
        assert meets == sorted(meets)  # the precondition: "some configuration meets it" is monotone here
        memo.calls.clear()
        res = plan(SimConfig(), SMALL, options, executor=pool, job=memo, workers=2)
    assert truth is not None and 1 < truth < 8 and res.gpus == truth
    at = {r.point["candidate"]: r.summary for r in grid if r.point["gpus"] == truth}
    ranked = sorted(at, key=lambda i: (at[i]["sla_attainment"] < target, -at[i]["sla_attainment"],
                                       at[i]["latency_p99_s"], i))
    assert [r["candidate"] for r in res.ranking] == ranked
    assert len(memo.calls) < len(members)


# ------------------------------------------------------------ determinism --
def test_plan_is_deterministic_whatever_the_executor():
    options = PlanOptions(modes=("static_fifo", "continuous_dynamic"), batch_values=(8, 32), b_max_values=(64,),
                          max_gpus=6, target=0.95, tolerance=0.1)
    spec = WorkloadSpec(num_requests=1500, rate=4.0)
    with ThreadPoolExecutor(2) as threads:
        a = plan(SimConfig(), spec, options, executor=threads, workers=2).to_dict()
    b = plan(SimConfig(), spec, options, workers=2).to_dict()  # a process pool
    one = plan(SimConfig(), spec, options, workers=1).to_dict()
    for d in (a, b, one):
        d.pop("seconds"), d.pop("phase_seconds")
    assert a == b
    for key in ("gpus", "ranking", "cells", "recommended", "below", "sentence"):
        assert one[key] == a[key]  # the answer does not depend on the worker count


# ----------------------------------------------------------- rule, status --
def test_the_lower_rule_is_stricter_and_its_winners_clear_the_target_with_their_interval():
    spec = WorkloadSpec(num_requests=1500, rate=5.0)
    base = dict(modes=("continuous_static", "continuous_dynamic"), batch_values=(8,), b_max_values=(64,), max_gpus=8,
                target=0.985, replications=3, evidence=False)
    mean = plan(SimConfig(), spec, PlanOptions(**base), workers=2)
    lower = plan(SimConfig(), spec, PlanOptions(**base, rule="lower"), workers=2)
    assert mean.status == lower.status == "ok" and lower.gpus >= mean.gpus
    for row in lower.ranking:
        assert row["meets"] == (row["ci_low"] >= 0.985)
        assert row["ci_low"] <= row["attainment"] <= row["ci_high"]
    assert "confidence interval from" in lower.sentence
    # the replications are independent samples (each its own workload seed): wherever attainment is
    # neither 0 nor 1 they disagree, so every such interval has a width
    varied = [c for c in lower.cells if c["attainment"] is not None and 0 < c["attainment"] < 1]
    assert varied and all(c["ci_low"] < c["attainment"] < c["ci_high"] for c in varied)


def test_unreachable_target_ranks_at_max_gpus_and_says_so():
    res = plan(SimConfig(), WorkloadSpec(num_requests=800), PlanOptions(modes=("static_fifo",), batch_values=(8,),
                                                                         max_gpus=3, evidence=False), workers=2)
    assert res.status == "unreachable" and res.gpus is None and res.ranked_at == 3
    assert res.sentence.startswith("No configuration reaches 99.0 % within SLA at 12 req/s with up to 3 GPUs")
    assert res.recommended["gpus"] == 3 and not res.recommended["meets"]


def test_each_replication_runs_on_its_own_workload_and_scheduler_seeds():
    """Replication r of every cell runs workload seed and scheduler seed base + r."""
    seen = set()

    def job(member):
        seen.add((member.point["replication"], member.config.seed, member.spec.workload_seed))
        return simulate_member(member)

    spec = WorkloadSpec(num_requests=2000, rate=20.0, workload_seed=7, **MMC_SPEC)
    options = PlanOptions(modes=("static_fifo",), batch_values=(1,), max_gpus=4, target=0.9, replications=3,
                          evidence=False)
    with ThreadPoolExecutor(2) as pool:
        res = plan(SimConfig(d_sla_e2e=0.4, seed=5, **MMC), spec, options, executor=pool, job=job, workers=2)
    assert res.status == "ok"
    assert seen == {(r, 5 + r, 7 + r) for r in range(3)}


def test_a_candidate_whose_runs_fail_is_left_out_with_its_error():
    # 16.001 GB of memory and 16 GB of weights: no request fits; every candidate fails
    res = plan(SimConfig(gpu_mem_gb=16.001), WorkloadSpec(num_requests=300),
               PlanOptions(modes=("static_fifo",), batch_values=(8,), max_gpus=2, evidence=False), workers=1)
    assert res.status == "failed" and "no request fits" in res.error
    assert res.sentence.startswith("No configuration could be simulated")


@pytest.mark.parametrize("kw,message", [
    (dict(target=0.0), "target: must be in (0, 1]"),
    (dict(modes=("fifo",)), "modes: unknown mode(s) fifo"),
    (dict(modes=()), "modes: unknown mode(s) (none)"),
    (dict(modes=("static_fifo", "static_fifo")), "modes: a mode is listed twice"),
    (dict(max_gpus=0), "max_gpus: must be between 1 and 1000"),
    (dict(k_values=(2, 2)), "k_values: 2 is listed twice"),
    (dict(batch_values=(0,)), "batch_values: values must be whole numbers from 1"),
    (dict(rule="lower"), "rule: 'lower' (the confidence interval's lower end) needs replications >= 2"),
    (dict(rule="median"), "rule: must be one of mean, lower"),
    (dict(b_max_values=(4,), modes=("continuous_dynamic",)), "candidate continuous_dynamic, B_max = 4: b_min"),
])
def test_bad_plan_inputs_are_named(kw, message):
    cfg = SimConfig(b_min=8) if "b_max_values" in kw else SimConfig()
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        check_plan_inputs(cfg, WorkloadSpec(), PlanOptions(**kw))
    with pytest.raises(SweepError, match="every SLA deadline is off"):
        check_plan_inputs(SimConfig(d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None), WorkloadSpec(), PlanOptions())


def test_a_trace_is_planned_at_its_own_arrivals():
    spec = WorkloadSpec(workload="burstgpt", rps_scaling=3.0)
    w = build_workload(spec)
    assert offered_rate(spec) == pytest.approx(w.mean_rate)
    assert offered_rate(WorkloadSpec(workload="burstgpt", rate=2.5)) == 2.5
    assert offered_rate(WorkloadSpec(rate=7.0)) == 7.0 and offered_rate(WorkloadSpec()) == 12.0
    res = plan(SimConfig(), spec, PlanOptions(modes=("continuous_dynamic",), b_max_values=(64,), max_gpus=4,
                                              target=0.9, tolerance=0.1), workers=2)
    assert res.rate_rps == pytest.approx(w.mean_rate)
    assert res.status in ("ok", "unreachable") and res.capacities[0]["status"] in ("ok", "unbounded")
    assert "--rps-scaling 3" in res.recommended["command"] and "--workload burstgpt" in res.recommended["command"]


# ----------------------------------------------------------- renderings --
def test_command_line_and_toml_name_exactly_the_run():
    cfg = SimConfig(mode="multi_bin_dynamic", gpus=3, k_bins=4, b_max=64, d_sla_tbt=None, sla_control=False,
                    gpu_mem_gb=40.0, decode_per_ctx_token=1.5e-7, fill="full")
    spec = WorkloadSpec(rate=6.5, predictor="oracle", num_requests=500)
    cmd = run_command(cfg, spec)
    for part in ("--mode multi_bin_dynamic", "--gpus 3", "--k-bins 4", "--b-max 64", "--d-sla-tbt none",
                 "--no-sla-control", "--gpu-mem-gb 40", "--decode-per-ctx-token 1.5e-07", "--fill full",
                 "--rate 6.5", "--predictor oracle", "--num-requests 500"):
        assert part in cmd
    assert "--batch-size" not in cmd  # not a knob of a dynamic mode
    toml = tomllib.loads(toml_config(cfg, spec))
    sim, wl = changed_settings(cfg, spec)
    assert SimConfig(**{k: v for k, v in toml["sim"].items()}).relevant_dict() == cfg.relevant_dict()
    assert WorkloadSpec(**toml["workload"]).relevant_dict() == spec.relevant_dict()
    assert set(toml["sim"]) == set(sim) and set(toml["workload"]) == set(wl)
    assert pct(0.98996, 0.99) == "98.996 %" and pct(0.993, 0.99) == "99.3 %" and pct(0.99, 0.99) == "99.0 %"


def test_sentence_names_the_answer_and_the_count_below():
    d = {"status": "ok", "rate_rps": 6.0, "target": 0.99, "gpus": 4, "rule": "mean", "confidence": 0.95,
         "recommended": {"configuration": "multi_bin_dynamic, K = 4, B_max = 64", "attainment": 0.993, "gpus": 4},
         "below": {"gpus": 3, "attainment": 0.971}}
    assert plan_sentence(d) == ("4 GPUs with multi_bin_dynamic, K = 4, B_max = 64: 99.3 % within SLA at 6 req/s; "
                                "3 GPUs reach at best 97.1 %.")


# --------------------------------------------------------- store and CLI --
def test_replanning_with_a_tighter_target_reuses_the_stored_runs(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    spec = WorkloadSpec(num_requests=1500, rate=5.0)
    opts = dict(modes=("static_fifo", "continuous_dynamic"), batch_values=(8,), b_max_values=(64, 128), max_gpus=6,
                evidence=False)
    first = gpu_plan(SimConfig(), spec, PlanOptions(target=0.9, **opts))
    a = run_plan(first, None, 2, store, open_plan(store, first)).answer
    assert a["counts"]["simulated"] == a["counts"]["runs"] == a["counts"]["cells"]
    stored = {r.hash for r in store.list_runs()}
    assert stored == {c["run_hash"] for c in a["cells"]}  # every candidate run is stored
    second = gpu_plan(SimConfig(), spec, PlanOptions(target=0.99, **opts))
    sid = open_plan(store, second)
    b = run_plan(second, None, 2, store, sid).answer
    shared = [c for c in b["cells"] if c["run_hash"] in stored]
    assert shared and all(c["reused"] == 1 for c in shared)
    assert all(c["reused"] == 0 for c in b["cells"] if c["run_hash"] not in stored)
    assert b["counts"]["simulated"] == len(b["cells"]) - len(shared)
    params = store.get_sweep(sid).params
    assert params["status"] == "done" and params["result"]["answer"]["sentence"] == b["sentence"]
    store.close()


PLAN_FLAGS = ["--modes", "static_fifo,continuous_dynamic", "--batch-candidates", "8", "--b-max-candidates", "64,128",
              "--max-gpus", "6", "--num-requests", "1500", "--rate", "5", "--target", "0.98", "--tolerance", "0.1"]


def test_plan_json_names_a_configuration_whose_own_run_meets_the_target(tmp_path):
    from batchlab.cli import cli

    db = f"sqlite:///{tmp_path / 'store.db'}"
    r = CliRunner().invoke(cli, ["plan", "--db", db, "--workers", "2", "--json", *PLAN_FLAGS])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    rec = out["recommended"]
    assert out["status"] == "ok" and rec["attainment"] >= 0.98 and out["sweep_id"] == 1
    assert {"sentence", "ranking", "capacities", "counts", "below"} <= set(out)
    assert [c["mode"] for c in out["capacities"]] == ["static_fifo", "continuous_dynamic"]
    # the command line, run by itself (not through the store), meets the target with the same run
    args = shlex.split(rec["command"])
    assert args[:2] == ["batchlab", "run"]
    own = CliRunner().invoke(cli, [*args[1:], "--no-store", "--json"])
    assert own.exit_code == 0, own.output
    summary = json.loads(own.stdout)
    assert summary["sla_attainment"] >= 0.98 and summary["config_hash"] == rec["run_hash"]
    (tmp_path / "plan.toml").write_text(rec["toml"])
    by_file = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "plan.toml"), "--no-store", "--json"])
    assert json.loads(by_file.stdout)["config_hash"] == rec["run_hash"]
    # text output: the sentence first, then the command
    r = CliRunner().invoke(cli, ["plan", "--db", db, "--workers", "2", *PLAN_FLAGS])
    assert r.exit_code == 0 and r.stdout.startswith(out["sentence"]) and rec["command"] in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--k-bins", "4"], "No such option '--k-bins'"),
    (["--modes", "fifo"], "modes: unknown mode(s) fifo"),
    (["--rule", "lower"], "needs replications >= 2"),
    (["--k-candidates", "a,b"], "'a,b' is not a comma-separated list of integers"),
    (["--d-sla-ttft", "none", "--d-sla-tbt", "none", "--d-sla-e2e", "none"], "every SLA deadline is off"),
])
def test_plan_cli_errors_are_one_line(args, message):
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["plan", "--no-store", *args])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_plan_cli_refuses_a_config_file_that_sets_what_the_plan_chooses(tmp_path):
    from batchlab.cli import cli

    (tmp_path / "c.toml").write_text("[sim]\ngpus = 4\n")
    r = CliRunner().invoke(cli, ["plan", "--no-store", "--config", str(tmp_path / "c.toml")])
    assert r.exit_code != 0 and "gpus: the plan chooses it; set what it tries with --max-gpus" in r.output


def test_unreachable_plan_exits_3_and_a_dask_cluster_runs_it(tmp_path):
    pytest.importorskip("distributed")
    from batchlab.cli import cli

    db = f"sqlite:///{tmp_path / 'store.db'}"
    r = CliRunner().invoke(cli, ["plan", "--db", db, "--cluster", "local", "--workers", "2", "--json", "--modes",
                                 "static_fifo", "--batch-candidates", "8,16", "--max-gpus", "2", "--num-requests", "600",
                                 "--no-evidence"])
    assert r.exit_code == 3
    out = json.loads(r.stdout)
    assert out["status"] == "unreachable" and out["counts"]["simulated"] == out["counts"]["cells"] == 4
    store = open_store(db)
    assert {x.hash for x in store.list_runs()} == {c["run_hash"] for c in out["cells"]}
    store.close()
