"""Automatic prefix caching in the continuous engine (core.prefix_cache): closed forms on small
workloads, what it must not change, and invariants on random ones (vLLM itself: test_vllm_reference)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.latency import ParametricLatency
from batchlab.core.memory import MemoryModel
from batchlab.workloads.workload import PrefixKeys, Workload

B = 16
TIGHT_MEM = 16.2          # GB: 85 KV blocks of 16 tokens with the default model shape


def config(**changes) -> SimConfig:
    return SimConfig(**{"mode": "continuous_static", "gpus": 1, "batch_size": 8, **changes})


def workload(arrival, prompt, output, keys=None, block=B) -> Workload:
    """Requests with prefix ``keys`` (a list of key lists, one per request; None: no prefix information)."""
    prefix = None
    if keys is not None:
        offsets = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
        flat = np.array([x for k in keys for x in k], dtype=np.int64)
        prefix = PrefixKeys(block, offsets, flat)
    out = np.asarray(output)
    return Workload(np.asarray(arrival, dtype=float), np.asarray(prompt), out, out, prefix=prefix)


def run(cfg: SimConfig, w: Workload):
    return simulate(cfg, w, latency=ParametricLatency())


def test_a_hit_skips_exactly_the_cached_blocks_prefill():
    """The second request shares the first's 40 keyed blocks (640 tokens) of its 700-token prompt: its
    prefill computes the other 60 tokens, alone on the GPU, so its first token comes one prefill of 60
    tokens after it arrives."""
    lat = ParametricLatency()
    first = list(range(40))
    w = workload([0.0, 100.0], [700, 700], [5, 5], [first, first])
    r = run(config(), w)
    ttft = r.requests["ttft"]
    assert ttft[0] == pytest.approx(lat.prefill_time(1, 700), abs=1e-9)
    assert ttft[1] == pytest.approx(lat.prefill_time(1, 60), abs=1e-9)
    assert r.summary["prefill_tokens_saved"] == 640
    assert r.summary["prefix_hit_rate"] == pytest.approx(640 / 1400)


def test_a_whole_prompt_found_cached_still_computes_its_last_block():
    """vLLM computes at least the last token, a whole block when the prompt fills whole blocks: of a
    64-token prompt cached in full, 48 tokens are hits and 16 are prefilled."""
    lat = ParametricLatency()
    keys = [0, 1, 2, 3]
    r = run(config(), workload([0.0, 50.0], [64, 64], [3, 3], [keys, keys]))
    assert r.requests["ttft"][1] == pytest.approx(lat.prefill_time(1, 16), abs=1e-9)
    assert r.summary["prefill_tokens_saved"] == 48


def test_keys_describe_whole_blocks_only():
    """A key block of 32 tokens covers two engine blocks of 16; the chains differ from the third key on,
    so the second request finds two keys' worth (64 tokens) cached."""
    a = [5, 6, 7, 8]
    b = [5, 6, 9, 10]
    r = run(config(), workload([0.0, 50.0], [128, 128], [2, 2], [a, b], block=32))
    assert r.summary["prefill_tokens_saved"] == 64


def test_a_different_first_key_shares_nothing_after_it():
    """Blocks are named by the chain of keys up to them: equal later keys after a different first one
    are no hit."""
    r = run(config(), workload([0.0, 50.0], [320, 320], [2, 2], [[1, 2, 3, 4], [9, 2, 3, 4]]))
    assert r.summary["prefill_tokens_saved"] == 0
    assert r.summary["prefix_hit_rate"] == 0.0


def test_caching_off_or_no_keys_runs_as_without_prefix_information():
    keys = [list(range(20))] * 30
    rng = np.random.default_rng(3)
    arrival = np.sort(rng.uniform(0, 10, 30))
    prompt, output = rng.integers(320, 600, 30), rng.integers(1, 100, 30)
    plain = run(config(), workload(arrival, prompt, output))
    off = run(config(enable_prefix_caching=False), workload(arrival, prompt, output, keys))
    on = run(config(), workload(arrival, prompt, output, keys))
    for name in ("ttft", "e2e", "preemptions"):
        np.testing.assert_array_equal(plain.requests[name], off.requests[name])
    assert plain.summary["prefix_hit_rate"] is None and off.summary["prefill_tokens_saved"] == 0
    assert on.summary["prefill_tokens_saved"] > 0
    assert on.requests["ttft"].mean() < plain.requests["ttft"].mean()


def test_caching_off_plans_spans_as_without_keys_even_where_keys_cover_outputs():
    """Keys over prompts and outputs (as conversations have) make a cached run retry a request memory
    kept out at every iteration; with caching off the spans are those of a run without keys."""
    rng = np.random.default_rng(5)
    n = 80
    arrival = np.sort(rng.uniform(0, 4, n))
    prompt, output = rng.integers(200, 600, n), rng.integers(50, 300, n)
    keys = [list(range(1000 * i, 1000 * i + (p + o) // B)) for i, (p, o) in enumerate(zip(prompt, output))]
    cfg = config(gpu_mem_gb=TIGHT_MEM, batch_size=32)
    plain = run(cfg, workload(arrival, prompt, output))
    off = run(cfg.replace(enable_prefix_caching=False), workload(arrival, prompt, output, keys))
    on = run(cfg, workload(arrival, prompt, output, keys))
    assert len(off.batches["start"]) == len(plain.batches["start"])
    np.testing.assert_array_equal(off.requests["e2e"], plain.requests["e2e"])
    assert len(on.batches["start"]) > len(plain.batches["start"])      # retried every iteration


def test_keys_no_two_requests_share_change_nothing_while_nothing_is_preempted():
    rng = np.random.default_rng(4)
    n = 40
    arrival = np.sort(rng.uniform(0, 8, n))
    prompt, output = rng.integers(100, 500, n), rng.integers(1, 80, n)
    own = [[1000 * i + j for j in range(p // B)] for i, p in enumerate(prompt)]
    plain = run(config(), workload(arrival, prompt, output))
    keyed = run(config(), workload(arrival, prompt, output, own))
    assert keyed.summary["preemptions"] == 0
    np.testing.assert_array_equal(plain.requests["e2e"], keyed.requests["e2e"])
    assert keyed.summary["prefill_tokens_saved"] == 0


def test_a_freed_prefix_stays_cached_until_memory_needs_its_blocks():
    """85 blocks. Request 0 (1040 tokens, 64 keyed blocks) leaves 65 cached blocks and 20 never named.
    Request 1 without keys then takes 19 blocks (room: request 2 finds all 64 keyed blocks), or 66: the
    20 never named, then 46 cached ones, least recently freed first. vLLM frees a request's blocks last
    first, so request 0's last 46 go and request 2 finds its first 19."""
    cfg = config(gpu_mem_gb=TIGHT_MEM)
    assert MemoryModel.from_config(cfg).eta // B == 85
    shared = list(range(64))
    roomy = run(cfg, workload([0.0, 20.0, 40.0], [1040, 300, 1040], [2, 2, 2], [shared, [], shared]))
    assert roomy.summary["prefill_tokens_saved"] == 64 * B
    crowded = run(cfg, workload([0.0, 20.0, 40.0], [1040, 1050, 1040], [2, 2, 2], [shared, [], shared]))
    assert crowded.summary["prefill_tokens_saved"] == 19 * B


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), tight=st.booleans(), budget=st.sampled_from([None, 64, 256]),
       gpus=st.integers(1, 3), mode=st.sampled_from(["continuous_static", "continuous_dynamic"]))
def test_invariants_of_random_shared_workloads(seed, tight, budget, gpus, mode):
    rng = np.random.default_rng(seed)
    n = 60
    arrival = np.sort(rng.uniform(0, 6, n))
    prompt, output = rng.integers(20, 700, n), rng.integers(1, 120, n)
    system = rng.integers(0, 3, n)
    keys = [[100 * int(s) + j for j in range(min(p, 320) // B)] for s, p in zip(system, prompt, strict=True)]
    changes = {"mode": mode, "gpus": gpus, **({"gpu_mem_gb": TIGHT_MEM} if tight else {}),
               **({"max_num_batched_tokens": max(budget, 8)} if budget else {})}
    if mode == "continuous_dynamic":
        changes.pop("max_num_batched_tokens", None)
    w = workload(arrival, prompt, output, keys)
    r = run(config(**changes), w)
    s, log = r.summary, r.batches
    assert s["prefill_tokens_saved"] % B == 0
    assert s["prefix_hit_rate"] is not None and 0.0 <= s["prefix_hit_rate"] < 1.0
    assert np.all(log["kv_util"] + log["kv_cached"] <= 1.0 + 1e-12) and np.all(log["kv_cached"] >= 0)
    assert np.isfinite(r.requests["e2e"]).all()
    off = run(config(**changes, enable_prefix_caching=False), w)
    assert off.summary["prefill_tokens_saved"] == 0
    # what hits save is prefill work: the busy time can only shrink when nothing is preempted
    if s["preemptions"] == 0 and off.summary["preemptions"] == 0 and gpus == 1 and mode == "continuous_static":
        assert r.summary["gpu_utilization"] <= off.summary["gpu_utilization"] + 1e-12
