"""The plan over the cluster's axes: routers (queueing closed forms), TP (GPUs = replicas x TP, against brute
force), prefill:decode ratios, the sentence naming the router, the CLI's flags and bad input named."""
from __future__ import annotations

import json
import math
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from queueing import erlang_c

from batchlab.core import SimConfig
from batchlab.core.plan import candidates, check_plan_inputs, pd_split, plan
from batchlab.core.plan_options import PlanOptions
from batchlab.core.plan_report import plan_sentence
from batchlab.core.sweep import Member, MemberResult, SweepError
from batchlab.workloads import WorkloadSpec

# each replica an exponential server of rate MU: continuous_static with B = 1, no prefill time, geometric
# outputs (mean OUT tokens) x a constant decode step (as tests/test_routers.py's EXP_SERVER), Poisson arrivals
MU, OUT = 10.0, 500
EXP = dict(prefill_base=0.0, prefill_per_token=0.0, decode_base=1 / (MU * (OUT - 1)), decode_per_seq=0.0,
           decode_per_ctx_token=0.0, d_sla_ttft=None, d_sla_tbt=None)
EXP_SPEC = dict(arrival="poisson", prompt_lengths="fixed:1", output_lengths=f"geometric:{OUT}", predictor="oracle")
LAM, D, TARGET = 40.0, 0.5, 0.85


def shared_within(c: int, lam: float, d: float) -> float:
    """M/M/c (one shared FCFS queue): P(T <= d), T = W + S, W = 0 w.p. 1 - C else Exp(c mu - lambda)."""
    a = lam / MU
    if a >= c:
        return 0.0
    C, alpha = erlang_c(c, a), c * MU - lam
    if abs(alpha - MU) < 1e-12:   # W + S of equal rates: Erlang-2
        both = (1 + MU * d) * math.exp(-MU * d)
    else:
        both = (alpha * math.exp(-MU * d) - MU * math.exp(-alpha * d)) / (alpha - MU)
    return 1 - ((1 - C) * math.exp(-MU * d) + C * both)


def random_within(c: int, lam: float, d: float) -> float:
    """Random routing splits Poisson arrivals into c M/M/1 queues at lambda / c: T ~ Exp(mu - lambda / c)."""
    rate = MU - lam / c
    return 1 - math.exp(-rate * d) if rate > 0 else 0.0


def fewest(within, lam: float, d: float, target: float) -> int:
    return next(c for c in range(1, 100) if within(c, lam, d) >= target)


def exp_plan(routers: tuple[str, ...], pool) -> dict:
    options = PlanOptions(modes=("continuous_static",), batch_values=(1,), max_gpus=10, target=TARGET,
                          evidence=False, routers=routers)
    spec = WorkloadSpec(num_requests=30_000, rate=LAM, **EXP_SPEC)
    return plan(SimConfig(d_sla_e2e=D, **EXP), spec, options, executor=pool, workers=2).to_dict()


# ------------------------------------------------------------ closed forms --
def test_random_routing_needs_the_mm1_count_and_a_shared_queue_the_erlang_c_count():
    """On c exponential servers, random routing makes c M/M/1 queues at lambda / c and one shared queue is
    M/M/c: the plan's GPU counts are the smallest c each closed form gives (5 and 7 here: the cases are chosen
    with theory at least 3 points from the target on both sides of each answer), and a plan over both
    routers answers with the shared queue's count, naming it."""
    c_shared, c_random = fewest(shared_within, LAM, D, TARGET), fewest(random_within, LAM, D, TARGET)
    assert (c_shared, c_random) == (5, 7)
    for within, c in ((shared_within, c_shared), (random_within, c_random)):
        assert within(c, LAM, D) - TARGET >= 0.03 and TARGET - within(c - 1, LAM, D) >= 0.03
    with ThreadPoolExecutor(2) as pool:
        rand, shared, both = (exp_plan(r, pool) for r in (("random",), ("shared_queue",),
                                                            ("shared_queue", "random")))
    assert rand["status"] == shared["status"] == "ok"
    assert rand["gpus"] == c_random > shared["gpus"] == c_shared
    for answer, within in ((rand, random_within), (shared, shared_within)):
        cells = {c["gpus"]: c["attainment"] for c in answer["cells"]}
        g = answer["gpus"]
        assert cells[g] == pytest.approx(within(g, LAM, D), abs=0.015)
        assert cells[g - 1] == pytest.approx(within(g - 1, LAM, D), abs=0.02)
        assert {c["replicas"] for c in answer["cells"]} == set(cells) and {c["tp"] for c in answer["cells"]} == {1}
    assert rand["recommended"]["router"] == "random" and rand["recommended"]["config"]["router"] == "random"
    assert "--router random" in rand["recommended"]["command"]
    assert rand["sentence"].startswith(f"{c_random} GPUs with continuous_static, B = 1, as {c_random} replicas "
                                       "behind the random router: ")
    assert shared["sentence"].startswith(f"{c_shared} GPUs with continuous_static, B = 1, as {c_shared} replicas "
                                         "sharing one queue (no deployment routes so: the ideal bound): ")
    # the command names the shared queue, which a continuous run's identity leaves out: it reproduces the run
    assert "--router shared_queue" in shared["recommended"]["command"]
    assert both["gpus"] == c_shared and both["recommended"]["router"] == "shared_queue"
    assert {r["router"] for r in both["ranking"]} == {"shared_queue", "random"}
    assert [r["configuration"] for r in both["ranking"]] == ["continuous_static, B = 1, shared_queue",
                                                             "continuous_static, B = 1, random"]


# ------------------------------------------------------- GPUs = replicas x TP --
class ReplicaTable:
    """A job answering from ``table[candidate][replicas - 1]``; it records every call."""

    def __init__(self, table: list[list[float]]):
        self.table, self.calls = table, []

    def __call__(self, member: Member) -> MemberResult:
        p = member.point
        assert member.config.n_replicas == p["replicas"] and member.config.gpus == p["gpus"] == p["replicas"] * p["tp"]
        self.calls.append((p["candidate"], p["gpus"]))
        att = self.table[p["candidate"]][p["replicas"] - 1]
        return MemberResult(member.key, member.point, "done",
                            {"sla_attainment": att, "latency_p99_s": 10.0 + p["candidate"], "throughput_rps": 1.0})


def brute_force(cands, table, target: float, G: int) -> int | None:
    """The fewest GPUs within which some candidate meets the target (a candidate of TP t: floor(g / t) replicas)."""
    for g in range(1, G + 1):
        for ci, c in enumerate(cands):
            used = c.gpus_within(g)
            if used is not None and table[ci][used // c.tp - 1] >= target:
                return g
    return None


def test_the_gpu_budget_search_returns_the_brute_force_answer_over_tp_candidates():
    """Candidates of TP 1, 2 and 4 on random tables monotone in their replicas: the plan's answer is the fewest
    GPUs brute force finds, every run uses whole replicas, none runs twice, and the answer uses all its GPUs."""
    rng = random.Random(3)
    options = dict(modes=("continuous_static",), batch_values=(8, 16), tp_values=(1, 2, 4), evidence=False)
    for _ in range(150):
        G = rng.randint(1, 16)
        o = PlanOptions(max_gpus=G, target=rng.choice([0.5, 0.9, 0.99]), **options)
        cands = candidates(o)
        if not any(c.gpus_within(G) for c in cands):
            continue
        assert [c.tp for c in cands] == [1, 1, 2, 2, 4, 4]
        table = [sorted(rng.choice([0.0, 0.3, 0.6, 0.9, 0.95, 0.99, 1.0]) for _ in range(16)) for _ in cands]
        job = ReplicaTable(table)
        with ThreadPoolExecutor(1) as one:
            res = plan(SimConfig(), WorkloadSpec(num_requests=100), o, executor=one, job=job, workers=1)
        truth = brute_force(cands, table, o.target, G)
        assert res.gpus == truth, (table, o.target, G)
        assert len(job.calls) == len(set(job.calls))
        assert all(g % cands[ci].tp == 0 for ci, g in job.calls)
        at = truth or G
        ranked = [r["candidate"] for r in res.ranking]
        fit = [ci for ci, c in enumerate(cands) if c.gpus_within(at)]
        att = {ci: table[ci][cands[ci].gpus_within(at) // cands[ci].tp - 1] for ci in fit}
        assert ranked == sorted(fit, key=lambda ci: (att[ci] < o.target, -att[ci], ci))
        if truth:
            rec = res.recommended
            assert rec["gpus"] == truth == rec["replicas"] * rec["tp"] and rec["config"]["gpus"] == truth
            assert rec["config"]["tp"] == rec["tp"]
        assert res.counts["grid_cells"] == sum(G // c.tp for c in cands)


def test_pd_ratios_split_the_replicas_and_need_two():
    assert [pd_split("1:3", r) for r in (2, 3, 4, 8, 9)] == [(1, 1), (1, 2), (1, 3), (2, 6), (2, 7)]
    assert [pd_split("1:1", r) for r in (2, 3, 5)] == [(1, 1), (2, 1), (3, 2)]
    for p, d in ((1, 1), (1, 3), (2, 1), (1, 7)):
        prev = 0
        for r in range(2, 40):
            P, D = pd_split(f"{p}:{d}", r)
            assert P + D == r and P >= 1 and D >= 1 and prev <= P   # the prefill pool never shrinks as R grows
            assert abs(P - r * p / (p + d)) <= 0.5 or P in (1, r - 1)
            prev = P
    o = PlanOptions(modes=("static_fifo", "continuous_static"), batch_values=(8,), pd_ratios=(None, "1:3"),
                    routers=("shared_queue", "least_outstanding"), tp_values=(2,))
    cands = candidates(o)
    # a batch-level mode: one shared queue, not disaggregated; a continuous one: every router and ratio but a
    # disaggregated shared queue
    assert [(c.mode, c.router, c.pd) for c in cands] == [
        ("static_fifo", "shared_queue", None), ("continuous_static", "shared_queue", None),
        ("continuous_static", "least_outstanding", None), ("continuous_static", "least_outstanding", "1:3")]
    assert cands[3].label == "continuous_static, B = 8, TP = 2, least_outstanding, P:D 1:3"
    assert cands[0].label == "static_fifo, B = 8, TP = 2, shared_queue, not disaggregated"
    assert cands[3].gpus_within(3) is None and cands[3].gpus_within(5) == 4 and cands[0].gpus_within(5) == 4
    cfg = cands[3].config(SimConfig(), 16)
    assert (cfg.gpus, cfg.tp, cfg.n_replicas, cfg.disaggregate, cfg.router) == (16, 2, 8, "2:6", "least_outstanding")


def test_a_plan_over_pd_ratios_reports_each_split():
    """A disaggregated candidate runs with its ratio's split at every size; rows and the sentence name it."""
    o = PlanOptions(modes=("continuous_static",), batch_values=(8,), pd_ratios=(None, "1:3"), max_gpus=12,
                    target=0.9, evidence=False)
    cands = candidates(o)
    table = [[min(1.0, 0.1 * r) for r in range(1, 17)], [min(1.0, 0.12 * r) for r in range(1, 17)]]
    seen = []

    def job(member: Member) -> MemberResult:
        seen.append((member.point["candidate"], member.config.n_replicas, member.config.disaggregate))
        return ReplicaTable(table)(member)

    with ThreadPoolExecutor(1) as one:
        res = plan(SimConfig(), WorkloadSpec(num_requests=100), o, executor=one, job=job, workers=1).to_dict()
    assert res["gpus"] == brute_force(cands, table, 0.9, 12) == 8
    assert all(pd is None if ci == 0 else pd == "{}:{}".format(*pd_split("1:3", r)) for ci, r, pd in seen)
    rec = res["recommended"]
    assert rec["disaggregate"] == "2:6" and rec["pd_ratio"] == "1:3" and rec["config"]["disaggregate"] == "2:6"
    assert "as 2 prefill + 6 decode replicas behind least_outstanding routers" in res["sentence"]
    assert {(c["pd_ratio"], c["disaggregate"]) for c in res["cells"] if c["gpus"] == 8} == {(None, None),
                                                                                            ("1:3", "2:6")}


# ------------------------------------------------------------ renderings --
@pytest.mark.parametrize("rec,where", [
    (dict(replicas=4, tp=1, router="least_outstanding"), "as 4 replicas behind the least_outstanding router"),
    (dict(replicas=4, tp=2, router="shared_queue"), "as 4 replicas of TP 2 sharing one queue (no deployment "
                                                    "routes so: the ideal bound)"),
    (dict(replicas=1, tp=1, router="least_outstanding"), "as one replica (no routing)"),
    (dict(replicas=4, tp=2, router="random", disaggregate="1:3"),
     "as 1 prefill + 3 decode replicas of TP 2 behind random routers"),
])
def test_the_sentence_names_the_router_it_assumed(rec, where):
    d = {"status": "ok", "rate_rps": 12.0, "target": 0.99, "gpus": 8, "rule": "mean", "confidence": 0.95,
         "below": None, "recommended": {"configuration": "continuous_dynamic, B_max = 64, random", "attainment": 0.995,
                                        "gpus": 8, "mode": "continuous_dynamic", "settings": {"b_max": 64}, **rec}}
    assert plan_sentence(d) == f"8 GPUs with continuous_dynamic, B_max = 64, {where}: 99.5 % within SLA at 12 req/s."
    d["status"], d["gpus"], d["max_gpus"] = "unreachable", None, 8
    assert f"the best, continuous_dynamic, B_max = 64, {where} on 8 GPUs, reaches" in plan_sentence(d)


def test_options_keep_older_plans_keys_and_round_trip():
    assert set(PlanOptions().to_dict()) == {"target", "modes", "max_gpus", "k_values", "b_max_values", "batch_values",
                                            "replications", "rule", "confidence", "evidence", "tolerance", "pilot"}
    o = PlanOptions(routers=["random"], tp_values=[1, 2], pd_ratios=[None, "1:3"])
    assert o.routers == ("random",) and PlanOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o


@pytest.mark.parametrize("kw,cfg,message", [
    (dict(routers=("nearest",)), {}, "routers: unknown router(s) nearest"),
    (dict(routers=()), {}, "routers: unknown router(s) (none)"),
    (dict(routers=("random", "random")), {}, "routers: a router is listed twice"),
    (dict(routers="random"), {}, "routers: give a list of values"),
    (dict(tp_values=(0,)), {}, "tp_values: values must be whole numbers from 1 to 64"),
    (dict(tp_values=(2, 2)), {}, "tp_values: 2 is listed twice"),
    (dict(tp_values=(32,), max_gpus=16), {}, "tp_values: every TP needs more GPUs than max_gpus (16)"),
    (dict(pd_ratios=("1:0",)), {}, "pd_ratios: each ratio must be P:D"),
    (dict(pd_ratios=("1:1", "1: 1")), {}, "pd_ratios: a ratio is listed twice"),
    (dict(pd_ratios=("1:1",), routers=("shared_queue",), modes=("continuous_static",)), {},
     "continuous_static has no candidate"),
    (dict(pd_ratios=("1:1",), max_gpus=1, modes=("continuous_static",)), {}, "max_gpus: no candidate fits in 1 GPUs"),
    (dict(), dict(disaggregate="1:1"), "disaggregate: the plan chooses it"),
    (dict(tp_values=(1, 2)), dict(gpu_mem_gb=10.0, weights_gb=12.0, tp=2, gpus=4),
     "candidate static_fifo, B = 8, TP = 1: weights_gb"),
])
def test_bad_cluster_inputs_are_named(kw, cfg, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_plan_inputs(SimConfig(**cfg), WorkloadSpec(), PlanOptions(**kw))


# ------------------------------------------------------------------- CLI --
def test_plan_cli_tries_routers_and_tp_and_reports_them():
    from batchlab.cli import cli

    args = ["plan", "--no-store", "--json", "--workers", "2", "--modes", "continuous_dynamic", "--b-max-candidates",
            "64", "--routers", "random,least_outstanding", "--tp-candidates", "1,2", "--max-gpus", "10",
            "--num-requests", "1500", "--rate", "40", "--target", "0.9", "--no-evidence"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [(c["tp"], c["router"]) for c in out["candidates"]] == [(1, "random"), (1, "least_outstanding"),
                                                                    (2, "random"), (2, "least_outstanding")]
    for row in out["cells"]:
        assert row["gpus"] == row["replicas"] * row["tp"] and row["gpus"] % row["tp"] == 0
    rec = out["recommended"]
    assert rec["replicas"] > 1 and rec["config"]["tp"] == rec["tp"] and rec["config"]["router"] == rec["router"]
    assert f"as {rec['replicas']} replicas" in out["sentence"] and f"the {rec['router']} router" in out["sentence"]
    text = CliRunner().invoke(cli, [a for a in args if a != "--json"])
    assert "router" in text.stdout.splitlines()[next(i for i, line in enumerate(text.stdout.splitlines())
                                                     if line.startswith("Candidates at")) + 1]


@pytest.mark.parametrize("args,message", [
    (["--replicas", "2"], "No such option '--replicas'"),
    (["--disaggregate", "1:1"], "No such option '--disaggregate'"),
    (["--router", "random", "--routers", "random,shared_queue"], "router: the plan tries --routers"),
    (["--tp", "2", "--tp-candidates", "1,2"], "tp: the plan tries --tp-candidates"),
    (["--routers", "nearest"], "routers: unknown router(s) nearest"),
    (["--tp-candidates", "a"], "'a' is not a comma-separated list of integers"),
    (["--pd-ratios", "1:x"], "pd_ratios: each ratio must be P:D"),
])
def test_plan_cli_cluster_errors_are_one_line(args, message):
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["plan", "--no-store", *args])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
