"""batchlab's continuous engine against vLLM 0.33's own scheduler (core.vllm_reference, core.vllm_compare).

The differential cases assert what holds today: with vLLM's max_tokens = batchlab's output (both
emit o tokens), every request's TTFT and E2E agree to 1e-6 s, and its preemptions exactly (cap
binding, prefix caching on or off with nothing preempted, tight memory with many preemptions and
prefix caching off, chunked prefill under a token budget shared with decodes, a watermark).
vLLM comes from batchlab[vllm]; without it those cases are skipped with the reason.
"""
from __future__ import annotations

import json
import math
import sys
from importlib.util import find_spec

import numpy as np
import pytest
from click.testing import CliRunner

from batchlab.cli import cli
from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.latency import ParametricLatency
from batchlab.core.memory import MemoryModel
from batchlab.core.vllm_compare import TOLERANCE_S, check_config, known_differences, vllm_settings
from batchlab.core.vllm_reference import VllmSettings, VllmUnavailable, check_vllm, iteration_time, run_vllm
from batchlab.workloads import build_workload
from batchlab.workloads.spec import WorkloadSpec
from batchlab.workloads.workload import PrefixKeys, Workload

needs_vllm = pytest.mark.skipif(find_spec("vllm") is None,
                                reason="vLLM is not installed (batchlab[vllm]; vllm itself with --no-deps)")
LAT = ParametricLatency()
BASE = dict(num_requests=80, rate=20.0, prompt_lengths="uniform:20:400", output_lengths="uniform:1:200")
TIGHT_MEM = 16.2          # GB: 85 KV blocks of 16 tokens with the default model shape


def config(**changes) -> SimConfig:
    return SimConfig(**{"mode": "continuous_static", "gpus": 1, "kv_watermark": 0.0, **changes})


def both(cfg: SimConfig, workload: dict, **options):
    from batchlab.core.vllm_compare import compare

    return compare(cfg, build_workload(WorkloadSpec(**workload)), LAT, **options)


def assert_agree(c) -> None:
    gap = np.maximum(np.abs(c.d_ttft), np.abs(c.d_e2e))
    worst = int(np.argmax(gap))
    assert gap[worst] <= TOLERANCE_S, (f"request {worst}: TTFT {c.ttft[0][worst]} / {c.ttft[1][worst]}, "
                                       f"E2E {c.e2e[0][worst]} / {c.e2e[1][worst]} (batchlab / vLLM)")
    assert c.iterations[0] == c.iterations[1]
    assert not c.preemptions[0].any() and not c.preemptions[1].any()


# ------------------------------------------------------------------ without vLLM
def test_an_iteration_is_the_engines_prefill_plus_decode_step():
    t = iteration_time(LAT, 2, 300, 3, 600)
    assert t == pytest.approx((0.020 + 5e-5 * 300) + (0.030 + 2.2e-4 * 3 + 1e-7 * 600), rel=1e-12)
    assert iteration_time(LAT, 0, 0, 1, 50) == pytest.approx(0.030 + 2.2e-4 + 1e-7 * 50, rel=1e-12)
    assert iteration_time(LAT, 1, 100, 0, 0) == pytest.approx(0.020 + 5e-5 * 100, rel=1e-12)


@pytest.mark.parametrize("changes, message", [
    (dict(block_size=0), "block_size must be at least 1, got 0"),
    (dict(max_num_seqs=0), "max_num_seqs must be at least 1"),
    (dict(max_num_batched_tokens=0), "max_num_batched_tokens must be at least 1"),
    (dict(watermark=1.0), r"watermark must be in \[0, 1\), got 1.0"),
    (dict(policy="lifo"), "policy must be one of fcfs, priority, got 'lifo'"),
])
def test_bad_vllm_settings_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        VllmSettings(**changes)


@pytest.mark.parametrize("arrays, message", [
    (([0.0, 1.0], [10], [3, 3]), "same, non-zero length"),
    (([1.0, 0.0], [10, 10], [3, 3]), "sorted"),
    (([0.0, 1.0], [0, 10], [3, 3]), "prompt of at least 1 token"),
    (([0.0, 1.0], [10, 10], [3, 0]), "max_tokens of at least 1"),
])
def test_bad_requests_are_refused_before_vllm_is_touched(arrays, message):
    with pytest.raises(ValueError, match=message):
        run_vllm(VllmSettings(), *(np.array(a) for a in arrays), LAT)


def test_the_settings_map_to_vllms_names():
    cfg = config(batch_size=12, max_num_batched_tokens=512, block_size=32, kv_watermark=0.02, queue_policy="priority",
                 preempt_policy="priority", enable_prefix_caching=False)
    s = vllm_settings(cfg)
    blocks = MemoryModel.from_config(cfg).eta // 32
    assert (s.block_size, s.num_blocks, s.max_num_seqs, s.max_num_batched_tokens) == (32, blocks, 12, 512)
    assert (s.watermark, s.enable_prefix_caching, s.enable_chunked_prefill, s.policy) == (0.02, False, True,
                                                                                         "priority")
    assert vllm_settings(config()).max_num_batched_tokens == 2048      # vLLM's default below 70 GiB
    assert vllm_settings(config()).policy == "fcfs" and vllm_settings(config()).enable_prefix_caching
    with pytest.raises(ConfigError, match="vLLM has no scheduling policy with queue_policy priority"):
        vllm_settings(config(queue_policy="priority"))                   # vLLM's one policy sets both


@pytest.mark.parametrize("changes, field", [(dict(mode="continuous_dynamic"), "mode"), (dict(gpus=2), "gpus")])
def test_only_continuous_static_on_one_gpu_is_compared(changes, field):
    cfg = SimConfig(**{"mode": "continuous_static", "gpus": 1, **changes})
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert info.value.field == field


def test_the_known_differences_name_what_applies():
    assert known_differences(config(), vllm_settings(config()), preempted=False, keyed=False) == []
    off = config(enable_prefix_caching=False)
    assert known_differences(off, vllm_settings(off), preempted=True, keyed=False) == []
    cfg = config(max_num_batched_tokens=256, kv_watermark=0.01)
    assert known_differences(cfg, vllm_settings(cfg), preempted=True, keyed=True) == []   # batchlab caches too
    notes = known_differences(cfg, vllm_settings(cfg), preempted=True, keyed=False)
    assert len(notes) == 1 and "still in its prefix cache" in notes[0]


def test_a_missing_vllm_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)     # as if not installed
    with pytest.raises(VllmUnavailable, match=r"needs batchlab\[vllm\] \(vllm 0\.33\.0: .*\[vllm\] extra"):
        check_vllm()
    res = CliRunner().invoke(cli, ["validate", "vllm", "--num-requests", "5"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "needs batchlab[vllm]" in res.stderr


def test_validate_refuses_other_modes_in_one_line():
    res = CliRunner().invoke(cli, ["validate", "vllm", "--mode", "continuous_dynamic"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "mode" in res.stderr and "continuous_static" in res.stderr


# ------------------------------------------------------------------ vLLM's own scheduler
@needs_vllm
def test_one_request_runs_its_prefill_then_max_tokens_minus_one_decode_steps():
    p, m = 100, 5
    trace = run_vllm(VllmSettings(num_blocks=64), np.array([0.5]), np.array([p]), np.array([m]), LAT)
    first = 0.5 + LAT.prefill_time(1, p)
    assert trace.first_token[0] == pytest.approx(first, abs=1e-12)
    finish = first + sum(LAT.decode_step_time(1, p + s) for s in range(m - 1))
    assert trace.finish[0] == pytest.approx(finish, abs=1e-12)
    assert (trace.tokens[0], trace.scheduled_steps[0], trace.iterations, trace.preemptions[0]) == (m, m, m, 0)


@needs_vllm
@pytest.mark.parametrize("prefix_caching", [True, False])
def test_with_the_cap_binding_every_request_agrees(prefix_caching):
    assert_agree(both(config(batch_size=4), BASE, prefix_caching=prefix_caching))


@needs_vllm
def test_priority_scheduling_with_the_cap_binding_agrees():
    """vLLM's priority policy against queue_policy = preempt_policy = priority, requests of 3 levels:
    the waiting queue is served by priority, so the order differs from arrival order and still agrees."""
    from batchlab.core.vllm_compare import compare

    w = build_workload(WorkloadSpec(**BASE))
    levels = np.random.default_rng(7).integers(0, 3, len(w))
    w = Workload(w.arrival, w.prompt, w.output, w.predicted, priority=levels)
    c = compare(config(batch_size=4, queue_policy="priority", preempt_policy="priority"), w, LAT)
    assert_agree(c)
    fcfs = compare(config(batch_size=4), w, LAT)
    assert np.abs(fcfs.ttft[0] - c.ttft[0]).max() > 1.0     # the priorities reordered the queue


@needs_vllm
def test_chunked_prefill_with_one_running_request_agrees():
    workload = dict(BASE, num_requests=20, rate=5.0, prompt_lengths="uniform:20:1000")
    c = both(config(batch_size=1, max_num_batched_tokens=128), workload)
    assert_agree(c)
    assert (c.prompt > 2 * 128).any()       # some prompts took several chunks


@needs_vllm
def test_a_watermark_both_keep_the_same_agrees_until_the_first_preemption():
    cfg = config(batch_size=32, gpu_mem_gb=TIGHT_MEM, kv_watermark=0.105)
    blocks = MemoryModel.from_config(cfg).eta // cfg.block_size
    assert math.ceil(0.105 * blocks) == int(0.105 * (blocks + 1))      # the same blocks kept free
    c = both(cfg, dict(BASE, num_requests=120, rate=2.0, output_lengths="uniform:1:300"))
    first = c.first_preemption[0]
    assert abs(first - c.first_preemption[1]) <= TOLERANCE_S
    started = c.arrival + np.fmax(*c.ttft) <= first            # first tokens before any preemption
    assert started.sum() >= 5 and c.before_preemption.any()
    assert np.abs(c.d_ttft[started]).max() <= TOLERANCE_S
    assert np.abs(c.d_e2e[c.before_preemption]).max() <= TOLERANCE_S


@needs_vllm
def test_under_tight_memory_both_first_preempt_at_the_same_iteration():
    c = both(config(batch_size=32, gpu_mem_gb=TIGHT_MEM), dict(BASE, num_requests=120, output_lengths="uniform:1:300"))
    assert c.preemptions[0].sum() > 0 and c.preemptions[1].sum() > 0
    assert abs(c.first_preemption[0] - c.first_preemption[1]) <= TOLERANCE_S


@needs_vllm
def test_under_tight_memory_every_request_agrees():
    """Many preemptions, each resumed as vLLM does: prompt and generated tokens recomputed in one step that
    samples the next token."""
    c = both(config(batch_size=32, gpu_mem_gb=TIGHT_MEM), dict(BASE, num_requests=120, output_lengths="uniform:1:300"),
             prefix_caching=False)
    gap = np.maximum(np.abs(c.d_ttft), np.abs(c.d_e2e))
    assert gap.max() <= TOLERANCE_S and (c.preemptions[0] == c.preemptions[1]).all()
    assert c.preemptions[0].sum() >= 60 and c.iterations[0] == c.iterations[1]   # 80 preemptions measured


@needs_vllm
def test_chunked_prefill_beside_decodes_agrees():
    """A budget of 256 tokens shared by the decodes (one each, served first) and the prompt chunks."""
    c = both(config(batch_size=8, max_num_batched_tokens=256), dict(BASE, rate=10.0, prompt_lengths="uniform:20:1000"))
    assert_agree(c)
    assert (c.prompt > 256).sum() >= 10      # many prompts took several chunks


@needs_vllm
@pytest.mark.parametrize("budget, prompts, seed", [(128, "uniform:20:600", 2), (512, "uniform:100:1200", 3)])
def test_chunked_prefill_under_tight_memory_agrees(budget, prompts, seed):
    """Prompts chunked under a small budget while memory runs short: blocks come chunk by chunk, a
    chunk that does not fit preempts (the prompt being chunked, the newest), and a resumed request's
    recompute is chunked too."""
    c = both(config(batch_size=32, gpu_mem_gb=TIGHT_MEM, max_num_batched_tokens=budget),
             dict(BASE, num_requests=150, rate=10.0, arrival="gamma", prompt_lengths=prompts,
                  output_lengths="uniform:1:300", workload_seed=seed), prefix_caching=False)
    assert np.maximum(np.abs(c.d_ttft), np.abs(c.d_e2e)).max() <= TOLERANCE_S
    assert c.iterations[0] == c.iterations[1]
    assert (c.preemptions[0] == c.preemptions[1]).all() and c.preemptions[0].sum() >= 20   # 68 and 33 measured
    assert (c.prompt > budget).sum() >= 20


@needs_vllm
def test_validate_prints_the_comparison_as_json():
    res = CliRunner().invoke(cli, ["validate", "vllm", "--num-requests", "40", "--batch-size", "4",
                                   "--kv-watermark", "0", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    j = json.loads(res.stdout)
    assert j["requests"] == 40 and j["vllm_version"] == "0.33.0"
    assert j["max_abs_d_ttft_s"] <= TOLERANCE_S and j["max_abs_d_e2e_s"] <= TOLERANCE_S
    assert j["requests_differing"] == 0 and j["worst"] == []
    assert j["iterations"]["batchlab"] == j["iterations"]["vllm"]
    assert j["vllm_settings"]["max_num_seqs"] == 4 and j["vllm_settings"]["max_tokens"] == "o"
    assert j["known_differences"] == []


@needs_vllm
def test_validate_reports_differences_with_exit_code_zero():
    res = CliRunner().invoke(cli, ["validate", "vllm", "--num-requests", "60", "--batch-size", "32",
                                   "--gpu-mem-gb", str(TIGHT_MEM), "--kv-watermark", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "worst requests" in out and "first preemption at: batchlab" in out
    assert "resume after preemption" in out


@needs_vllm
def test_compare_leaves_out_what_one_gpu_never_serves():
    from batchlab.core.vllm_compare import compare

    w = Workload(np.array([0.0, 0.1, 0.2]), np.array([10, 0, 50]), np.array([3, 2, 4]), np.array([3, 2, 4]))
    c = compare(config(batch_size=2), w, LAT)
    assert c.left_out == 1 and len(c.arrival) == 2 and list(c.prompt) == [10, 50]


# ------------------------------------------------------------------ prefix caching against vLLM
SHARED = dict(BASE, num_requests=150, rate=10.0, prompt_lengths="uniform:20:600", output_lengths="uniform:1:300")


def assert_exact(c) -> None:
    """Every request, every preemption and iteration, and the prompt tokens found cached agree."""
    gap = np.maximum(np.abs(c.d_ttft), np.abs(c.d_e2e))
    worst = int(np.argmax(gap))
    assert gap[worst] <= TOLERANCE_S, (f"request {worst}: TTFT {c.ttft[0][worst]} / {c.ttft[1][worst]}, "
                                       f"E2E {c.e2e[0][worst]} / {c.e2e[1][worst]} (batchlab / vLLM)")
    assert (c.preemptions[0] == c.preemptions[1]).all() and c.iterations[0] == c.iterations[1]
    assert c.prefix_hits[0] == c.prefix_hits[1]
    assert c.differences == []


@needs_vllm
@pytest.mark.parametrize("sharing, memory, budget, seed", [
    (dict(system_prompts=3, system_prompt_tokens=400), None, None, 11),             # hits, no preemption
    (dict(system_prompts=5, system_prompt_tokens=300, system_zipf=0.5), TIGHT_MEM, None, 12),  # + evictions
    (dict(system_prompts=2, system_prompt_tokens=500), TIGHT_MEM, 128, 13),      # + chunks under a budget
    (dict(conversation_turns=4, think_time=5.0), TIGHT_MEM, 256, 14),            # conversations
    (dict(conversation_turns=3, think_time=0.5, system_prompts=2, system_prompt_tokens=200), TIGHT_MEM, None, 15),
])
def test_prefix_hits_agree_request_by_request(sharing, memory, budget, seed):
    """Shared system prompts and conversations (whose next turn holds the previous prompt and reply; with a
    short think time it arrives while the reply is still being generated) through vLLM's own prefix cache:
    hits, LRU evictions, a preempted request finding its own blocks, chunks under a token budget."""
    changes = {"batch_size": 32, **({"gpu_mem_gb": memory} if memory else {}),
               **({"max_num_batched_tokens": budget} if budget else {})}
    c = both(config(**changes), dict(SHARED, workload_seed=seed, **sharing))
    assert_exact(c)
    assert c.prefix_hits[0] >= 2000                          # the cache was used
    if memory:
        assert c.preemptions[0].sum() >= 5                   # and memory ran short


@needs_vllm
def test_prefix_hits_under_priority_scheduling_agree():
    from batchlab.core.vllm_compare import compare

    w = build_workload(WorkloadSpec(**SHARED, workload_seed=16, conversation_turns=3, think_time=2.0))
    levels = np.random.default_rng(16).integers(0, 3, len(w))
    w = Workload(w.arrival, w.prompt, w.output, w.predicted, priority=levels, prefix=w.prefix)
    c = compare(config(batch_size=32, gpu_mem_gb=TIGHT_MEM, queue_policy="priority", preempt_policy="priority"),
                w, LAT)
    assert_exact(c)
    assert c.prefix_hits[0] > 0 and c.preemptions[0].sum() > 0


@needs_vllm
def test_a_workload_without_shared_prefixes_agrees_with_caching_on_or_off():
    """Keys that no two requests share (every request its own system prompt): caching changes nothing in
    batchlab, and vLLM agrees request by request, its preempted requests included."""
    w = build_workload(WorkloadSpec(**SHARED, workload_seed=17))
    own = Workload(w.arrival, w.prompt, w.output, w.predicted,
                   prefix=PrefixKeys(16, np.arange(len(w) + 1), np.arange(len(w)) * 7 + 3))
    from batchlab.core.vllm_compare import compare

    on = compare(config(batch_size=32, gpu_mem_gb=TIGHT_MEM), own, LAT)
    assert_exact(on)
    assert on.preemptions[0].sum() > 0
