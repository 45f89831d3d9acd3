"""Roofline latency: one iteration's time from the model's operators on the GPU's peaks
(docs/hardware.md#latency-the-roofline).

Each operator of a layer costs ``max(FLOPs / (TFLOPS x 1e12 x COMPUTE_EFFICIENCY),
bytes / (bandwidth x 1e9 x BANDWIDTH_EFFICIENCY))`` on one GPU; an iteration is

    time_T = ITERATION_OVERHEAD_S + (layers x sum over a layer's operators + lm_head) / T + comm_T(n)

with ``comm_T`` the tensor-parallel all-reduces of :meth:`core.tensor_parallel.TensorParallel.comm_time`
(``n``: the tokens computed, ``b x P`` for a prefill, ``b`` for a decode step). The time is not linear in
batch, so a run serves it as an in-memory grid (:func:`roofline_grid`, metadata ``source: roofline``)
through :class:`core.latency_grid.GridLatency`: the engines and the compiled kernel use it unchanged.
Pure numpy; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from batchlab.calibration.schema import MAX_SECONDS, Grid, grid_from_table

from .hardware import GPU, ModelArch, gpu_spec, model_arch
from .latency_grid import METHOD, GridLatency
from .tensor_parallel import TensorParallel

# Achievable share of the datasheet peaks. Large bf16 GEMMs reach about 60-75 % of the dense peak in
# practice (datasheet clocks are boost clocks that power limits lower under sustained tensor-core load);
# streaming reads reach about 80-90 % of HBM peak (STREAM-style copy kernels; memory-bound decode GEMVs
# land near the low end). Round figures: change them and the grid's identity changes with them.
COMPUTE_EFFICIENCY = 0.7
BANDWIDTH_EFFICIENCY = 0.8
# Fixed cost of an iteration on the host: scheduling, input preparation, kernel launches (or a CUDA graph
# replay) and sampling. A round figure in the range of the per-step CPU overhead vLLM's developers report
# for an 8B model (vLLM v0.6.0 performance update, blog.vllm.ai, September 2024).
ITERATION_OVERHEAD_S = 2e-3
ACTIVATION_BYTES = 2   # bf16 activations
MODEL = "roofline-v1"  # the formulas' name in identities; change it when they change

# The grid the engines read: batch sizes and contexts 1, 2, 3, 4, 6, 8, 12, ... (powers of 2 and 1.5 x them)
GRID_BATCHES = tuple(sorted({1, *(m << k for k in range(12) for m in (2, 3) if m << k <= 4096)}))
GRID_CONTEXTS = tuple(sorted({1, *(m << k for k in range(18) for m in (2, 3) if m << k <= 262144)}))


def _linear(tokens, k: int, m: int, weight_bytes: int):
    """FLOPs and bytes of ``tokens`` x (k -> m) matmul: its weights read once, activations in and out."""
    return 2.0 * tokens * k * m, weight_bytes * k * m + ACTIVATION_BYTES * tokens * (k + m)


@dataclass(frozen=True)
class Roofline:
    """The roofline of ``arch`` on ``gpu`` at tensor parallelism ``tp`` (``comm``: the all-reduce model,
    needed when tp > 1)."""

    arch: ModelArch
    gpu: GPU
    tp: int = 1
    comm: TensorParallel | None = None

    def __post_init__(self):
        if self.tp < 1 or (self.tp > 1 and self.comm is None):
            raise ValueError(f"tp {self.tp}: a tp of 1, or more with its TensorParallel comm model")

    @classmethod
    def from_config(cls, config) -> Roofline:
        """The roofline of a config's ``model``, ``gpu`` and ``tp`` (links and layers as the config has them)."""
        return cls(model_arch(config.model), gpu_spec(config.gpu), config.tp, TensorParallel.from_config(config))

    # ------------------------------------------------------------------ operators
    def layer_operators(self, phase: str, batch, context) -> dict[str, tuple]:
        """(FLOPs, bytes) of each operator of one layer on one GPU at TP 1. ``phase`` "prefill": ``batch``
        prompts of ``context`` tokens; "decode": one token for each of ``batch`` sequences attending
        ``context`` tokens. Numpy arrays broadcast."""
        a, wb = self.arch, self.arch.dtype_bytes
        b, x = np.asarray(batch, dtype=np.float64), np.asarray(context, dtype=np.float64)
        h, d = a.hidden_size, a.head_dim
        q, kv = a.num_heads * d, a.num_kv_heads * d
        n = b * x if phase == "prefill" else b
        ops = {"qkv_proj": _linear(n, h, q + 2 * kv, wb), "o_proj": _linear(n, q, h, wb)}
        if phase == "prefill":   # causal: half of the P x P scores; QK^T and PV; flash attention's traffic
            ops["attention"] = (2.0 * b * x * x * a.num_heads * d,
                                ACTIVATION_BYTES * n * (2 * q + 2 * kv) + wb * n * 2 * kv)
        elif phase == "decode":  # one query row against the cache: the KV cache read dominates
            ops["attention"] = (4.0 * b * x * a.num_heads * d, wb * b * x * 2 * kv + ACTIVATION_BYTES * b * 2 * q)
        else:
            raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        if a.num_experts:
            e, k, im = a.num_experts, a.experts_per_tok, a.moe_intermediate_size
            ops["router"] = _linear(n, h, e, wb)
            active = np.minimum(e, n * k)   # experts some token uses; every token's top-k distinct until all E
            ops["experts"] = (2.0 * n * k * 3 * h * im,
                              wb * active * 3 * h * im + ACTIVATION_BYTES * n * k * (2 * h + 3 * im))
            if a.shared_expert_intermediate_size:
                si = a.shared_expert_intermediate_size
                ops["shared_gate_up"] = _linear(n, h, 2 * si + 1, wb)
                ops["shared_down"] = _linear(n, si, h, wb)
        else:
            ops["gate_up_proj"] = _linear(n, h, 2 * a.intermediate_size, wb)
            ops["down_proj"] = _linear(n, a.intermediate_size, h, wb)
        return ops

    def lm_head(self, batch) -> tuple:
        """(FLOPs, bytes) of the logits: one token per sequence (a prefill samples only its last token)."""
        return _linear(np.asarray(batch, dtype=np.float64), self.arch.hidden_size, self.arch.vocab_size,
                       self.arch.dtype_bytes)

    def op_time(self, flops, nbytes):
        """Seconds of one operator on one GPU: the slower of its compute and its memory traffic."""
        return np.maximum(flops / (self.gpu.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY),
                          nbytes / (self.gpu.bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY))

    def compute_time(self, phase: str, batch, context):
        """The operators' time of an iteration on one GPU (TP 1, no overhead, no communication)."""
        layer = sum(self.op_time(f, m) for f, m in self.layer_operators(phase, batch, context).values())
        return self.arch.num_layers * layer + self.op_time(*self.lm_head(batch))

    def _time(self, phase: str, batch, context, tokens):
        t = ITERATION_OVERHEAD_S + self.compute_time(phase, batch, context) / self.tp
        return t + (self.comm.comm_time(self.tp, tokens) if self.tp > 1 else 0.0)

    def prefill_time(self, batch, prompt_len):
        """Seconds of a prefill of ``batch`` prompts of ``prompt_len`` tokens on the replica."""
        b = np.asarray(batch, dtype=np.float64)
        return self._time("prefill", b, prompt_len, b * np.asarray(prompt_len, dtype=np.float64))

    def decode_step_time(self, batch, context_len):
        """Seconds of one decode step of ``batch`` sequences attending ``context_len`` tokens on the replica."""
        return self._time("decode", batch, context_len, np.asarray(batch, dtype=np.float64))

    # ------------------------------------------------------------------ grid
    @property
    def label(self) -> str:
        return f"{self.arch.name} on {self.gpu.name}, TP {self.tp}"

    def grid(self) -> Grid:
        """The roofline at every (batch, context) of :data:`GRID_BATCHES` x :data:`GRID_CONTEXTS`, as a
        validated grid; a cell over the grid format's hour is left out (never reached in practice)."""
        b, c = (m.ravel() for m in np.meshgrid(GRID_BATCHES, GRID_CONTEXTS, indexing="ij"))
        times = {"prefill_s": self.prefill_time(b, c), "decode_step_s": self.decode_step_time(b, c)}
        import pandas as pd

        table = pd.DataFrame({"batch_size": b, "context_len": c,
                              **{k: np.where(v <= MAX_SECONDS, v, np.nan) for k, v in times.items()}})
        meta = {"name": f"roofline {self.label}", "source": "roofline", "model": self.arch.name,
                "gpu": self.gpu.name, "tp": str(self.tp), "roofline": MODEL,
                "compute_efficiency": repr(COMPUTE_EFFICIENCY), "bandwidth_efficiency": repr(BANDWIDTH_EFFICIENCY),
                "iteration_overhead_s": repr(ITERATION_OVERHEAD_S),
                "notes": "estimate from the model's operators and the GPU's datasheet, not a measurement"}
        return grid_from_table(table, meta, meta["name"])


@lru_cache(maxsize=32)
def roofline_grid(roof: Roofline) -> Grid:
    """``roof.grid()``, computed once per model, GPU, TP and link."""
    return roof.grid()


def estimate_text(model: str, gpu: str, tp: int) -> str:
    """What a run on the roofline says of its latency: an estimate, and the measured grid of the pair
    where one ships (:mod:`calibration.compose`)."""
    from batchlab.calibration.data import bundled_grids

    head, measured = f"roofline estimate ({model} on {gpu}, TP {tp})", f"{model}@{gpu}/tp{tp}"
    if measured in bundled_grids():
        return f"{head}: measured times ship as --latency grid:{measured}"
    return f"{head}: no measurement for this pair"


class RooflineLatency(GridLatency):
    """A run's latency from the roofline's grid (:func:`roofline_grid`): no measurement for the pair."""

    def __init__(self, roof: Roofline):
        self.roof = roof
        super().__init__(roofline_grid(roof))

    @property
    def estimate(self) -> str:
        return estimate_text(self.roof.arch.name, self.roof.gpu.name, self.roof.tp)

    @property
    def identity(self) -> dict:
        return {"kind": "roofline", "model": self.roof.arch.name, "gpu": self.roof.gpu.name, "tp": self.roof.tp,
                "roofline": MODEL, "sha256": self.grid.sha256, "method": METHOD}

    def run_notes(self) -> dict:
        return {**super().run_notes(), "roofline": self.estimate}





def roofline_error(grid: Grid, model: str | None = None, gpu: str | None = None):
    """The roofline against a measured ``grid`` at each of its measured points: a DataFrame with a row per
    (batch, context, quantity), the measured and the roofline's seconds and ``error`` = roofline / measured
    - 1. ``model``/``gpu`` default to the grid's ``# model:``/``# gpu:`` metadata; the TP is the grid's, the
    link the GPU's (as a run with ``--latency roofline`` would have them)."""
    import pandas as pd

    from .config import SimConfig

    model, gpu = model or grid.meta.get("model"), gpu or grid.meta.get("gpu")
    if not model or not gpu:
        raise ValueError(f"grid {grid.name!r} names no catalogue model and GPU in its metadata: give them")
    roof = Roofline.from_config(SimConfig(model=model, gpu=gpu, tp=grid.tp, gpus=grid.tp, latency="roofline"))
    frames = []
    for column, time in (("prefill_s", roof.prefill_time), ("decode_step_s", roof.decode_step_time)):
        m = grid.measured(column)
        b, c = m.batch_size.to_numpy(float), m.context_len.to_numpy(float)
        est = np.asarray(time(b, c), dtype=float)
        frames.append(pd.DataFrame({"batch_size": m.batch_size.to_numpy(), "context_len": m.context_len.to_numpy(),
                                    "quantity": column, "measured_s": m[column].to_numpy(float),
                                    "roofline_s": est}))
    out = pd.concat(frames, ignore_index=True)
    out["error"] = out.roofline_s / out.measured_s - 1
    return out


# The operating points the docs report the roofline's error at: (quantity, batch, context)
OPERATING_POINTS = (("decode_step_s", 1, 1024), ("decode_step_s", 16, 2048), ("decode_step_s", 64, 4096),
                    ("prefill_s", 1, 512), ("prefill_s", 1, 4096), ("prefill_s", 8, 2048))


def error_text(name: str, errors) -> str:
    """:func:`roofline_error`'s summary: the median and 90th-percentile |error| of each quantity, the error at
    each of :data:`OPERATING_POINTS` the grid measured, and the mean (the roofline's bias)."""
    lines = [f"roofline vs grid {name} ({len(errors)} measured points; error = roofline / measured - 1)"]
    for quantity, rows in errors.groupby("quantity", sort=False):
        e = rows.error.to_numpy()
        median, p90 = np.median(np.abs(e)), np.quantile(np.abs(e), 0.9)
        lines.append(f"  {quantity:<14} median |error| {median:6.1%}, p90 {p90:6.1%}, mean {e.mean():+6.1%} "
                     f"({len(e)} points)")
    for quantity, b, c in OPERATING_POINTS:
        hit = errors[(errors.quantity == quantity) & (errors.batch_size == b) & (errors.context_len == c)]
        if len(hit):
            r = hit.iloc[0]
            lines.append(f"  {quantity:<14} batch {b:>3}, context {c:>5}: measured {r.measured_s * 1e3:8.2f} "
                         f"ms, roofline {r.roofline_s * 1e3:8.2f} ms ({r.error:+.1%})")
    return "\n".join(lines)


__all__ = ["ACTIVATION_BYTES", "BANDWIDTH_EFFICIENCY", "COMPUTE_EFFICIENCY", "GRID_BATCHES", "GRID_CONTEXTS",
           "ITERATION_OVERHEAD_S", "MODEL", "OPERATING_POINTS", "Roofline", "RooflineLatency", "error_text",
           "estimate_text", "roofline_error", "roofline_grid"]
