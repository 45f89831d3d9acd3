"""The continuous engine's named policies (preempt_policy, queue_policy) and request priorities: the
compiled engine against its step-by-step reference twins, cases with known answers, bad settings and
inputs, and the identities of runs that use neither."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_continuous_engine import assert_equals_reference, continuous_configs, fits, preempting_share, small_workloads

from batchlab.core import SimConfig, simulate
from batchlab.core.config import CONTINUOUS_MODES, MODES, PREEMPT_POLICIES, QUEUE_POLICIES, ConfigError
from batchlab.core.identity import run_hash, run_identity
from batchlab.core.latency import ParametricLatency
from batchlab.workloads.build import load_trace_bytes
from batchlab.workloads.workload import Workload, WorkloadError

POLICIES = ("preempt_policy", "queue_policy")


def with_priorities(w: Workload, levels: int, seed: int) -> Workload:
    priority = np.random.default_rng(seed).integers(0, levels, len(w))
    return Workload(w.arrival, w.prompt, w.output, w.predicted, priority=priority)


# every pair but the defaults (which the engine's own reference tests cover): a policy added to
# core.config is compared with its reference twin with no change here
@pytest.mark.parametrize("preempt,queue", [(p, q) for p in PREEMPT_POLICIES for q in QUEUE_POLICIES
                                           if (p, q) != (PREEMPT_POLICIES[0], QUEUE_POLICIES[0])])
def test_the_policies_equal_their_reference_twins_under_preemption(preempt, queue):
    """Every request as in the step-by-step reference, on tight memory so that most examples preempt
    (the victim policy matters only then); priorities from 1 level (all equal: ties) to 4."""
    @settings(max_examples=40, derandomize=True)
    @given(cfg=continuous_configs(CONTINUOUS_MODES), w=small_workloads(crowded=True),
           tight=st.sampled_from([16.2, 16.3]), levels=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
    def check(preempted, cfg, w, tight, levels, seed):
        cfg = replace(cfg, preempt_policy=preempt, queue_policy=queue, gpu_mem_gb=tight, b_max=max(cfg.b_max, 12),
                      batch_size=max(cfg.batch_size, 8), mem_margin="none")
        assume(fits(cfg, w))
        preempted.append(assert_equals_reference(cfg, with_priorities(w, levels, seed)) > 0)

    assert preempting_share(check, 40) > 1 / 2


def test_the_policies_equal_their_reference_twins_on_any_load():
    @settings(max_examples=60, derandomize=True)
    @given(cfg=continuous_configs(CONTINUOUS_MODES), w=small_workloads(), preempt=st.sampled_from(["newest", "priority"]),
           queue=st.sampled_from(["fcfs", "priority"]), levels=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
    def check(preempted, cfg, w, preempt, queue, levels, seed):
        cfg = replace(cfg, preempt_policy=preempt, queue_policy=queue)
        assume(fits(cfg, w))
        preempted.append(assert_equals_reference(cfg, with_priorities(w, levels, seed)) > 0)

    preempting_share(check, 60)


def one_gpu(**changes) -> SimConfig:
    return SimConfig(mode="continuous_static", gpus=1, d_sla_tbt=None, **changes)


def test_the_priority_queue_admits_the_smallest_priority_value_first():
    """Four requests wait behind a running one (batch of 1): fcfs serves them in arrival order,
    priority by (priority, arrival)."""
    w = Workload(np.array([0.0, 0.1, 0.2, 0.3, 0.4]), np.full(5, 10), np.full(5, 20), np.full(5, 20),
                 priority=np.array([0, 5, -1, 5, 2]))
    fcfs = simulate(one_gpu(batch_size=1), w).requests["start"]
    prio = simulate(one_gpu(batch_size=1, queue_policy="priority"), w).requests["start"]
    assert list(np.argsort(fcfs, kind="stable")) == [0, 1, 2, 3, 4]
    assert list(np.argsort(prio, kind="stable")) == [0, 2, 4, 1, 3]


def test_the_priority_victim_is_the_largest_priority_value_not_the_newest():
    """Two requests outgrow a GPU of ~1,300 KV tokens: newest preempts the one admitted last, priority
    the one with the larger priority value (here the older one)."""
    w = Workload(np.array([0.0, 0.0]), np.array([100, 100]), np.array([700, 700]), np.array([700, 700]),
                 priority=np.array([3, 1]))
    base = one_gpu(batch_size=2, gpu_mem_gb=16.2, block_size=1, kv_watermark=0.0)
    newest = simulate(base, w).requests["preemptions"]
    prio = simulate(base.replace(preempt_policy="priority"), w).requests["preemptions"]
    assert newest[1] > 0 and newest[0] == 0
    assert prio[0] > 0 and prio[1] == 0


@pytest.mark.parametrize("name", POLICIES)
def test_an_unknown_policy_is_refused_by_name(name):
    with pytest.raises(ConfigError) as err:
        SimConfig(**{name: "shortest"})
    assert err.value.field == name and "priority" in str(err.value)


def test_priorities_that_are_not_whole_numbers_in_range_are_refused():
    base = (np.array([0.0, 1.0]), np.full(2, 10), np.full(2, 10), np.full(2, 10))
    for bad in ([0, 0.5], [0, 2**40], [0, np.nan], [1]):
        with pytest.raises(WorkloadError, match="priority"):
            Workload(*base, priority=np.array(bad))


# ------------------------------------------------------------------ identities --
@pytest.mark.parametrize("mode", MODES)
def test_a_run_at_the_default_policies_keeps_the_identity_it_had_before_them(mode):
    """The policies at their defaults leave the hashed settings as they were before the settings existed;
    another policy is a different run (continuous modes only: the batch engines have neither)."""
    cfg = SimConfig(mode=mode)
    w = Workload(np.array([0.0]), np.array([10]), np.array([10]), np.array([10]))
    latency = ParametricLatency()
    before = {k: v for k, v in cfg.relevant_dict().items() if k not in POLICIES}
    assert run_identity(cfg, w, latency) == run_hash(before, w.identity, latency.identity)
    for name in POLICIES:
        other = run_identity(cfg.replace(**{name: "priority"}), w, latency)
        assert (other != run_identity(cfg, w, latency)) == cfg.continuous


def test_a_workload_without_priorities_keeps_its_content_hash():
    arrays = (np.array([0.0, 0.5]), np.array([3, 4]), np.array([5, 6]), np.array([7, 8]))
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.asarray(a, dtype=np.float64 if a.dtype.kind == "f" else np.int64).tobytes())
    h.update(repr(0.0).encode())
    plain = Workload(*arrays)
    assert plain.identity["sha256"] == h.hexdigest()
    assert Workload(*arrays, priority=np.array([0, 0])).identity["sha256"] != h.hexdigest()


# ---------------------------------------------------------------------- traces --
TRACE = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type{extra}\n"


def trace(rows, priority=None) -> bytes:
    extra = ",Priority" if priority is not None else ""
    lines = [TRACE.format(extra=extra)]
    for i, (t, p, o) in enumerate(rows):
        tail = f",{priority[i]}" if priority is not None else ""
        lines.append(f"{t},ChatGPT,{p},{o},{p + o},Conversation log{tail}\n")
    return "".join(lines).encode()


def test_a_traces_priority_column_follows_its_rows_through_sorting_and_dropped_failures():
    rows = [(2, 10, 5), (0, 11, 6), (1, 12, 0), (3, 13, 7)]
    w = load_trace_bytes(trace(rows, ["4", "-2", "9", "0"]), name="prio.csv")
    assert w.prompt.tolist() == [11, 10, 13]
    assert w.priority.tolist() == [-2, 4, 0]
    assert load_trace_bytes(trace(rows), name="plain.csv").priority is None


def test_a_bad_priority_in_a_trace_names_its_line():
    with pytest.raises(WorkloadError, match=r"line 3, column Priority: '1.5'"):
        load_trace_bytes(trace([(0, 10, 5), (1, 10, 5)], ["1", "1.5"]), name="bad.csv")


def test_a_synthetic_priority_mix_is_served_first_under_the_priority_policies_and_not_under_fcfs():
    """A tenth of the requests at priority 0 under load: vLLM's priority scheduler serves them first
    (mean TTFT 0.12 s against 0.32 s measured); FCFS ignores the classes (0.26 and 0.27 s)."""
    from batchlab.workloads import WorkloadSpec, build_workload

    w = build_workload(WorkloadSpec(num_requests=3000, rate=14.0, priority_mix="0:0.1,1:0.9"))
    first = w.priority == 0
    ttft = simulate(SimConfig(queue_policy="priority", preempt_policy="priority"), w).requests["ttft"]
    assert ttft[first].mean() < 0.6 * ttft[~first].mean()
    ttft = simulate(SimConfig(), w).requests["ttft"]
    assert abs(ttft[first].mean() - ttft[~first].mean()) < 0.2 * ttft.mean()
