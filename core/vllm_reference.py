"""vLLM's own v1 scheduler and KV-cache manager, driven on a virtual clock (DESIGN.md section 10).

:func:`run_vllm` builds vLLM's real ``Scheduler`` (and through it its ``KVCacheManager``) on the
CPU from a tiny local model config (no download, no model, no GPU), adds each request when the
virtual clock reaches its arrival, and runs ``schedule()`` / ``update_from_output()`` step by step.
A fake model runner samples one token for every scheduled request whose computed tokens reach its
known tokens (the end of its prefill, or a decode step); requests ignore EOS and stop at
``max_tokens``. Each step is timed with the formula of batchlab's continuous engine
(:func:`iteration_time`), so both simulators see the same clock.

vLLM is an optional extra (``batchlab[vllm]``, pinned :data:`VLLM_VERSION`, installed without its
dependencies): it is imported when a run starts, and a missing or different install raises
:class:`VllmUnavailable` with one line that names the extra.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from .latency import LatencyModel

VLLM_VERSION = "0.33.0"
INSTALL_HINT = "see the [vllm] extra in pyproject.toml (vllm itself installs with --no-deps)"
POLICIES = ("fcfs", "priority")
SAMPLED_TOKEN = 7                # every fake sample; EOS is ignored
TICKS = 1e9                      # arrivals and step ends are compared on batchlab's 1 ns clock
# A tiny decoder-only config: the scheduler reads only its shape and context length.
TOY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4,
              "num_hidden_layers": 1, "vocab_size": 32000, "torch_dtype": "float32"}


class VllmUnavailable(ImportError):
    """vLLM (batchlab[vllm]) is not importable here, or is not the pinned version."""


@dataclass(frozen=True)
class VllmSettings:
    """The vLLM scheduler settings a run uses (names as vLLM's SchedulerConfig / CacheConfig).

    ``num_blocks`` counts usable KV blocks; vLLM's block pool takes one more as its null block.
    ``max_num_batched_tokens`` is vLLM's per-step token budget (decode tokens count); None =
    large enough that no step is ever limited by it.
    """

    block_size: int = 16
    num_blocks: int = 1024
    max_num_seqs: int = 8
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    watermark: float = 0.0
    policy: str = "fcfs"

    def __post_init__(self) -> None:
        for name in ("block_size", "num_blocks", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be at least 1, got {self.max_num_batched_tokens}")
        if not 0.0 <= self.watermark < 1.0:
            raise ValueError(f"watermark must be in [0, 1), got {self.watermark}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")


@dataclass
class VllmTrace:
    """Per request (in the order given): times of its first token and its finish (seconds on the
    virtual clock), preemptions, steps it was scheduled in and tokens it emitted; per run: steps
    executed, the sum of their durations, the start of each step that preempted (once per
    preempted request), and the prompt tokens looked up in the prefix cache at admissions and found
    there (vLLM's prefix cache queries and hits)."""

    first_token: np.ndarray
    finish: np.ndarray
    preemptions: np.ndarray
    scheduled_steps: np.ndarray
    tokens: np.ndarray
    iterations: int
    busy_s: float
    preempted_at: np.ndarray
    prefix_queries: int = 0
    prefix_hits: int = 0


def iteration_time(latency: LatencyModel, prefill_seqs: int, prefill_tokens: int, decode_seqs: int,
                   decode_context: int) -> float:
    """One iteration as batchlab's continuous engine times it: ``prefill_time(a, x / a) +
    decode_step_time(n, C / n)`` for ``a`` sequences receiving ``x`` prompt tokens and ``n`` decoding
    sequences attending ``C`` tokens in all (a term is absent when it has no sequence)."""
    t = latency.prefill_time(prefill_seqs, prefill_tokens / prefill_seqs) if prefill_seqs else 0.0
    if decode_seqs:
        t += latency.decode_step_time(decode_seqs, decode_context / decode_seqs)
    return t


def tick(t: float) -> int:
    """The 1 ns clock tick of ``t`` seconds (as core.continuous_kernel.tick)."""
    return int(t * TICKS + 0.5)


def check_vllm() -> None:
    """Raise :class:`VllmUnavailable` unless vLLM's scheduler imports here at the pinned version."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")   # read when vLLM first picks its platform
    quiet = logging.getLogger("vllm")          # its notes on a CPU build (no Triton, no AVX kernels)
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)
    try:
        import vllm
        import vllm.v1.core.sched.scheduler  # noqa: F401  (the whole import path the harness needs)
    except ImportError as exc:
        raise VllmUnavailable(f"the vLLM comparison needs batchlab[vllm] (vllm {VLLM_VERSION}: {exc}); "
                              f"{INSTALL_HINT}") from None
    if vllm.__version__ != VLLM_VERSION:
        raise VllmUnavailable(f"the vLLM comparison needs vllm {VLLM_VERSION} (batchlab[vllm]), found "
                              f"{vllm.__version__}; {INSTALL_HINT}")


def make_scheduler(settings: VllmSettings, max_model_len: int, unlimited_budget: int):
    """vLLM's v1 Scheduler for ``settings`` on the CPU, its model config read from a temporary
    folder holding :data:`TOY_CONFIG` (nothing is downloaded); ``unlimited_budget`` is the token
    budget that stands for "no limit" (more than any step can schedule)."""
    check_vllm()
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    budget = settings.max_num_batched_tokens or unlimited_budget
    with tempfile.TemporaryDirectory(prefix="batchlab-vllm-") as folder:
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(TOY_CONFIG, max_position_embeddings=max_model_len), fh)
        model = ModelConfig(model=folder, skip_tokenizer_init=True, max_model_len=max_model_len,
                            dtype="float32", seed=0)
    scheduler = SchedulerConfig(max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=budget,
                                max_model_len=max_model_len, is_encoder_decoder=False,
                                enable_chunked_prefill=settings.enable_chunked_prefill,
                                watermark=settings.watermark, policy=settings.policy, async_scheduling=False)
    blocks = settings.num_blocks + 1              # the block pool keeps one as its null block
    cache = CacheConfig(block_size=settings.block_size, enable_prefix_caching=settings.enable_prefix_caching)
    cache.num_gpu_blocks = blocks
    config = VllmConfig(model_config=model, scheduler_config=scheduler, cache_config=cache)
    spec = FullAttentionSpec(settings.block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    kv = KVCacheConfig(num_blocks=blocks, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    return Scheduler(vllm_config=config, kv_cache_config=kv, block_size=settings.block_size,
                     structured_output_manager=StructuredOutputManager(config), log_stats=False)


class Stream:
    """The tokens of each request's stream (its prompt, then its output): where prefix keys describe
    them (``block`` tokens a key), a token drawn from the key and the position in its block, so
    requests whose keys agree have the same tokens there; elsewhere tokens of the request's own.
    Without keys, request i's prompt is token i then 1s and it samples :data:`SAMPLED_TOKEN`, so no
    two requests share a cached block (a preempted request still finds its own)."""

    def __init__(self, prefix=None):
        from .prefix_cache import mix  # the engine's hash, so a key's tokens are a function of it

        self.prefix, self.mix = prefix, mix

    def token(self, i: int, x: int) -> int:
        """Token ``x`` of request ``i``'s stream."""
        if self.prefix is None:
            return i if x == 0 else 1
        block, offsets, keys = self.prefix.block, self.prefix.offsets, self.prefix.keys
        j = x // block
        if j < offsets[i + 1] - offsets[i]:
            return 1 + self.mix(int(keys[offsets[i] + j]), x % block) % VOCAB
        return 1 + self.mix(self.mix(-1 - i, x), 7) % VOCAB

    def prompt(self, i: int, length: int) -> list[int]:
        return [self.token(i, x) for x in range(length)]

    def sample(self, i: int, position: int) -> int:
        """The token request ``i`` samples at stream ``position``."""
        return SAMPLED_TOKEN if self.prefix is None else self.token(i, position)


VOCAB = 31_000   # token ids drawn for streams stay below the toy model's vocabulary


def _requests(arrival, prompt, max_tokens, block_size: int, priority=None, stream: Stream | None = None):
    """vLLM Requests, their prompts from ``stream`` (:class:`Stream`)."""
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.request import Request

    init_none_hash(sha256)
    hasher = get_request_block_hasher(block_size, sha256)
    out = []
    levels = [0] * len(arrival) if priority is None else np.asarray(priority).tolist()
    stream = stream or Stream()
    for i, (a, p, m, level) in enumerate(zip(arrival.tolist(), prompt.tolist(), max_tokens.tolist(), levels,
                                             strict=True)):
        params = SamplingParams(max_tokens=int(m), ignore_eos=True, temperature=0.0)
        tokens = stream.prompt(i, int(p))
        out.append(Request(request_id=str(i), prompt_token_ids=tokens, sampling_params=params,
                           pooling_params=None, arrival_time=float(a), block_hasher=hasher,
                           priority=int(level)))
    return out


def run_vllm(settings: VllmSettings, arrival: np.ndarray, prompt: np.ndarray, max_tokens: np.ndarray,
             latency: LatencyModel, priority: np.ndarray | None = None, prefix=None) -> VllmTrace:
    """Serve the requests (sorted by ``arrival``; prompts of at least one token; ``max_tokens`` =
    tokens each emits, the first at the end of its prefill) with vLLM's scheduler on one GPU.

    The clock starts at 0. When nothing runs or waits it jumps to the next arrival; otherwise a step
    is scheduled among the requests that have arrived by its start and lasts :func:`iteration_time`
    of its prefill tokens (requests computing more than their last token, or still in their prompt)
    and its decodes (one token after all known ones, attending the tokens already computed).
    ``prefix``: the requests' prefix keys (``block``, ``offsets``, ``keys``, as
    :class:`workloads.workload.PrefixKeys`): their streams' tokens follow them (:class:`Stream`).
    """
    arrival = np.asarray(arrival, dtype=np.float64)
    prompt = np.asarray(prompt, dtype=np.int64)
    max_tokens = np.asarray(max_tokens, dtype=np.int64)
    n = len(arrival)
    if not (len(prompt) == len(max_tokens) == n) or n == 0:
        raise ValueError(f"arrival, prompt and max_tokens need the same, non-zero length; got {n}, "
                         f"{len(prompt)}, {len(max_tokens)}")
    if np.any(np.diff(arrival) < 0) or arrival[0] < 0:
        raise ValueError("arrival times must be >= 0 and sorted")
    if prompt.min() < 1 or max_tokens.min() < 1:
        raise ValueError("every request needs a prompt of at least 1 token and max_tokens of at least 1")
    max_model_len = int((prompt + max_tokens).max())
    sched = make_scheduler(settings, max_model_len, int((prompt + max_tokens).sum()) + settings.max_num_seqs)
    from vllm.v1.outputs import ModelRunnerOutput

    stream = Stream(prefix)
    reqs = _requests(arrival, prompt, max_tokens, settings.block_size, priority, stream)
    ticks = [tick(a) for a in arrival.tolist()]
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    steps = np.zeros(n, dtype=np.int64)
    index = {r.request_id: i for i, r in enumerate(reqs)}
    t, nxt, done, iterations, busy = 0.0, 0, 0, 0, 0.0
    preempted_at: list[float] = []
    prefilling = set()     # requests computing their prompt, or their tokens again after a preemption
    admitting = set()      # ... not scheduled since: their first step shows what the prefix cache held
    queries = hits = 0
    while done < n:
        while nxt < n and ticks[nxt] <= tick(t):
            sched.add_request(reqs[nxt])
            prefilling.add(reqs[nxt].request_id)
            admitting.add(reqs[nxt].request_id)
            nxt += 1
        if not sched.has_requests():
            t = float(arrival[nxt])
            continue
        out = sched.schedule()
        if out.total_num_scheduled_tokens == 0:
            if nxt >= n:
                raise RuntimeError(f"vLLM's scheduler can schedule nothing at t={t:.6g} s with "
                                   f"{len(sched.waiting)} request(s) waiting: they do not fit its KV cache")
            t = max(t, float(arrival[nxt]))
            continue
        preempted = out.preempted_req_ids or ()
        preempted_at.extend([t] * len(preempted))
        prefilling.update(preempted)
        admitting.update(preempted)
        a = x = dn = dc = 0
        ids, sampled = [], []
        for rid, k in out.num_scheduled_tokens.items():
            r = sched.requests[rid]
            before = r.num_computed_tokens - k     # the scheduler advanced it already
            if rid in admitting:                   # admitted now: what it had computed came from the cache
                admitting.discard(rid)
                queries += r.num_tokens
                hits += before
            if rid not in prefilling:              # a decode: its last token, attending those before
                dn += 1
                dc += before
            else:
                a += 1
                x += k
            steps[index[rid]] += 1
            ids.append(rid)
            sampled.append([stream.sample(index[rid], r.num_tokens)] if r.num_computed_tokens >= r.num_tokens else [])
            if sampled[-1]:
                prefilling.discard(rid)
        t_end = t + iteration_time(latency, a, x, dn, dc)
        runner = ModelRunnerOutput(req_ids=ids, req_id_to_index={rid: j for j, rid in enumerate(ids)},
                                   sampled_token_ids=sampled)
        sched.update_from_output(out, runner)
        for rid, tokens in zip(ids, sampled, strict=True):
            i = index[rid]
            if tokens and math.isnan(first[i]):
                first[i] = t_end
            if reqs[i].is_finished() and math.isnan(finish[i]):
                finish[i] = t_end
                done += 1
        iterations += 1
        busy += t_end - t
        t = t_end
    return VllmTrace(first_token=first, finish=finish,
                     preemptions=np.array([r.num_preemptions for r in reqs], dtype=np.int64),
                     scheduled_steps=steps, tokens=np.array([r.num_output_tokens for r in reqs], dtype=np.int64),
                     iterations=iterations, busy_s=busy, preempted_at=np.array(preempted_at),
                     prefix_queries=queries, prefix_hits=hits)
