"""Request classes: per-class attainment by hand, priority serving, parse errors, capacity and plan targets."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from batchlab.core import SimConfig, simulate
from batchlab.core.capacity import capacity
from batchlab.core.config import ConfigError
from batchlab.core.plan import plan
from batchlab.core.plan_options import PlanOptions
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.workload import Workload

TWO = "interactive:priority=0:ttft=2s:tpot=40ms;batch:priority=1:e2e=600s:ttft=none"
MIX = "0:0.2,1:0.8"


def _attainment(req: dict, m: np.ndarray, ttft, tbt, e2e) -> float:
    """Share of the requests in ``m`` meeting every deadline given (None = off), written out by hand."""
    ok = np.ones(len(req["finish"]), bool)
    if ttft is not None:
        ok &= req["ttft"] <= ttft
    if tbt is not None:
        ok &= np.isnan(req["tbt"]) & np.isfinite(req["finish"]) | (req["tbt"] <= tbt)
    if e2e is not None:
        ok &= req["e2e"] <= e2e
    return float(ok[m].mean())


# ------------------------------------------------------- per-class attainment --
@pytest.mark.parametrize("mode", ["static_fifo", "continuous_static"])
def test_per_class_attainment_and_percentiles_are_the_per_request_arrays_split_by_priority(mode):
    w = build_workload(WorkloadSpec(num_requests=500, rate=2.5, workload_seed=4, priority_mix=MIX))
    cfg = SimConfig(mode=mode, gpus=1, batch_size=8, classes=TWO, d_sla_e2e=30.0)
    res = simulate(cfg, w)
    req = res.requests
    inter, batch = res.summary["classes"]
    m0, m1 = w.priority == 0, w.priority == 1
    assert (inter["requests"], batch["requests"]) == (int(m0.sum()), int(m1.sum()))
    assert inter["share"] == pytest.approx(m0.mean()) and 0.1 < inter["share"] < 0.3   # priority_mix's 20 %
    # interactive: its own TTFT and TPOT, the run's E2E (30 s); batch: the run's TBT (50 ms), its own E2E, no TTFT
    assert inter["attainment"] == pytest.approx(_attainment(req, m0, 2.0, 0.040, 30.0))
    assert batch["attainment"] == pytest.approx(_attainment(req, m1, None, 0.050, 600.0))
    assert (inter["d_ttft_s"], inter["d_tbt_s"], inter["d_e2e_s"]) == (2.0, 0.04, 30.0)
    assert (batch["d_ttft_s"], batch["d_tbt_s"], batch["d_e2e_s"]) == (None, 0.05, 600.0)
    assert inter["ttft_p99_s"] == pytest.approx(np.percentile(req["ttft"][m0], 99))
    assert batch["e2e_p50_s"] == pytest.approx(np.percentile(req["e2e"][m1], 50))
    assert res.summary["slo_attainment"] == min(inter["attainment"], batch["attainment"])


def test_priority_serving_raises_the_interactive_classs_attainment():
    """One GPU running 8 sequences at most, offered more than it serves: under fcfs the interactive 20 %
    wait behind everyone; vLLM's priority queue admits them first (docs/semantics.md#request-classes)."""
    w = build_workload(WorkloadSpec(num_requests=600, rate=3.0, workload_seed=1, priority_mix=MIX,
                                    arrival="poisson"))
    got = {}
    for policy in ("fcfs", "priority"):
        cfg = SimConfig(mode="continuous_static", gpus=1, batch_size=8, queue_policy=policy,
                        classes="interactive:priority=0:ttft=2s;batch:priority=1:e2e=600s")
        got[policy] = {c["name"]: c for c in simulate(cfg, w).summary["classes"]}
    assert got["fcfs"]["interactive"]["attainment"] < 0.2 < 0.8 < got["priority"]["interactive"]["attainment"]
    assert got["priority"]["interactive"]["ttft_p99_s"] < got["fcfs"]["interactive"]["ttft_p99_s"] / 10


def test_a_workload_without_priorities_is_all_priority_zero():
    w = build_workload(WorkloadSpec(num_requests=100, rate=1.0))
    s = simulate(SimConfig(mode="static_fifo", classes="everyone:priority=0"), w).summary
    assert s["classes"][0]["requests"] == 100 and s["classes"][0]["attainment"] == s["sla_attainment"]


def test_a_traces_priorities_and_a_rejected_request():
    """Priorities as a trace's Priority column gives them (any integers); a request too large for the GPU is
    rejected, misses its class's every deadline and counts as +inf in a percentile SLO."""
    n = 40
    prompt = np.full(n, 200)
    prompt[7] = 10_000_000   # never fits: rejected
    w = Workload(arrival=np.arange(n) * 2.0, prompt=prompt, output=np.full(n, 20), predicted=np.full(n, 20),
                 priority=np.where(np.arange(n) % 4 == 3, -1, 5))
    cfg = SimConfig(mode="static_fifo", gpus=1, classes="urgent:priority=-1:ttft=5s;rest:priority=5",
                    slo="ttft:p50:5s,ttft:p99:5s")
    s = simulate(cfg, w).summary
    urgent, rest = s["classes"]
    assert (urgent["requests"], rest["requests"], urgent["rejected"], rest["rejected"]) == (10, 30, 1, 0)
    assert urgent["attainment"] == pytest.approx(0.9) and rest["attainment"] == 1.0   # the rejected one misses
    p50, p99 = s["slos"]
    assert p50["met"] and p99["measured_s"] == math.inf and not p99["met"] and s["slo_attainment"] == 0.0


def test_a_priority_without_a_class_is_refused_before_the_run():
    w = build_workload(WorkloadSpec(num_requests=200, rate=1.0, priority_mix=MIX))
    with pytest.raises(ConfigError, match=r"^classes: \d+ request\(s\) have priority 1, which no class holds"):
        simulate(SimConfig(mode="static_fifo", classes="interactive:priority=0"), w)


@pytest.mark.parametrize("text,named", [
    ("1st:priority=0", "'1st' is not a class name"),
    ("a:priority=zero", "class a, 'priority=zero': the priority must be an integer"),
    ("a:ttft=1s", "class a has no priority=P"),
    ("a:priority=0:ttft", "class a, 'ttft': expected KEY=VALUE"),
    ("a:priority=0:ttft=soon", "class a, 'ttft=soon': 'soon' is not a positive duration"),
    ("a:priority=0:tpot=1s:tbt=2s", "class a, 'tbt=2s': tpot is given twice"),
    ("a:priority=0:share=0.2", "class a, 'share=0.2': unknown key 'share'"),
    ("a:priority=0;a:priority=1", "the name a is given twice"),
    ("a:priority=0;b:priority=0", "a and b both hold priority 0"),
])
def test_parse_errors_name_the_bad_part(text, named):
    with pytest.raises(ConfigError) as err:
        SimConfig(classes=text)
    assert str(err.value).startswith("classes: ") and named in str(err.value)


def test_canonical_text():
    assert SimConfig(classes=" chat : priority=0 : TTFT=0.5 ; bulk:priority=3:e2el=2m s".replace("2m s", "120s")
                     ).classes == "chat:priority=0:ttft=500ms;bulk:priority=3:e2e=120s"


# ------------------------------------------------------ capacity and plan --
# M/M/c (batch size 1, exponential service of mean 0.1 s), two classes by priority with their own E2E deadline
MMC = dict(mode="static_fifo", batch_size=1, prefill_base=0.0, prefill_per_token=0.0, decode_base=1 / 5000,
           decode_per_seq=0.0, decode_per_ctx_token=0.0, d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None,
           classes="interactive:priority=0:e2e=0.3s;batch:priority=1:e2e=1s")
MMC_SPEC = dict(arrival="poisson", prompt_lengths="fixed:1", output_lengths="geometric:500", predictor="oracle",
                priority_mix="0:0.3,1:0.7")


def _classes(cfg: SimConfig, spec: WorkloadSpec) -> dict[str, float]:
    return {c["name"]: c["attainment"] for c in simulate(cfg, build_workload(spec)).summary["classes"]}


def test_plan_meets_every_class_and_one_gpu_fewer_does_not():
    target = 0.9
    cfg, spec = SimConfig(**MMC), WorkloadSpec(num_requests=6000, rate=30.0, **MMC_SPEC)
    options = PlanOptions(modes=("static_fifo",), batch_values=(1,), max_gpus=10, target=target, evidence=False)
    with ThreadPoolExecutor(2) as pool:
        res = plan(cfg, spec, options, executor=pool, workers=2)
    assert res.status == "ok" and "for every class (interactive, batch)" in res.sentence
    planned = SimConfig.from_dict(res.recommended["config"])
    at_g = _classes(planned, spec)
    assert min(at_g.values()) >= target and res.recommended["attainment"] == pytest.approx(min(at_g.values()))
    fewer = _classes(planned.replace(gpus=res.gpus - 1), spec)
    assert res.below["gpus"] == res.gpus - 1 and min(fewer.values()) < target
    # the tight interactive class decides: the run's 1 s deadline alone would be met on fewer GPUs
    loose = plan(cfg.replace(classes=None, d_sla_e2e=1.0), spec, options, workers=1)
    assert loose.gpus < res.gpus


def test_capacity_is_the_highest_rate_where_every_class_meets_the_target():
    cfg, spec = SimConfig(**MMC, gpus=3), WorkloadSpec(num_requests=3000, rate=10.0, **MMC_SPEC)
    res = capacity(cfg, spec, target=0.9, tolerance=0.05, workers=1)
    assert res.status == "ok"
    lo, hi = res.brackets[0]
    assert min(_classes(cfg, spec.replace(rate=lo)).values()) >= 0.9
    assert min(_classes(cfg, spec.replace(rate=hi)).values()) < 0.9
    plain = capacity(cfg.replace(classes=None, d_sla_e2e=1.0), spec, target=0.9, tolerance=0.05, workers=1)
    assert plain.capacity_rps > res.capacity_rps
