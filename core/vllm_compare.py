"""One workload through batchlab's continuous engine and through vLLM's own scheduler, request by request.

:func:`compare` maps a ``continuous_static`` SimConfig on one GPU to vLLM's settings
(:func:`vllm_settings`), runs both on the same requests and latency model, and returns the
per-request differences of time to first token and end-to-end latency, with the preemptions and
iterations of each side and the known differences that apply (:func:`known_differences`).
:func:`format_comparison` prints it; :func:`comparison_json` makes it JSON-able.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from batchlab.workloads.workload import Workload

from .config import ConfigError, SimConfig
from .latency import LatencyModel
from .memory import MemoryModel
from .vllm_reference import VLLM_VERSION, VllmSettings, VllmTrace, run_vllm

WORST = 5             # requests listed by the report
TOLERANCE_S = 1e-6    # a request "differs" when its TTFT or E2E is further apart than this


@dataclass
class Comparison:
    """Both runs of one workload. Per request (the compared requests, in arrival order): arrival,
    prompt, output (batchlab's o), each side's TTFT and E2E (seconds) and preemptions; per run:
    iterations and preemptions of each side, when each first preempted (the start of that iteration;
    NaN if never), the prompt tokens each found in its prefix cache, the vLLM settings used, the known
    differences, and the requests left out (never servable on one GPU, or with an empty prompt)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    ttft: tuple[np.ndarray, np.ndarray]
    e2e: tuple[np.ndarray, np.ndarray]
    preemptions: tuple[np.ndarray, np.ndarray]
    iterations: tuple[int, int]
    first_preemption: tuple[float, float]
    settings: VllmSettings
    differences: list[str]
    left_out: int
    prefix_hits: tuple[int, int] = (0, 0)

    @property
    def d_ttft(self) -> np.ndarray:
        """vLLM's TTFT minus batchlab's, per request."""
        return self.ttft[1] - self.ttft[0]

    @property
    def d_e2e(self) -> np.ndarray:
        """vLLM's E2E minus batchlab's, per request."""
        return self.e2e[1] - self.e2e[0]

    @property
    def before_preemption(self) -> np.ndarray:
        """Which requests finished, in both runs, no later than the first preemption of either
        (all of them when neither preempted)."""
        first = np.fmin(*self.first_preemption)
        if np.isnan(first):
            return np.ones(len(self.arrival), dtype=bool)
        return (self.arrival + np.fmax(*self.e2e)) <= first

    def worst(self, count: int = WORST) -> np.ndarray:
        """Indices of at most ``count`` requests whose |ΔTTFT| or |ΔE2E| exceeds :data:`TOLERANCE_S`,
        largest first."""
        gap = np.maximum(np.abs(self.d_ttft), np.abs(self.d_e2e))
        order = np.argsort(-gap, kind="stable")[:count]
        return order[gap[order] > TOLERANCE_S]


def check_config(cfg: SimConfig) -> None:
    """Refuse settings the comparison does not cover (one line naming the setting)."""
    if cfg.mode != "continuous_static":
        raise ConfigError("mode", f"the vLLM comparison runs continuous_static (vLLM's fixed max_num_seqs), "
                                  f"got {cfg.mode}")
    if cfg.gpus != 1:
        raise ConfigError("gpus", f"the vLLM comparison runs one GPU (one vLLM engine), got {cfg.gpus}")


# (queue_policy, preempt_policy) -> vLLM's scheduling policy, which sets both
VLLM_POLICIES = {("fcfs", "newest"): "fcfs", ("priority", "priority"): "priority"}


def vllm_policy(cfg: SimConfig) -> str:
    """vLLM's scheduling policy for ``cfg``'s queue and preemption policies (vLLM's one setting orders
    the waiting queue and picks the victim together)."""
    policy = VLLM_POLICIES.get((cfg.queue_policy, cfg.preempt_policy))
    if policy is None:
        raise ConfigError("queue_policy", f"vLLM has no scheduling policy with queue_policy "
                                          f"{cfg.queue_policy} and preempt_policy {cfg.preempt_policy}: set both "
                                          f"to priority (vLLM's priority policy), or fcfs and newest (its fcfs)")
    return policy


def vllm_settings(cfg: SimConfig) -> VllmSettings:
    """vLLM's settings for ``cfg``: its KV blocks (eta // block_size), block size, max_num_seqs =
    batch_size, the token budget max_num_batched_tokens (:attr:`SimConfig.token_budget`), the watermark,
    chunked prefill on (vLLM's default), prefix caching (enable_prefix_caching) and the scheduling
    policy of ``cfg``'s queue and preemption policies (:func:`vllm_policy`)."""
    blocks = MemoryModel.from_config(cfg).eta // cfg.block_size
    return VllmSettings(block_size=cfg.block_size, num_blocks=blocks, max_num_seqs=cfg.batch_size,
                        max_num_batched_tokens=cfg.token_budget, enable_chunked_prefill=True,
                        enable_prefix_caching=cfg.enable_prefix_caching, watermark=cfg.kv_watermark,
                        policy=vllm_policy(cfg))


def known_differences(cfg: SimConfig, settings: VllmSettings, preempted: bool, keyed: bool) -> list[str]:
    """The departures of batchlab's engine from vLLM that can show in this comparison (``keyed``: the
    workload has prefix keys)."""
    notes = []
    if preempted and settings.enable_prefix_caching and not keyed:
        notes.append("resume after preemption: vLLM finds the preempted request's own blocks still in its "
                     "prefix cache; batchlab caches prefixes only on workloads with prefix keys, so here it "
                     "recomputes all of them")
    return notes


def compare(cfg: SimConfig, workload: Workload, latency: LatencyModel,
            prefix_caching: bool | None = None) -> Comparison:
    """Run ``workload`` through batchlab's engine and vLLM's scheduler under ``cfg`` (continuous_static,
    one GPU; ``prefix_caching``, when given, sets enable_prefix_caching on both). Requests one GPU can
    never serve, or with an empty prompt (vLLM needs a token), are left out of both runs. Prefix keys
    become the tokens vLLM sees (:class:`core.vllm_reference.Stream`)."""
    from .simulation import servable, simulate

    check_config(cfg)
    if prefix_caching is not None:
        cfg = cfg.replace(enable_prefix_caching=prefix_caching)
    eta = MemoryModel.from_config(cfg).eta
    keep = servable(cfg, workload, eta) & (workload.prompt >= 1)
    if not keep.any():
        raise ConfigError("gpu_mem_gb", "no request can be compared: none fits one GPU's KV cache with a "
                                        "prompt of at least one token")
    priority = None if workload.priority is None else workload.priority[keep]
    prefix = None if workload.prefix is None else workload.prefix.take(np.flatnonzero(keep))
    sub = Workload(workload.arrival[keep], workload.prompt[keep], workload.output[keep], workload.predicted[keep],
                   priority=priority, prefix=prefix)
    result = simulate(cfg, sub, latency=latency)
    req = result.requests
    settings = vllm_settings(cfg)
    # max_tokens = o: both emit o tokens (a failed trace row's output 0 runs as its prefill alone in both)
    trace: VllmTrace = run_vllm(settings, sub.arrival, sub.prompt, np.maximum(sub.output, 1), latency,
                                priority=sub.priority, prefix=sub.prefix)
    pre_b = np.asarray(req["preemptions"], dtype=np.int64)
    log = result.batches
    starts = log["start"][log["preempted"] > 0]
    preempted = bool(pre_b.any() or trace.preemptions.any())
    return Comparison(
        arrival=sub.arrival, prompt=sub.prompt, output=sub.output,
        ttft=(np.asarray(req["ttft"]), trace.first_token - sub.arrival),
        e2e=(np.asarray(req["e2e"]), trace.finish - sub.arrival),
        preemptions=(pre_b, trace.preemptions),
        iterations=(int(result.summary["iterations"]), trace.iterations),
        first_preemption=(float(starts.min()) if len(starts) else math.nan,
                          float(trace.preempted_at[0]) if len(trace.preempted_at) else math.nan),
        settings=settings, differences=known_differences(cfg, settings, preempted, sub.prefix is not None),
        left_out=int((~keep).sum()),
        prefix_hits=(int(result.summary["prefill_tokens_saved"]), trace.prefix_hits))


def _max_abs(values: np.ndarray) -> float:
    return float(np.max(np.abs(values))) if len(values) else 0.0


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def comparison_json(c: Comparison) -> dict:
    """The comparison as a JSON-able dict (seconds; per-request rows only for the worst requests)."""
    rows = [{"request": int(i), "arrival": float(c.arrival[i]), "prompt": int(c.prompt[i]),
             "output": int(c.output[i]),
             "ttft": {"batchlab": float(c.ttft[0][i]), "vllm": float(c.ttft[1][i])},
             "e2e": {"batchlab": float(c.e2e[0][i]), "vllm": float(c.e2e[1][i])},
             "preemptions": {"batchlab": int(c.preemptions[0][i]), "vllm": int(c.preemptions[1][i])}}
            for i in c.worst()]
    s = c.settings
    return {"vllm_version": VLLM_VERSION, "requests": len(c.arrival), "left_out": c.left_out,
            "max_abs_d_ttft_s": _max_abs(c.d_ttft), "max_abs_d_e2e_s": _max_abs(c.d_e2e),
            "requests_differing": int(np.count_nonzero((np.abs(c.d_ttft) > TOLERANCE_S)
                                                       | (np.abs(c.d_e2e) > TOLERANCE_S))),
            "tolerance_s": TOLERANCE_S,
            "preemptions": {"batchlab": int(c.preemptions[0].sum()), "vllm": int(c.preemptions[1].sum())},
            "iterations": {"batchlab": c.iterations[0], "vllm": c.iterations[1]},
            "prefix_hit_tokens": {"batchlab": c.prefix_hits[0], "vllm": c.prefix_hits[1]},
            "first_preemption_s": {"batchlab": _or_none(c.first_preemption[0]),
                                   "vllm": _or_none(c.first_preemption[1])},
            "vllm_settings": {"block_size": s.block_size, "num_gpu_blocks": s.num_blocks + 1,
                              "max_num_seqs": s.max_num_seqs, "max_num_batched_tokens": s.max_num_batched_tokens,
                              "enable_chunked_prefill": s.enable_chunked_prefill,
                              "enable_prefix_caching": s.enable_prefix_caching, "watermark": s.watermark,
                              "policy": s.policy, "max_tokens": "o"},
            "known_differences": c.differences, "worst": rows}


def format_comparison(c: Comparison) -> str:
    """The comparison as text: the settings, the largest differences, totals, the worst requests and
    the known differences that apply."""
    j = comparison_json(c)
    s = j["vllm_settings"]
    budget = s["max_num_batched_tokens"] if s["max_num_batched_tokens"] is not None else "no limit"
    lines = [f"batchlab continuous_static vs vLLM {VLLM_VERSION} scheduler, {j['requests']} requests"
             + (f" ({j['left_out']} left out: never servable on one GPU or an empty prompt)" if j["left_out"] else ""),
             f"vLLM: block_size {s['block_size']}, {s['num_gpu_blocks']} blocks (one is its null block), "
             f"max_num_seqs {s['max_num_seqs']}, max_num_batched_tokens {budget}, watermark {s['watermark']:g}, "
             f"prefix caching {'on' if s['enable_prefix_caching'] else 'off'}, policy {s['policy']}, "
             f"max_tokens = output",
             f"max |dTTFT| {j['max_abs_d_ttft_s']:.3g} s, max |dE2E| {j['max_abs_d_e2e_s']:.3g} s; "
             f"{j['requests_differing']} of {j['requests']} requests differ by more than {TOLERANCE_S:g} s",
             f"preemptions: batchlab {j['preemptions']['batchlab']}, vLLM {j['preemptions']['vllm']}; "
             f"iterations: batchlab {j['iterations']['batchlab']}, vLLM {j['iterations']['vllm']}; "
             f"prompt tokens found in the prefix cache: batchlab {j['prefix_hit_tokens']['batchlab']:,}, "
             f"vLLM {j['prefix_hit_tokens']['vllm']:,}"]
    first = j["first_preemption_s"]
    if first["batchlab"] is not None or first["vllm"] is not None:
        lines.append("first preemption at: " + ", ".join(
            f"{side} {'never' if first[key] is None else f'{first[key]:.6f} s'}"
            for side, key in (("batchlab", "batchlab"), ("vLLM", "vllm"))))
    if j["worst"]:
        lines.append("worst requests (seconds; batchlab / vLLM):")
        lines.append(f"  {'request':>8} {'arrival':>10} {'prompt':>7} {'output':>7} {'TTFT':>23} {'E2E':>23} "
                     f"{'preempted':>9}")
        for r in j["worst"]:
            lines.append(f"  {r['request']:>8} {r['arrival']:>10.4f} {r['prompt']:>7} {r['output']:>7} "
                         f"{r['ttft']['batchlab']:>11.6f}/{r['ttft']['vllm']:<11.6f} "
                         f"{r['e2e']['batchlab']:>11.6f}/{r['e2e']['vllm']:<11.6f} "
                         f"{r['preemptions']['batchlab']:>4}/{r['preemptions']['vllm']:<4}")
    if j["known_differences"]:
        lines.append("known differences that apply:")
        lines.extend(f"  - {d}" for d in j["known_differences"])
    else:
        lines.append("no known difference applies")
    return "\n".join(lines)
