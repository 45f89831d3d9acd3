"""Step-time grids composed from measured operator times (:mod:`calibration.operators`):
docs/hardware.md#measured-grids-composed-from-operator-tables.

An iteration of a dense model at tensor parallelism ``T`` is the sum of its operators, as vLLM runs them
(``n`` tokens: ``b x P`` for a prefill of ``b`` prompts of ``P`` tokens, ``b`` for a decode step):

    layers x [ qkv matmul + attention + o matmul + gate/up matmul + down matmul      (measured)
               + 2 all-reduces of n x hidden values (T > 1)                          (measured)
               + residual adds, RMSNorms and SiLU-and-multiply                       (bandwidth estimate) ]
    + logits matmul (one token a sequence) + the embedding's all-reduce (T > 1)     (measured)
    + ITERATION_OVERHEAD_S                                                           (the roofline's)

The element-wise operators are not in the tables: they cost their bytes at ``ELEMENTWISE_EFFICIENCY`` of
the GPU's bandwidth (AIConfigurator's own figure for them). The host's share of an iteration is the
roofline's constant, so the two differ only in how they price the operators.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from batchlab.core.hardware import ModelArch, gpu_spec, model_arch
from batchlab.core.roofline import ITERATION_OVERHEAD_S

from .operators import OperatorError, OperatorTables
from .schema import Grid
from .validate import grid_from_table

METHOD = "compose-v1"
ELEMENTWISE_EFFICIENCY = 0.8
GRAPH_MAX_TOKENS = 512     # vLLM's largest CUDA-graph batch by default: eager all-reduce above it
BATCHES = tuple(1 << i for i in range(12))                     # 1 .. 2,048
CONTEXTS = tuple(sorted({1 << i for i in range(18)} | {1536, 3072, 6144, 10240, 12288}))   # 1 .. 131,072

# The grids that ship (calibration/data/composed): name -> (model, GPU, TP)
FEATURED = {f"{m}@{g}/tp{t}": (m, g, t) for m, g, t in (
    ("llama-3.1-8b", "h100", 1), ("llama-3.1-8b", "h200", 1), ("llama-3.1-8b", "b200", 1),
    ("llama-3.1-8b", "a100-80gb", 1), ("llama-3.1-8b", "l40s", 1), ("qwen3-4b", "a100-80gb", 1),
    ("llama-3.1-70b", "h100", 4))}


def grid_name(model: str, gpu: str, tp: int) -> str:
    """A composed grid's name: ``MODEL@GPU/tpT`` (``grid:`` finds the shipped ones by it)."""
    return f"{model}@{gpu}/tp{tp}"


def file_name(name: str) -> str:
    """The shipped file of a composed grid name (``/`` is not allowed in a file name)."""
    return name.replace("/tp", "_tp") + ".csv"


def layer_shapes(arch: ModelArch, tp: int) -> dict:
    """One layer's matmuls as (n, k) per GPU, the logits' (n, k), and attention's heads per GPU."""
    if arch.num_experts:
        raise OperatorError(f"model {arch.name}: a mixture of experts; composed grids cover dense models")
    if arch.num_heads % tp or arch.num_kv_heads % tp:
        raise OperatorError(f"model {arch.name}: {arch.num_heads} heads and {arch.num_kv_heads} KV heads do not "
                            f"split over TP {tp}")
    h, d, i = arch.hidden_size, arch.head_dim, arch.intermediate_size
    q, kv = arch.num_heads * d // tp, arch.num_kv_heads * d // tp
    return {"gemms": {"qkv": (q + 2 * kv, h), "o": (h, q), "gate_up": (2 * i // tp, h), "down": (h, i // tp)},
            "lm_head": (arch.vocab_size // tp, h),
            "heads": (arch.num_heads // tp, arch.num_kv_heads // tp, d)}


class Composer:
    """Iteration times of ``arch`` at TP ``tp`` from ``tables`` (one GPU's measured operators)."""

    def __init__(self, arch: ModelArch, tables: OperatorTables, tp: int = 1):
        self.arch, self.tables, self.tp = arch, tables, tp
        self.shapes = layer_shapes(arch, tp)
        self.bandwidth = gpu_spec(tables.gpu).bandwidth_gbps * 1e9 * ELEMENTWISE_EFFICIENCY

    def _elementwise_s(self, tokens: int) -> float:
        """A layer's residual adds and RMSNorms (2 x: 2 hidden in, 2 out) and SiLU-and-multiply (2 I in, I out)."""
        h, i = self.arch.hidden_size, self.arch.intermediate_size // self.tp
        return tokens * (8 * h + 3 * i) * self.arch.dtype_bytes / self.bandwidth

    def _allreduce_ms(self, tokens: int) -> float:
        backend = "graph" if tokens <= GRAPH_MAX_TOKENS else "eager"
        return self.tables.allreduce_ms(self.tp, tokens * self.arch.hidden_size, backend)

    def _iteration_s(self, tokens: int, sequences: int, attention_ms: float) -> float:
        t = self.tables
        layer_ms = attention_ms + sum(t.gemm_ms(tokens, n, k) for n, k in self.shapes["gemms"].values())
        layer_ms += 2 * self._allreduce_ms(tokens)
        ms = self.arch.num_layers * layer_ms + t.gemm_ms(sequences, *self.shapes["lm_head"])
        ms += self._allreduce_ms(tokens)
        return ITERATION_OVERHEAD_S + ms / 1e3 + self.arch.num_layers * self._elementwise_s(tokens)

    def prefill_s(self, batch: int, prompt: int) -> float:
        """A prefill of ``batch`` prompts of ``prompt`` tokens, all in one forward pass."""
        attn = self.tables.context_attention_ms(batch, prompt, *self.shapes["heads"])
        return self._iteration_s(batch * prompt, batch, attn)

    def decode_step_s(self, batch: int, context: int) -> float:
        """One decode step of ``batch`` sequences attending ``context`` tokens."""
        attn = self.tables.generation_attention_ms(batch, context, *self.shapes["heads"])
        return self._iteration_s(batch, batch, attn)

    def grid(self, name: str) -> Grid:
        """Every (batch, context) of :data:`BATCHES` x :data:`CONTEXTS`; a prefill longer than the longest
        measured prompt is left out (the run extrapolates it and says so)."""
        max_isl = self.tables.context_attention_max_isl(*self.shapes["heads"])
        rows = [(b, c, self.prefill_s(b, c) if c <= max_isl else np.nan, self.decode_step_s(b, c))
                for b in BATCHES for c in CONTEXTS]
        table = pd.DataFrame(rows, columns=["batch_size", "context_len", "prefill_s", "decode_step_s"])
        kv_per_token = 2 * self.arch.num_layers * self.arch.num_kv_heads * self.arch.head_dim * self.arch.dtype_bytes
        table["kv_cache_gib"] = table.batch_size * table.context_len * kv_per_token / 2**30
        src = self.tables.source
        meta = {"name": name, "model": self.arch.name, "gpu": self.tables.gpu, "device": src["device"],
                "tp": str(self.tp), "dtype": "bf16",
                "engine": f"vLLM {src['version']} kernels (attention: {src['context_attention_kernel']}, "
                          f"{src['generation_attention_kernel']})",
                "source": "composed from measured operator times: NVIDIA AIConfigurator's tables "
                          "(https://github.com/ai-dynamo/aiconfigurator)",
                "source_commit": src.get("commit", ""),
                "licence": "Apache-2.0 (the operator tables; calibration/data/aiconfigurator/LICENSE)",
                "method": METHOD, "iteration_overhead_s": repr(ITERATION_OVERHEAD_S),
                "elementwise_efficiency": repr(ELEMENTWISE_EFFICIENCY),
                "notes": "sum of measured matmul, attention and all-reduce times per operator; element-wise "
                         "operators from bandwidth; host overhead the roofline's constant "
                         "(docs/hardware.md#measured-grids-composed-from-operator-tables)"}
        return grid_from_table(table, meta, name)


def compose(model: str, gpu: str, tp: int = 1, tables: OperatorTables | None = None) -> Grid:
    """The composed grid of catalogue ``model`` on catalogue ``gpu`` at TP ``tp`` (shipped tables unless
    ``tables``). OperatorError when the tables lack an operator it needs."""
    arch, spec = model_arch(model), gpu_spec(gpu)
    tables = tables or OperatorTables.bundled(spec.name)
    return Composer(arch, tables, tp).grid(grid_name(arch.name, spec.name, tp))


def write_featured(out_dir) -> list[str]:
    """Compose every :data:`FEATURED` grid into ``out_dir`` (maintainers: after the tables change)."""
    from pathlib import Path

    written = []
    for name, (model, gpu, tp) in FEATURED.items():
        path = Path(out_dir) / file_name(name)
        path.write_bytes(compose(model, gpu, tp).to_csv_bytes())
        written.append(str(path))
    return written


__all__ = ["BATCHES", "CONTEXTS", "Composer", "ELEMENTWISE_EFFICIENCY", "FEATURED", "METHOD", "compose",
           "file_name", "grid_name", "layer_shapes", "write_featured"]
