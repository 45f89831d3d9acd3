"""Measured operator times (AIConfigurator's tables, ``calibration/data/aiconfigurator``) and lookups
between their measured points (docs/hardware.md#measured-grids-composed-from-operator-tables).

A GPU's folder holds four CSV tables, each a subset of AIConfigurator's ``vllm`` tables for that GPU
(times in milliseconds, as measured):

========================= ===============================================================
``gemm.csv``              ``m, n, k, latency_ms``: a bf16 ``m x k`` by ``k x n`` matmul
``context_attention.csv`` ``heads, kv_heads, head_dim, batch, isl, latency_ms``: causal
                          attention over ``batch`` prompts of ``isl`` tokens
``generation_attention`` ``heads, kv_heads, head_dim, batch, context, latency_ms``: one
``.csv``                  decode token of each of ``batch`` sequences over ``context`` cached
                          tokens (AIConfigurator's ``step + 1``)
``allreduce.csv``         ``num_gpus, elements, backend, latency_ms``: vLLM's custom
                          all-reduce of ``elements`` bf16 values (``graph`` or ``eager``)
========================= ===============================================================

Between measured points a lookup is linear along each axis (trilinear for a matmul, bilinear for
attention, linear in size for an all-reduce), so at a measured point it returns the measurement. Below
the smallest measured value of an axis it takes the smallest (a smaller operator is not faster than the
smallest measured one); above the largest it splits the operator into measured-size pieces plus a
remainder and adds their times (a matmul by rows, columns or the reduction, attention by batch, an
all-reduce by message), which is how such an operator can be run. :func:`extract` rebuilds the tables
from an AIConfigurator checkout.
"""
from __future__ import annotations

import csv
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

TABLES_DIR = Path(__file__).resolve().parent / "data" / "aiconfigurator"
TABLES = ("gemm", "context_attention", "generation_attention", "allreduce")

# AIConfigurator's folder name -> batchlab's GPU catalogue name
GPU_DIRS = {"a100_sxm": "a100-80gb", "h100_sxm": "h100", "h200_sxm": "h200", "b200_sxm": "b200", "l40s": "l40s"}


class OperatorError(ValueError):
    """An operator the tables cannot answer (a head shape they do not hold, a missing GPU)."""


def _bracket(knots: list, x: float) -> tuple:
    """The two measured knots around ``x`` and x's weight on the upper one (x within the knots)."""
    i = bisect_left(knots, x)
    if knots[i] == x:
        return knots[i], knots[i], 0.0
    lo, hi = knots[i - 1], knots[i]
    return lo, hi, (x - lo) / (hi - lo)


def _pieces(x: int, top: int) -> list[tuple[int, int]]:
    """``x`` as (size, count) pieces no larger than ``top``: ``x // top`` full ones and the remainder."""
    full, rest = divmod(int(x), int(top))
    return [(top, full)] * (full > 0) + [(rest, 1)] * (rest > 0)


class _Table2D:
    """Times on a (rows, columns) lattice, bilinear between measured points; a missing corner means the
    batch was not measured at that length (out of memory), so the batch axis is split below it."""

    def __init__(self, points: dict[tuple[int, int], float]):
        self.points = points
        self.cols = sorted({c for _, c in points})
        self.rows_at = {c: sorted(r for r, cc in points if cc == c) for c in self.cols}

    def rows_max(self, col: float) -> int:
        """The largest batch measured at both knots around ``col``."""
        lo, hi, _ = _bracket(self.cols, col)
        return min(self.rows_at[lo][-1], self.rows_at[hi][-1])

    def _at(self, row: float, col: float) -> float:
        lo, hi, w = _bracket(self.cols, col)
        return (1 - w) * self._along(row, lo) + w * self._along(row, hi) if w else self._along(row, lo)

    def _along(self, row: float, col: int) -> float:
        rows = self.rows_at[col]
        a, b, w = _bracket(rows, min(max(row, rows[0]), rows[-1]))
        return (1 - w) * self.points[a, col] + w * self.points[b, col]

    def __call__(self, row: int, col: float) -> float:
        col = min(max(col, self.cols[0]), self.cols[-1])
        return sum(n * self._at(r, col) for r, n in _pieces(row, self.rows_max(col)))


@dataclass
class OperatorTables:
    """One GPU's measured operator tables (milliseconds), with the lookups a composed grid uses."""

    gpu: str          # batchlab's GPU catalogue name
    folder: Path

    @classmethod
    def bundled(cls, gpu: str) -> OperatorTables:
        """The shipped tables of catalogue GPU ``gpu`` (OperatorError naming those shipped otherwise)."""
        for aic, name in GPU_DIRS.items():
            if name == gpu:
                return _bundled(aic)
        raise OperatorError(f"no measured operator tables for GPU {gpu!r}; shipped: {', '.join(GPU_DIRS.values())}")

    def _rows(self, table: str) -> list[dict]:
        with open(self.folder / f"{table}.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    @cached_property
    def source(self) -> dict:
        """The tables' provenance (``source.csv``: key, value)."""
        return {r["key"]: r["value"] for r in self._rows("source")}

    # ------------------------------------------------------------------ matmul
    @cached_property
    def _gemm(self) -> dict:
        return {(int(r["m"]), int(r["n"]), int(r["k"])): float(r["latency_ms"]) for r in self._rows("gemm")}

    @cached_property
    def _gemm_knots(self) -> tuple[list, list, list]:
        return tuple(sorted({key[i] for key in self._gemm}) for i in range(3))

    def gemm_ms(self, m: int, n: int, k: int) -> float:
        """A bf16 matmul of ``m`` tokens from ``k`` to ``n`` features."""
        ms, ns, ks = self._gemm_knots
        return sum(cm * cn * ck * self._gemm_within(mm, nn, kk)
                   for mm, cm in _pieces(m, ms[-1]) for nn, cn in _pieces(n, ns[-1]) for kk, ck in _pieces(k, ks[-1]))

    def _gemm_within(self, m: int, n: int, k: int) -> float:
        axes = [_bracket(knots, min(max(x, knots[0]), knots[-1])) for knots, x in zip(self._gemm_knots, (m, n, k))]
        total = 0.0
        for corner in range(8):
            weight, key = 1.0, []
            for axis, (lo, hi, w) in enumerate(axes):
                upper = corner >> axis & 1
                weight *= w if upper else 1 - w
                key.append(hi if upper else lo)
            if weight:
                if tuple(key) not in self._gemm:
                    raise OperatorError(f"GPU {self.gpu}: no measured matmul m={key[0]} n={key[1]} k={key[2]} "
                                        f"(needed for m={m} n={n} k={k}); the shipped tables hold the catalogue "
                                        f"models' shapes only")
                total += weight * self._gemm[tuple(key)]
        return total

    # ------------------------------------------------------------------ attention
    def _attention(self, table: str, length: str, heads: int, kv_heads: int, head_dim: int) -> _Table2D:
        cache = self.__dict__.setdefault(f"_{table}", {})
        shape = (heads, kv_heads, head_dim)
        if shape not in cache:
            rows = [r for r in self._rows(table)
                    if (int(r["heads"]), int(r["kv_heads"]), int(r["head_dim"])) == shape]
            if not rows:
                raise OperatorError(f"GPU {self.gpu}: no measured {table.replace('_', ' ')} for {heads} heads, "
                                    f"{kv_heads} KV heads of {head_dim} (per GPU)")
            cache[shape] = _Table2D({(int(r["batch"]), int(r[length])): float(r["latency_ms"]) for r in rows})
        return cache[shape]

    def context_attention_ms(self, batch: int, isl: int, heads: int, kv_heads: int, head_dim: int) -> float:
        """Causal attention over ``batch`` prompts of ``isl`` tokens (heads per GPU)."""
        return self._attention("context_attention", "isl", heads, kv_heads, head_dim)(batch, isl)

    def context_attention_max_isl(self, heads: int, kv_heads: int, head_dim: int) -> int:
        """The longest prompt measured: beyond it a composed grid leaves prefill cells out."""
        return self._attention("context_attention", "isl", heads, kv_heads, head_dim).cols[-1]

    def generation_attention_ms(self, batch: int, context: int, heads: int, kv_heads: int, head_dim: int) -> float:
        """One decode token of each of ``batch`` sequences attending ``context`` cached tokens."""
        return self._attention("generation_attention", "context", heads, kv_heads, head_dim)(batch, context)

    def generation_attention_max_context(self, heads: int, kv_heads: int, head_dim: int) -> int:
        return self._attention("generation_attention", "context", heads, kv_heads, head_dim).cols[-1]

    # ------------------------------------------------------------------ all-reduce
    @cached_property
    def _allreduce(self) -> dict:
        out: dict = {}
        for r in self._rows("allreduce"):
            out.setdefault((int(r["num_gpus"]), r["backend"]), {})[int(r["elements"])] = float(r["latency_ms"])
        return out

    def allreduce_ms(self, num_gpus: int, elements: int, backend: str) -> float:
        """vLLM's custom all-reduce of ``elements`` bf16 values over ``num_gpus`` GPUs (0 for one GPU)."""
        if num_gpus == 1 or elements <= 0:
            return 0.0
        if (num_gpus, backend) not in self._allreduce:
            raise OperatorError(f"GPU {self.gpu}: no measured all-reduce over {num_gpus} GPUs ({backend})")
        points = self._allreduce[num_gpus, backend]
        sizes = sorted(points)

        def within(x: int) -> float:
            lo, hi, w = _bracket(sizes, min(max(x, sizes[0]), sizes[-1]))
            return (1 - w) * points[lo] + w * points[hi]

        return sum(count * within(size) for size, count in _pieces(elements, sizes[-1]))


@cache
def _bundled(aic_dir: str) -> OperatorTables:
    return OperatorTables(GPU_DIRS[aic_dir], TABLES_DIR / aic_dir)


# ---------------------------------------------------------------------- extraction (maintainers)
# The AIConfigurator tables each shipped folder is cut from: (framework version, attention kernels).
EXTRACT = {
    "a100_sxm": ("0.14.0", "vllm_flash_attn", "vllm_flash_attn"),
    "h100_sxm": ("0.24.0", "vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    "h200_sxm": ("0.24.0", "vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    "b200_sxm": ("0.24.0", "vllm_flashinfer_trtllmprefill", "vllm_flashinfer_trtllmdecode"),
    "l40s": ("0.24.0", "vllm_flash_attn_fa2", "vllm_flash_attn_fa2"),
}


def needed_shapes(archs, tps=(1, 2, 4, 8)) -> tuple[set, set]:
    """The matmul (n, k) pairs and attention head shapes of dense ``archs`` at each TP that divides their
    heads: what the shipped tables must cover."""
    from .compose import layer_shapes

    gemms, heads = set(), set()
    for arch in archs:
        for tp in tps:
            if arch.num_experts or arch.num_heads % tp or arch.num_kv_heads % tp:
                continue
            shapes = layer_shapes(arch, tp)
            gemms |= {(n, k) for n, k in shapes["gemms"].values()} | {shapes["lm_head"]}
            heads.add(shapes["heads"])
    return gemms, heads


def extract(checkout: Path, out_dir: Path, archs, commit: str) -> dict[str, int]:
    """Cut the shipped tables from an AIConfigurator checkout (``aic-core/.../systems/data``): bf16 matmuls
    around the catalogue's shapes, bf16-KV attention without sliding window for its head shapes, the
    custom all-reduce; ``commit`` is the checkout's, recorded in ``source.csv``. Needs pandas with pyarrow
    (parquet). Returns the rows written per GPU."""
    import pandas as pd

    data = Path(checkout) / "aic-core" / "src" / "aiconfigurator_core" / "systems" / "data"
    gemm_pairs, head_shapes = needed_shapes(archs)
    written = {}
    for aic, (version, ctx_kernel, gen_kernel) in EXTRACT.items():
        src, dest = data / aic, Path(out_dir) / aic
        dest.mkdir(parents=True, exist_ok=True)
        g = pd.read_parquet(src / "gemm" / "vllm" / version / "gemm_perf.parquet")
        g = g[g.gemm_dtype == "bfloat16"]
        gemm_kernel = ", ".join(sorted(map(str, g.kernel_source.unique())))
        ns, ks = sorted(g.n.unique()), sorted(g.k.unique())
        keep = set()
        for n, k in gemm_pairs:
            for nn, _ in _pieces(n, ns[-1]):
                for kk, _ in _pieces(k, ks[-1]):
                    lo_n, hi_n, _ = _bracket(ns, min(max(nn, ns[0]), ns[-1]))
                    lo_k, hi_k, _ = _bracket(ks, min(max(kk, ks[0]), ks[-1]))
                    keep |= {(a, b) for a in (lo_n, hi_n) for b in (lo_k, hi_k)}
        g = g[[(int(n), int(k)) in keep for n, k in zip(g.n, g.k)]]
        g = g.groupby(["m", "n", "k"], as_index=False).latency.median()
        tables = {"gemm": g.rename(columns={"latency": "latency_ms"})[["m", "n", "k", "latency_ms"]]}
        for table, kernel, length in (("context_attention", ctx_kernel, "isl"),
                                      ("generation_attention", gen_kernel, "step")):
            a = pd.read_parquet(src / "attention" / "vllm" / version / f"{table}_perf.parquet")
            a = a[(a.kernel_source == kernel) & (a.kv_cache_dtype == "bfloat16")]
            if "window_size" in a:
                a = a[a.window_size == 0]
            a = a[[(int(h), int(kv), int(d)) in head_shapes
                   for h, kv, d in zip(a.num_heads, a.num_key_value_heads, a.head_dim)]]
            a = a.rename(columns={"num_heads": "heads", "num_key_value_heads": "kv_heads", "batch_size": "batch",
                                  "latency": "latency_ms"})
            if length == "step":   # AIConfigurator's step s: the s + 1-th token attends s + 1 cached ones
                a = a.assign(context=a.step + 1)
            cols = ["heads", "kv_heads", "head_dim", "batch", "isl" if length == "isl" else "context"]
            tables[table] = a.groupby(cols, as_index=False).latency_ms.median()[cols + ["latency_ms"]]
        ar_file = src / "comm" / "vllm" / version / "custom_allreduce_perf.parquet"
        ar = pd.read_parquet(ar_file) if ar_file.exists() and ar_file.stat().st_size else None
        if ar is not None:
            ar = ar.assign(backend=ar.backend.str.replace("vllm_", "", regex=False))
            ar = ar.rename(columns={"message_size": "elements", "latency": "latency_ms"})
            tables["allreduce"] = ar.groupby(["num_gpus", "elements", "backend"], as_index=False).latency_ms.median()
        else:
            tables["allreduce"] = pd.DataFrame(columns=["num_gpus", "elements", "backend", "latency_ms"])
        device = str(pd.read_parquet(src / "gemm" / "vllm" / version / "gemm_perf.parquet").device.iloc[0])
        tables["source"] = pd.DataFrame({"key": ["device", "framework", "version", "gemm_kernel",
                                                 "context_attention_kernel", "generation_attention_kernel",
                                                 "commit"],
                                         "value": [device, "vllm", version, f"bfloat16 ({gemm_kernel})",
                                                   ctx_kernel, gen_kernel, commit]})
        for name, frame in tables.items():
            frame.to_csv(dest / f"{name}.csv", index=False, float_format="%.6g")
        written[GPU_DIRS[aic]] = sum(len(f) for f in tables.values())
    return written


__all__ = ["GPU_DIRS", "OperatorError", "OperatorTables", "TABLES_DIR", "extract", "needed_shapes"]
