"""The frozen, validated configuration of one simulation run.

Every field carries its help text and unit in its metadata, so the CLI flags
and the web form are generated from this one table.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from batchlab.core.hardware import CatalogueError, bundled_models, gpu_catalogue, gpu_spec, is_model_path, model_arch
from batchlab.workloads.fields import FieldError, coerce_fields, described

MODES = ("static_fifo", "dynamic_no_bins", "multi_bin_dynamic", "multi_bin_fixed",
         "continuous_static", "continuous_dynamic", "continuous_multi_bin")
BINNED_MODES = ("multi_bin_dynamic", "multi_bin_fixed", "continuous_multi_bin")
DYNAMIC_MODES = ("dynamic_no_bins", "multi_bin_dynamic", "continuous_dynamic", "continuous_multi_bin")
CONTINUOUS_MODES = ("continuous_static", "continuous_dynamic", "continuous_multi_bin")
BATCH_MODES = tuple(m for m in MODES if m not in CONTINUOUS_MODES)
FILLS = ("greedy", "full")
BIN_POLICIES = ("fcfs", "longest", "round_robin", "short_first")
MEM_MARGINS = ("factor", "clt", "none")
KV_RESERVES = ("predicted", "max_new_tokens")
TBT_STATS = ("mean", "max")
PREEMPT_POLICIES = ("newest", "priority")   # core.continuous_kernel._victim
QUEUE_POLICIES = ("fcfs", "priority")       # core.continuous_kernel._queue_key
# how requests reach replicas (core.routers); shared_queue: one queue that every replica pulls from
ROUTERS = ("shared_queue", "round_robin", "random", "least_outstanding", "power_of_two", "least_kv",
           "prefix_affinity")
CONTINUOUS_ROUTER, BATCH_ROUTER = "least_outstanding", "shared_queue"   # the defaults (see SimConfig.router)
# What each mode does, in two sentences (CLI help, the web form's mode picker, the README).
MODE_HELP = {
    "static_fifo": "One FIFO queue; a free GPU takes up to B waiting requests as one padded batch that runs "
                   "to completion. B is a cap: with greedy fill a batch holds only what is waiting (use "
                   "fill=full, optionally with max-wait, to wait for B).",
    "dynamic_no_bins": "One FIFO queue; each batch's size is min(b_mem, b_SLA) from Paper 2's Algorithm 1 "
                       "(memory) and Algorithm 2 (TBT deadline). Batches run to completion.",
    "multi_bin_dynamic": "K queues by predicted output length (equal-mass bins); a batch never mixes bins and "
                         "each bin has its own memory bound and SLA controller. Batches run to completion.",
    "multi_bin_fixed": "Paper 1 exactly: K bins, a batch forms when a bin holds B requests, formed batches "
                       "are served first-formed-first-served. Batches run to completion.",
    "continuous_static": "Continuous (iteration-level) batching, as vLLM 0.33's scheduler runs it: requests "
                         "join and leave between iterations on paged KV memory. The number of running "
                         "sequences is capped at B.",
    "continuous_dynamic": "Continuous batching whose running cap is min(b_mem, b_SLA) from Paper 2's "
                          "Algorithms 1 and 2 with N_decode = the running requests. This is the setting the "
                          "paper's algorithms were made for.",
    "continuous_multi_bin": "Continuous batching that admits from K bins on predicted output length by the "
                            "bin policy, sizing each admission with its bin's statistics. The running cap "
                            "comes from Algorithms 1 and 2.",
}
COMPARE_MODES = ("static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic")
MAX_GPUS = 1000
MAX_TP = 64
MAX_BINS = 64
MAX_BATCH = 65_536
MAX_SEED = 2**63 - 1
# vLLM 0.33's default token budget for `vllm serve` by the GPU's total memory (EngineArgs.get_batch_defaults
# in vllm/engine/arg_utils.py; an A100 of 80 GB stays on the small tier there, a distinction batchlab cannot
# see). The total is taken as gpu_mem_gb over vLLM's default gpu_memory_utilization.
BUDGET_GB = (70 * 2**30 / 1e9, 160 * 2**30 / 1e9)   # 70 GiB and 160 GiB, in GB
BUDGET_SMALL, BUDGET_MID, BUDGET_LARGE = 2048, 8192, 16384
VLLM_MEMORY_UTILIZATION = 0.9


class ConfigError(FieldError):
    """An invalid simulation setting; ``field`` names it."""


def _f(default: Any, help: str, unit: str = "", group: str = "scheduler", **extra: Any):
    return described(default, help, unit, group, **extra)


@dataclass(frozen=True)
class SimConfig:
    """Scheduler, cluster, SLA, latency and memory settings of one run."""

    # --- scheduler -------------------------------------------------------
    mode: str = _f("continuous_dynamic", "Batching policy: " + ", ".join(MODES) + ".", choices=MODES)
    k_bins: int = _f(4, "Bins on predicted output length (multi-bin modes; equal-mass boundaries).",
                     range=(1, MAX_BINS))
    batch_size: int = _f(8, "Batch cap B (static_fifo, multi_bin_fixed): the most requests one batch takes. "
                         "With fill=greedy a batch holds what is waiting, up to B; fill=full waits for B. "
                         "continuous_static: the most running sequences per GPU.",
                         "requests", range=(1, MAX_BATCH))
    b_min: int = _f(1, "Smallest batch cap of the dynamic controllers (B_min).", "requests",
                    range=(1, MAX_BATCH))
    b_max: int = _f(128, "Largest batch cap of the dynamic controllers (B_max).", "requests",
                    range=(1, MAX_BATCH))
    fill: str | None = _f(None, "Batch-level modes: greedy = a free GPU takes what is waiting "
                          "(work-conserving); full = wait for a full batch (or max-wait). Default: full for "
                          "multi_bin_fixed, else greedy.", choices=FILLS)
    max_wait: float | None = _f(None, "With fill=full, the longest a request waits for its batch to fill "
                                "(none = no limit).", "s", range=(0.0, 1e7))
    bin_policy: str = _f("fcfs", "Which ready bin a free GPU serves (or, in continuous_multi_bin, admits "
                         "from): fcfs (oldest head / first formed), longest (most waiting), round_robin, "
                         "short_first (lowest bin).", choices=BIN_POLICIES)
    preempt_policy: str = _f("newest", "Continuous modes: which running request a preemption takes when KV "
                             "blocks run out: newest (the latest admitted, vLLM's FCFS scheduler) or priority "
                             "(the largest priority value, then the latest arrival: vLLM's priority "
                             "scheduler). Requests without a priority have 0.", choices=PREEMPT_POLICIES)
    queue_policy: str = _f("fcfs", "Continuous modes: the order of a waiting queue: fcfs (arrival order, "
                           "preempted requests first) or priority (smallest priority value first, then "
                           "arrival: vLLM's priority scheduler).", choices=QUEUE_POLICIES)
    # --- cluster ---------------------------------------------------------
    gpus: int = _f(4, "Number of identical GPUs in all: replicas x tp. Each replica (tp GPUs) runs one "
                   "scheduler: one batch at a time, or continuous batching.", group="cluster", range=(1, MAX_GPUS))
    replicas: int | None = _f(None, "Replicas of tp GPUs each; when given, gpus = replicas x tp (none = "
                              "gpus / tp).", "replicas", "cluster", range=(1, MAX_GPUS))
    tp: int = _f(1, "Tensor parallelism: GPUs per replica. A replica holds tp x the memory and shares the "
                 "weights; its iteration time comes from a grid measured at this TP, or from the scaling "
                 "model (compute and memory traffic split tp ways plus per-layer all-reduces).", "GPUs",
                 "cluster", range=(1, MAX_TP))
    router: str | None = _f(None, "Continuous modes: how an arriving request is assigned to a replica, where it "
                            "waits: " + ", ".join(ROUTERS) + ". shared_queue is one queue every replica pulls "
                            "from, the least loaded with room first (the ideal bound no deployment reaches); the "
                            f"others decide at arrival from what a router knows. Default: {CONTINUOUS_ROUTER} "
                            f"(vLLM's data-parallel balancer); batch-level modes use {BATCH_ROUTER} only.",
                            choices=ROUTERS, group="cluster")
    max_concurrency: int | None = _f(None, "Continuous modes: closed-loop load, as vllm bench serve "
                                     "--max-concurrency: this many clients, each sending its next request when "
                                     "its last one finishes; request k is sent at the later of its scheduled "
                                     "arrival and a client's freeing (latencies count from the send). none = "
                                     "open loop (every request sent at its arrival).", "requests", "cluster",
                                     range=(1, 10_000_000))
    disaggregate: str | None = _f(None, "Continuous modes: prefill/decode disaggregation as P:D, P prefill "
                                  "replicas and D decode replicas (gpus = (P + D) x tp), each pool behind its own "
                                  "router; a request's KV moves to its decode replica in kv_bytes / "
                                  "kv_transfer_gbps. none = every replica does both.", group="cluster")
    kv_transfer_gbps: float = _f(50.0, "Disaggregation: bandwidth of a KV transfer from a prefill to a decode "
                                 "replica (50 GB/s: 400 Gb/s InfiniBand or RoCE).", "GB/s", "cluster",
                                 range=(0.001, 100_000.0))
    interconnect_gbps: float = _f(32.0, "Tensor parallelism: bandwidth of each GPU's link for the all-reduces "
                                  "(32 GB/s: PCIe 4.0 x16; NVLink 4: 450 GB/s a direction).", "GB/s", "cluster",
                                  range=(0.1, 100_000.0))
    seed: int = _f(0, "Simulation seed (bin-confusion draws); same seeds, same result. The workload has "
                   "its own seed (workload_seed).", group="cluster", range=(0, MAX_SEED))
    # --- SLA -------------------------------------------------------------
    d_sla_ttft: float | None = _f(10.0, "Deadline on time to first token, queueing included (none = off).",
                                  "s", "sla", range=(1e-3, 1e7))
    d_sla_tbt: float | None = _f(0.050, "Deadline on a request's time between tokens (its mean gap, or its "
                                 "largest with tbt_sla=max); also the target of the SLA controller "
                                 "(Algorithm 2). none = off.", "s", "sla", range=(1e-4, 60.0))
    tbt_sla: str = _f("mean", "Which per-request TBT the deadline applies to: mean (its mean gap between "
                      "tokens) or max (its largest gap, a stricter tail bound).", group="sla", choices=TBT_STATS)
    d_sla_e2e: float | None = _f(60.0, "Deadline on end-to-end latency (none = off).", "s", "sla",
                                 range=(1e-3, 1e7))
    # --- SLOs and request classes (judge a run; not in its hash: core.identity, core.slo_report) ---
    slo: str | None = _f(None, "Percentile SLOs, METRIC:pP:LIMIT, comma-separated (--slo repeats): e.g. "
                         "ttft:p99:500ms,tpot:p90:50ms; metrics ttft, tpot (mean gap between tokens), e2el, queue; "
                         "rejected requests count as infinite. Each is reported met or missed with its margin, and "
                         "capacity and plan require all to hold (docs/semantics.md#percentile-slos). none = off.",
                         group="sla", repeatable=True)
    classes: str | None = _f(None, "Request classes by priority, NAME:priority=P[:ttft=D][:tpot=D][:e2e=D] "
                             "separated by ';': e.g. interactive:priority=0:ttft=500ms;batch:priority=1:e2e=120s. "
                             "A class's deadlines replace d_sla_* for its requests; each class's attainment is "
                             "reported, and capacity and plan require every class to meet the target "
                             "(docs/semantics.md#request-classes). none = off.", group="sla")
    sla_control: bool = _f(True, "Dynamic modes: Algorithm 2 on; off = b_SLA stays B_max (the TBT deadline is "
                           "still measured).", group="sla")
    sla_eps: float = _f(0.010, "Algorithm 2 tolerance eps_D around the TBT deadline.", "s", "sla",
                        range=(0.0, 60.0))
    sla_alpha: int = _f(20, "Algorithm 2 interval width alpha.", "requests", "sla", range=(1, MAX_BATCH))
    sla_delta: int = _f(5, "Algorithm 2 step delta.", "requests", "sla", range=(0, MAX_BATCH))
    sla_window: int = _f(8, "Algorithm 2's window: the recent step time and batch size average the last "
                         "this many batches (batch-level modes) or iterations (continuous modes); a "
                         "continuous controller updates once per window.", "batches", "sla",
                         range=(1, 100_000))
    # --- memory ----------------------------------------------------------
    model: str | None = _f(None, "A model from the catalogue (" + ", ".join(bundled_models()) + ") or a local "
                           "config.json or its folder: sets weights_gb (bf16), kv_layers, kv_heads, head_dim, "
                           "kv_dtype_bytes and hidden_size from its config (docs/hardware.md). none = those settings "
                           "as given.", group="memory")
    gpu: str | None = _f(None, "A GPU from the catalogue (" + ", ".join(gpu_catalogue()) + "): sets gpu_mem_gb = "
                         "gpu_memory_utilization x its memory and interconnect_gbps from its link. none = those "
                         "settings as given.", group="memory")
    gpu_memory_utilization: float = _f(VLLM_MEMORY_UTILIZATION, "With gpu: vLLM's gpu_memory_utilization, the "
                                       "fraction of the GPU's memory the server may use (vLLM's default 0.9).",
                                       "fraction", "memory", range=(0.01, 1.0))
    gpu_mem_gb: float = _f(19.0, "GPU memory the server may use for the model and its KV cache (19 GB: an 8B "
                           "model on a 24 GB L4 / A10G-class card, the runtime holding the rest).", "GB", "memory",
                           range=(0.5, 10_000.0))
    weights_gb: float = _f(16.0, "Model weights (16 GB = 8B parameters in bf16), split over a replica's tp "
                         "GPUs; below gpu_mem_gb x tp.", "GB", "memory", range=(0.0, 10_000.0))
    mem_reserve_frac: float = _f(0.10, "Fraction of the memory left after weights kept for activations "
                                 "(below 1).", "", "memory", range=(0.0, 0.99))
    kv_layers: int = _f(32, "Model layers (KV-cache size).", "", "memory", range=(1, 1024))
    kv_heads: int = _f(8, "KV heads per layer (GQA).", "", "memory", range=(1, 1024))
    head_dim: int = _f(128, "Head dimension.", "", "memory", range=(1, 4096))
    kv_dtype_bytes: int = _f(2, "Bytes per KV element (2 = bf16/fp16).", "bytes", "memory", range=(1, 8))
    memory_control: bool = _f(True, "Dynamic modes: Algorithm 1 on; off = b_mem stays B_max and admission keeps "
                              "no safety buffer.", group="memory")
    mem_margin: str = _f("factor", "Algorithm 1 safety buffer L0: factor = eta*(1-mem_factor); clt = "
                         "theta*sigma*sqrt(b) with theta = Phi^-1(1-mem_eps); none = no buffer.",
                         choices=MEM_MARGINS, group="memory")
    mem_factor: float = _f(0.95, "Algorithm 1 memory_factor (factor margin).", "", "memory",
                           range=(0.01, 1.0))
    mem_eps: float = _f(0.05, "Algorithm 1 overflow probability eps_M (clt margin).", "", "memory",
                        range=(1e-9, 0.49))
    stats_window: int = _f(1000, "Recent arrivals per queue whose lengths feed Algorithm 1 (0 = all).",
                           "requests", "memory", range=(0, 100_000_000))
    kv_reserve: str = _f("predicted", "Batch-level admission: a padded batch must fit its KV reservation, "
                         "b x (longest prompt + reserved output): the longest *predicted* output (raised to "
                         "what an evicted request already generated), or max_new_tokens.",
                         choices=KV_RESERVES, group="memory")
    max_new_tokens: int = _f(8192, "The server's generation limit (kv_reserve=max_new_tokens reserves this "
                             "much output per sequence); every request's output must be within it.",
                             "tokens", "memory", range=(1, 1_000_000))
    block_size: int = _f(16, "Continuous modes: tokens per paged KV block.", "tokens", "memory",
                         range=(1, 1024))
    kv_watermark: float = _f(0.0, "Continuous modes: vLLM's watermark: admission keeps int(watermark x "
                             "(blocks + 1)) KV blocks free while some request runs (vLLM counts its null "
                             "block).", "", "memory", range=(0.0, 0.5))
    max_num_batched_tokens: int | None = _f(
        None, "Continuous modes: vLLM's token budget per iteration, decode tokens (one per running request) and "
        "prefill tokens together: running requests first, then admissions, a prompt chunked to what is left. "
        "At least the running cap. none = vLLM 0.33's default (vllm serve) for a GPU of gpu_mem_gb / 0.9 (gpu's memory "
        "when gpu is set) "
        f"(vLLM's memory utilization): {BUDGET_SMALL:,} below 70 GiB, {BUDGET_MID:,} from 70 GiB, "
        f"{BUDGET_LARGE:,} from 160 GiB, or the running cap where that is larger.", "tokens", "memory",
        range=(1, 10_000_000))
    enable_prefix_caching: bool = _f(True, "Continuous modes: vLLM's automatic prefix caching (on by default, as in "
                                     "vLLM): a request's first KV blocks found cached on its GPU skip their "
                                     "prefill; freed blocks stay cached until evicted, least recently used first. "
                                     "Acts only on workloads with prefix keys (shared system prompts, "
                                     "conversations, Mooncake traces).", group="memory")
    # --- latency model ---------------------------------------------------
    latency: str = _f("parametric", "parametric, grid:NAME for a calibration grid (bundled or stored), or roofline "
                      "(an estimate from model's operators on gpu: docs/hardware.md).",
                      group="latency")
    scale_grid_tp: bool = _f(False, "Tensor parallelism: a grid measured at another TP than tp is refused unless "
                             "this is on; then its times go through the scaling model.", group="latency")
    hidden_size: int = _f(4096, "Model hidden size: tensor parallelism all-reduces tokens x hidden_size "
                          "activations (bf16) twice a layer.", "", "latency", range=(1, 1_000_000))
    prefill_base: float = _f(0.020, "Parametric prefill: fixed cost per batch.", "s", "latency",
                             range=(0.0, 60.0))
    prefill_per_token: float = _f(5.0e-5, "Parametric prefill: cost per padded prompt token.", "s", "latency",
                                  range=(0.0, 1.0))
    decode_base: float = _f(0.030, "Parametric decode step: fixed cost t0 (Paper 2: ~30 ms).", "s", "latency",
                            range=(0.0, 10.0))
    decode_per_seq: float = _f(2.2e-4, "Parametric decode step: cost per sequence t1 (Paper 2: ~0.22 ms).",
                               "s", "latency", range=(0.0, 1.0))
    decode_per_ctx_token: float = _f(1.0e-7, "Parametric decode step: cost per context token t2.", "s",
                                     "latency", range=(0.0, 0.01))

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------
    def _validate(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ConfigError(name, msg)

        coerce_fields(self, ConfigError)  # types, choices and every documented range
        self._canonical_judgement()
        if self.model is not None or self.gpu is not None:
            self._derive_hardware()
            coerce_fields(self, ConfigError)  # a local config.json's values within the documented ranges too
        if self.fill is None:
            object.__setattr__(self, "fill", "full" if self.mode == "multi_bin_fixed" else "greedy")
        if self.disaggregate is not None:   # P:D replicas
            split = self.pd_split
            need(self.continuous, "disaggregate", "prefill/decode disaggregation needs a continuous mode")
            object.__setattr__(self, "disaggregate", f"{split[0]}:{split[1]}")
            object.__setattr__(self, "replicas", sum(split))
        if self.replicas is not None:   # replicas x tp GPUs; the config keeps gpus alone (one source)
            need(self.replicas * self.tp <= MAX_GPUS, "replicas",
                 f"replicas x tp must be at most {MAX_GPUS} GPUs, got {self.replicas} x {self.tp}")
            object.__setattr__(self, "gpus", self.replicas * self.tp)
            object.__setattr__(self, "replicas", None)
        need(self.gpus % self.tp == 0, "tp", f"gpus ({self.gpus}) must be a multiple of tp ({self.tp})")
        need(self.disaggregate is None or self.routing != "shared_queue", "router",
             "each pool of a disaggregated cluster has its own router: choose one other than shared_queue")
        need(self.continuous or self.routing == BATCH_ROUTER, "router",
             f"batch-level modes run one shared queue (router {BATCH_ROUTER}); {self.routing} needs a continuous "
             "mode")
        need(self.continuous or self.max_concurrency is None, "max_concurrency",
             f"closed-loop load needs a continuous mode; {self.mode} serves the workload open loop (set "
             "max_concurrency to none)")
        need(self.b_max >= self.b_min, "b_min", f"b_min ({self.b_min}) must not exceed b_max ({self.b_max})")
        need(self.weights_gb < self.gpu_mem_gb * self.tp, "weights_gb",
             f"must be below gpu_mem_gb x tp ({self.gpu_mem_gb * self.tp:g} GB), got {self.weights_gb:g}")
        need(self.latency in ("parametric", "roofline") or (self.latency.startswith("grid:") and len(self.latency) > 5),
             "latency", f"must be 'parametric', 'grid:NAME' or 'roofline', got {self.latency!r}")
        need(self.latency != "roofline" or (self.model is not None and self.gpu is not None), "latency",
             f"roofline needs both model and gpu (its operators and its peaks); got model "
             f"{self.model or 'none'}, gpu {self.gpu or 'none'}")
        need(self.decode_base + self.decode_per_seq > 0, "decode_base",
             "decode_base + decode_per_seq must be > 0 (a decode step cannot be free)")
        if self.continuous and self.max_num_batched_tokens is not None:   # vLLM refuses less too
            cap, name = self._running_cap
            need(self.max_num_batched_tokens >= cap, "max_num_batched_tokens",
                 f"must be at least the running cap ({name} {cap:,}): every running request decodes a token "
                 f"within it; got {self.max_num_batched_tokens:,}")

    def _canonical_judgement(self) -> None:
        """Read ``slo`` and ``classes`` (a ConfigError names the bad part) and keep their canonical text."""
        from .request_classes import classes_text, parse_classes
        from .slo import parse_slos, slos_text

        for name, parse, text in (("slo", parse_slos, slos_text), ("classes", parse_classes, classes_text)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, text(parse(value)) or None)

    def _derive_hardware(self) -> None:
        """Fill the settings that ``model`` and ``gpu`` determine. The catalogue owns them: a derived setting
        given a value other than its default and other than the catalogue's is a ConfigError naming both."""
        if self.gpu is not None:   # one spelling per GPU and catalogue model: one run hash
            object.__setattr__(self, "gpu", self._gpu_spec().name)
        if self.model is not None and not is_model_path(self.model):
            object.__setattr__(self, "model", self.model.lower())
        derived: dict[str, tuple[str, Any]] = {}
        for name, fields in (("model", self.hardware_from_model()), ("gpu", self.hardware_from_gpu())):
            derived |= {k: (name, v) for k, v in fields.items()}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key, (source, value) in derived.items():
            given = getattr(self, key)
            if given != defaults[key] and given != value:
                raise ConfigError(key, f"is set by {source} {getattr(self, source)} ({value:g}); got {given:g} too: "
                                       f"give {key} or {source}, not both")
            object.__setattr__(self, key, value)

    def hardware_from_model(self) -> dict[str, Any]:
        """The settings ``model`` determines (empty when ``model`` is none)."""
        if self.model is None:
            return {}
        try:
            arch = model_arch(self.model)
        except CatalogueError as exc:
            raise ConfigError("model", str(exc)) from None
        return {"weights_gb": round(arch.weights_gb(), 6), "kv_layers": arch.num_layers,
                "kv_heads": arch.num_kv_heads, "head_dim": arch.head_dim, "kv_dtype_bytes": arch.dtype_bytes,
                "hidden_size": arch.hidden_size}

    def hardware_from_gpu(self) -> dict[str, Any]:
        """The settings ``gpu`` determines (empty when ``gpu`` is none)."""
        if self.gpu is None:
            return {}
        spec = self._gpu_spec()
        return {"gpu_mem_gb": round(spec.usable_gb(self.gpu_memory_utilization), 6),
                "interconnect_gbps": float(spec.interconnect_gbps)}

    def _gpu_spec(self):
        try:
            return gpu_spec(self.gpu)
        except CatalogueError as exc:
            raise ConfigError("gpu", str(exc)) from None

    # ------------------------------------------------------------------
    @property
    def binned(self) -> bool:
        return self.mode in BINNED_MODES

    @property
    def dynamic(self) -> bool:
        return self.mode in DYNAMIC_MODES

    @property
    def continuous(self) -> bool:
        """Iteration-level (continuous) batching rather than run-to-completion batches."""
        return self.mode in CONTINUOUS_MODES

    @property
    def token_budget(self) -> int:
        """The tokens an iteration may compute (max_num_batched_tokens, or vLLM's default for gpu_mem_gb)."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        device_gb = self._gpu_spec().memory_gb if self.gpu else self.gpu_mem_gb / VLLM_MEMORY_UTILIZATION
        default = (BUDGET_LARGE if device_gb >= BUDGET_GB[1] else BUDGET_MID if device_gb >= BUDGET_GB[0]
                   else BUDGET_SMALL)
        return max(default, self._running_cap[0])

    @property
    def _running_cap(self) -> tuple[int, str]:
        """The most requests a continuous GPU runs at once, and the setting that says so."""
        return (self.b_max, "b_max") if self.dynamic else (self.batch_size, "batch_size")

    @property
    def routing(self) -> str:
        """The router this run uses: ``router``, or the mode's default (least_outstanding for the continuous
        modes, shared_queue for the batch-level ones)."""
        if self.router is not None:
            return self.router
        return CONTINUOUS_ROUTER if self.continuous else BATCH_ROUTER

    @property
    def pd_split(self) -> tuple[int, int] | None:
        """(prefill replicas, decode replicas) of a disaggregated cluster, or None."""
        if self.disaggregate is None:
            return None
        parts = self.disaggregate.replace(" ", "").split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise ConfigError("disaggregate", f"must be P:D with P and D whole numbers of replicas from 1, got "
                              f"{self.disaggregate!r}")
        return int(parts[0]), int(parts[1])

    @property
    def n_replicas(self) -> int:
        """Replicas: gpus / tp, each running one scheduler (the simulator's unit of service)."""
        return self.gpus // self.tp

    @property
    def bins(self) -> int:
        """Number of queues actually used (1 for the no-bin modes)."""
        return self.k_bins if self.binned else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def relevant_dict(self) -> dict:
        """The settings that can change this mode's result (what the run hash covers)."""
        d = self.to_dict()
        drop: set[str] = set()
        if not self.binned:
            drop |= {"k_bins", "bin_policy"}
        if self.dynamic:
            drop.add("batch_size")
            if not self.memory_control:
                drop |= {"mem_margin", "mem_factor", "mem_eps", "stats_window"}
            if not self.sla_control:
                drop |= {"sla_eps", "sla_alpha", "sla_delta"}
        else:
            drop |= {"b_min", "b_max", "sla_eps", "sla_alpha", "sla_delta", "sla_window", "sla_control",
                     "memory_control", "mem_margin", "mem_factor", "mem_eps", "stats_window"}
        if self.mem_margin != "factor":
            drop.add("mem_factor")
        if self.mem_margin != "clt":
            drop.add("mem_eps")
        if self.continuous:
            drop |= {"fill", "max_wait", "kv_reserve", "max_new_tokens"}
        else:
            drop |= {"block_size", "kv_watermark", "max_num_batched_tokens", "preempt_policy", "queue_policy",
                     "enable_prefix_caching"}
            if self.kv_reserve != "max_new_tokens":
                drop.add("max_new_tokens")
            if self.fill == "greedy":
                drop.add("max_wait")
        # at their defaults the policies are what every run did before they were settings: same hash
        if self.preempt_policy == "newest":
            drop.add("preempt_policy")
        if self.queue_policy == "fcfs":
            drop.add("queue_policy")
        if self.enable_prefix_caching:
            drop.add("enable_prefix_caching")
        if self.d_sla_tbt is None:
            drop.add("tbt_sla")
        drop.add("replicas")   # folded into gpus
        drop |= {k for k in ("model", "gpu", "slo", "classes") if d[k] is None}   # without them, as before they existed
        if self.gpu is None:
            drop.add("gpu_memory_utilization")
        if self.disaggregate is None:
            drop |= {"disaggregate", "kv_transfer_gbps"}
        if self.max_concurrency is None:   # open loop, as every run before the setting: the same hash
            drop.add("max_concurrency")
        if self.tp == 1:
            drop |= {"tp", "interconnect_gbps", "hidden_size", "scale_grid_tp"}
        elif self.latency in ("parametric", "roofline"):
            drop.add("scale_grid_tp")
        if self.routing == "shared_queue" or self.n_replicas == 1:   # every router is the same on one replica
            drop.add("router")
        else:
            d["router"] = self.routing   # the default named: the same run whether it was given or not
        if self.latency != "parametric":
            drop |= {"prefill_base", "prefill_per_token", "decode_base", "decode_per_seq", "decode_per_ctx_token"}
        return {k: v for k, v in d.items() if k not in drop}

    def replace(self, **changes: Any) -> SimConfig:
        if "mode" in changes and "fill" not in changes:
            changes["fill"] = None  # re-derive the mode's default fill
        hardware = {"model": self.hardware_from_model, "gpu": self.hardware_from_gpu,
                    "gpu_memory_utilization": self.hardware_from_gpu}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key, derived in hardware.items():   # a new model or GPU re-derives what the old one set
            if key in changes and changes[key] != getattr(self, key):
                changes = {k: defaults[k] for k in derived() if k not in changes} | changes
        if "tp" in changes and "replicas" not in changes and "gpus" not in changes:
            changes["replicas"] = self.n_replicas   # a new TP keeps the replicas
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> SimConfig:
        if "chunk_size" in data:   # a run stored before the token budget: its prompt-token budget
            data = {k: v for k, v in data.items() if k != "chunk_size"} | {"max_num_batched_tokens": data["chunk_size"]}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(names))})")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def config_fields() -> list[dataclasses.Field]:
    """Fields in declaration order, for generating CLI flags and form widgets."""
    return list(dataclasses.fields(SimConfig))
