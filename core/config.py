"""The frozen, validated configuration of one simulation run.

Every field carries its help text and unit in its metadata, so the CLI flags
and the web form are generated from this one table.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from workloads.fields import FieldError, coerce_fields, described

MODES = ("static_fifo", "dynamic_no_bins", "multi_bin_dynamic", "multi_bin_fixed")
BINNED_MODES = ("multi_bin_dynamic", "multi_bin_fixed")
DYNAMIC_MODES = ("dynamic_no_bins", "multi_bin_dynamic")
FILLS = ("greedy", "full")
BIN_POLICIES = ("fcfs", "longest", "round_robin", "short_first")
MEM_MARGINS = ("factor", "clt")
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
    "continuous_static": "Continuous (iteration-level) batching, as vLLM and SGLang do: requests join and "
                         "leave between iterations on paged KV memory. The number of running sequences is "
                         "capped at B.",
    "continuous_dynamic": "Continuous batching whose running cap is min(b_mem, b_SLA) from Paper 2's "
                          "Algorithms 1 and 2 with N_decode = the running requests. This is the setting the "
                          "paper's algorithms were made for.",
    "continuous_multi_bin": "Continuous batching that admits from K bins on predicted output length by the "
                            "bin policy, sizing each admission with its bin's statistics. The running cap "
                            "comes from Algorithms 1 and 2.",
}
MAX_GPUS = 1000
MAX_BINS = 64


class ConfigError(FieldError):
    """An invalid simulation setting; ``field`` names it."""


def _f(default: Any, help: str, unit: str = "", group: str = "scheduler", **extra: Any):
    return described(default, help, unit, group, **extra)


@dataclass(frozen=True)
class SimConfig:
    """Scheduler, cluster, SLA, latency and memory settings of one run."""

    # --- scheduler -------------------------------------------------------
    mode: str = _f("multi_bin_dynamic", "Batching policy: " + ", ".join(MODES) + ".", choices=MODES)
    k_bins: int = _f(4, "Bins on predicted output length (multi-bin modes; equal-mass boundaries).")
    batch_size: int = _f(8, "Fixed batch size B (static_fifo, multi_bin_fixed).", "requests")
    b_min: int = _f(1, "Smallest batch cap of the dynamic controllers (B_min).", "requests")
    b_max: int = _f(128, "Largest batch cap of the dynamic controllers (B_max).", "requests")
    fill: str | None = _f(None, "greedy: a free GPU takes what is waiting (work-conserving); full: wait "
                          "for a full batch (or max-wait). Default: full for multi_bin_fixed, else greedy.",
                          choices=FILLS)
    max_wait: float | None = _f(None, "With fill=full, the longest a request waits for its batch to fill "
                                "(none = no limit).", "s")
    bin_policy: str = _f("fcfs", "Which ready bin a free GPU serves: fcfs (oldest head / first formed), "
                         "longest (most waiting), round_robin, short_first (lowest bin).", choices=BIN_POLICIES)
    # --- cluster ---------------------------------------------------------
    gpus: int = _f(4, "Number of identical GPUs (1-1000), each running one batch at a time.", group="cluster")
    seed: int = _f(0, "Random seed (bin confusion draws); same seed, same result.", group="cluster")
    # --- SLA -------------------------------------------------------------
    d_sla_ttft: float | None = _f(10.0, "Deadline on time to first token, queueing included (none = off).",
                                  "s", "sla")
    d_sla_tbt: float | None = _f(0.050, "Deadline on time between tokens (mean decode step of the batch); "
                                 "also the target of the SLA controller (Algorithm 2). none = off.", "s", "sla")
    d_sla_e2e: float | None = _f(60.0, "Deadline on end-to-end latency (none = off).", "s", "sla")
    sla_eps: float = _f(0.010, "Algorithm 2 tolerance eps_D around the TBT deadline.", "s", "sla")
    sla_alpha: int = _f(20, "Algorithm 2 interval width alpha.", "requests", "sla")
    sla_delta: int = _f(5, "Algorithm 2 step delta.", "requests", "sla")
    sla_window: int = _f(8, "Batches averaged for Algorithm 2's recent step time and batch size.", "batches", "sla")
    # --- memory ----------------------------------------------------------
    gpu_mem_gb: float = _f(40.0, "GPU memory.", "GB", "memory")
    weights_gb: float = _f(16.0, "Model weights resident on each GPU (16 GB = 8B parameters in bf16).", "GB", "memory")
    mem_reserve_frac: float = _f(0.10, "Fraction of the memory left after weights kept for activations.",
                                 "", "memory")
    kv_layers: int = _f(32, "Model layers (KV-cache size).", "", "memory")
    kv_heads: int = _f(8, "KV heads per layer (GQA).", "", "memory")
    head_dim: int = _f(128, "Head dimension.", "", "memory")
    kv_dtype_bytes: int = _f(2, "Bytes per KV element (2 = bf16/fp16).", "bytes", "memory")
    mem_margin: str = _f("factor", "Algorithm 1 safety buffer L0: factor = eta*(1-mem_factor); clt = "
                         "theta*sigma*sqrt(b) with theta = Phi^-1(1-mem_eps).", choices=MEM_MARGINS, group="memory")
    mem_factor: float = _f(0.95, "Algorithm 1 memory_factor (factor margin).", "", "memory")
    mem_eps: float = _f(0.05, "Algorithm 1 overflow probability eps_M (clt margin).", "", "memory")
    stats_window: int = _f(1000, "Recent arrivals per queue whose lengths feed Algorithm 1 (0 = all).",
                           "requests", "memory")
    # --- latency model ---------------------------------------------------
    latency: str = _f("parametric", "parametric, or grid:NAME for a calibration grid (bundled or stored).",
                      group="latency")
    prefill_base: float = _f(0.020, "Parametric prefill: fixed cost per batch.", "s", "latency")
    prefill_per_token: float = _f(5.0e-5, "Parametric prefill: cost per padded prompt token.", "s", "latency")
    decode_base: float = _f(0.030, "Parametric decode step: fixed cost t0 (Paper 2: ~30 ms).", "s", "latency")
    decode_per_seq: float = _f(2.2e-4, "Parametric decode step: cost per sequence t1 (Paper 2: ~0.22 ms).",
                               "s", "latency")
    decode_per_ctx_token: float = _f(1.0e-7, "Parametric decode step: cost per context token t2.", "s", "latency")

    def __post_init__(self) -> None:
        if self.fill is None:
            object.__setattr__(self, "fill", "full" if self.mode == "multi_bin_fixed" else "greedy")
        self._validate()

    # ------------------------------------------------------------------
    def _validate(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ConfigError(name, msg)

        coerce_fields(self, ConfigError)
        need(1 <= self.gpus <= MAX_GPUS, "gpus", f"must be between 1 and {MAX_GPUS}, got {self.gpus}")
        need(1 <= self.k_bins <= MAX_BINS, "k_bins", f"must be between 1 and {MAX_BINS}, got {self.k_bins}")
        need(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        need(self.b_min >= 1, "b_min", f"must be >= 1, got {self.b_min}")
        need(self.b_max >= self.b_min, "b_min", f"b_min ({self.b_min}) must not exceed b_max ({self.b_max})")
        if self.max_wait is not None:
            need(self.max_wait >= 0, "max_wait", f"must be >= 0 s, got {self.max_wait}")
        for name in ("d_sla_ttft", "d_sla_tbt", "d_sla_e2e"):
            v = getattr(self, name)
            need(v is None or v > 0, name, f"must be > 0 s or none, got {v}")
        need(self.sla_eps >= 0, "sla_eps", "must be >= 0 s")
        need(self.sla_alpha >= 1, "sla_alpha", "must be >= 1")
        need(self.sla_delta >= 0, "sla_delta", "must be >= 0")
        need(self.sla_window >= 1, "sla_window", "must be >= 1")
        need(self.gpu_mem_gb > 0, "gpu_mem_gb", "must be > 0 GB")
        need(0 <= self.weights_gb < self.gpu_mem_gb, "weights_gb", "must be >= 0 and below gpu_mem_gb")
        need(0 <= self.mem_reserve_frac < 1, "mem_reserve_frac", "must be in [0, 1)")
        for name in ("kv_layers", "kv_heads", "head_dim", "kv_dtype_bytes"):
            need(getattr(self, name) >= 1, name, "must be >= 1")
        need(0 < self.mem_factor <= 1, "mem_factor", "must be in (0, 1]")
        need(0 < self.mem_eps < 0.5, "mem_eps", "must be in (0, 0.5)")
        need(self.stats_window >= 0, "stats_window", "must be >= 0")
        need(self.latency == "parametric" or (self.latency.startswith("grid:") and len(self.latency) > 5),
             "latency", f"must be 'parametric' or 'grid:NAME', got {self.latency!r}")
        for name in ("prefill_base", "prefill_per_token", "decode_base", "decode_per_seq", "decode_per_ctx_token"):
            need(getattr(self, name) >= 0, name, "must be >= 0 s")
        need(self.decode_base + self.decode_per_seq > 0, "decode_base",
             "decode_base + decode_per_seq must be > 0 (a decode step cannot be free)")

    # ------------------------------------------------------------------
    @property
    def binned(self) -> bool:
        return self.mode in BINNED_MODES

    @property
    def dynamic(self) -> bool:
        return self.mode in DYNAMIC_MODES

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
        else:
            drop |= {"b_min", "b_max", "sla_eps", "sla_alpha", "sla_delta", "sla_window",
                     "mem_margin", "mem_factor", "mem_eps", "stats_window"}
        if self.fill == "greedy":
            drop.add("max_wait")
        if self.latency != "parametric":
            drop |= {"prefill_base", "prefill_per_token", "decode_base", "decode_per_seq", "decode_per_ctx_token"}
        return {k: v for k, v in d.items() if k not in drop}

    def replace(self, **changes: Any) -> "SimConfig":
        if "mode" in changes and "fill" not in changes:
            changes["fill"] = None  # re-derive the mode's default fill
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> "SimConfig":
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
