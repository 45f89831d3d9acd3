"""Tensor parallelism: the iteration time of a replica of ``tp`` GPUs (docs/cluster.md#tensor-parallelism).

A latency model given at one TP (the parametric model: at TP 1, one GPU; a grid: at
the TP it records) is carried to TP ``T`` by the *scaling model*:

    time_T(n) = time_1(n) / T + comm_T(n)

* ``time_1``: the phase's time on one GPU. Tensor parallelism splits every weight
  matrix and the KV heads ``T`` ways, so compute and memory traffic, and with them
  every term of the time, divide by ``T``.
* ``n``: the tokens the iteration computes: ``b x P`` for a prefill of ``b`` prompts
  of ``P`` tokens, ``b`` for a decode step of ``b`` sequences (one token each).
* ``comm_T(n) = A x (ALLREDUCE_LATENCY_S + 2 (T - 1) / T x n x H x 2 / (G x 1e9))``
  for ``T > 1``, and 0 at ``T = 1``: ``A = 2 x layers`` all-reduces an iteration
  (attention output and MLP output of every layer), each over ``n x H`` bf16
  activations (``H``: hidden_size, 2 bytes each); a ring all-reduce sends and
  receives ``2 (T - 1) / T`` x its bytes on every GPU's link of ``G`` GB/s
  (``interconnect_gbps``); plus :data:`ALLREDUCE_LATENCY_S` per all-reduce.

``comm_T`` is linear in ``n``: ``comm_T(n) = F_T + k_T n`` with
``F_T = 2 L x ALLREDUCE_LATENCY_S`` and ``k_T = 2 L x 2 (T - 1) / T x H x 2 / (G x 1e9)``
(``L``: layers), both 0 at ``T = 1``. So the parametric model stays parametric
(:meth:`TensorParallel.parametric`)::

    prefill_base'         = prefill_base / T + F_T
    prefill_per_token'    = prefill_per_token / T + k_T
    decode_base'          = decode_base / T + F_T
    decode_per_seq'       = decode_per_seq / T + k_T
    decode_per_ctx_token' = decode_per_ctx_token / T

A grid measured at TP ``g`` goes to TP ``t`` cell by cell (:meth:`TensorParallel.rescale`):
its compute is ``(time_g - comm_g(n)) x g`` on one GPU, so

    time_t = (time_g - comm_g(n)) x g / t + comm_t(n)

(``time_g / t + comm_t(n)`` from a grid of TP 1). A cell faster than ``comm_g`` cannot
have been measured with these settings, and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batchlab.calibration.schema import TIME_COLUMNS, TP_KEY, Grid, GridError, grid_from_table

from .latency import ParametricLatency
from .latency_grid import GridLatency

BYTES_PER_ACTIVATION = 2   # bf16 activations
ALLREDUCES_PER_LAYER = 2   # attention output and MLP output (Megatron-LM's split of a transformer layer)
# Fixed cost of one all-reduce, whatever its size: NCCL's own cost model (src/graph/tuning.cc) prices a
# ring all-reduce inside one node at a base latency of a few us plus 0.5-1 us per ring step (2 (T-1)
# steps; NVLink or PCIe), about 5-15 us for 2 to 8 GPUs. Without it a decode step's all-reduces of a few
# KB would cost nearly nothing and small-batch decode would speed up T-fold.
ALLREDUCE_LATENCY_S = 10e-6
MODEL = "tp-ring-v1"   # the scaling model's name in identities; change it when the formulas change


@dataclass(frozen=True)
class TensorParallel:
    """The scaling model's settings: model ``layers``, ``hidden_size`` and the link's ``interconnect_gbps``."""

    layers: int
    hidden_size: int
    interconnect_gbps: float

    @classmethod
    def from_config(cls, cfg) -> TensorParallel:
        return cls(cfg.kv_layers, cfg.hidden_size, cfg.interconnect_gbps)

    def comm_fixed(self, tp: int) -> float:
        """F_T: the all-reduces' fixed latency in one iteration (seconds)."""
        return 0.0 if tp == 1 else ALLREDUCES_PER_LAYER * self.layers * ALLREDUCE_LATENCY_S

    def comm_per_token(self, tp: int) -> float:
        """k_T: the all-reduces' transfer time per token of an iteration (seconds)."""
        if tp == 1:
            return 0.0
        ring = 2.0 * (tp - 1) / tp * self.hidden_size * BYTES_PER_ACTIVATION
        return ALLREDUCES_PER_LAYER * self.layers * ring / (self.interconnect_gbps * 1e9)

    def comm_time(self, tp: int, tokens):
        """comm_T(n) = F_T + k_T n: all-reduce time of an iteration over ``tokens`` tokens (numpy arrays too)."""
        return self.comm_fixed(tp) + self.comm_per_token(tp) * tokens

    def rescale(self, seconds, tokens, from_tp: int, to_tp: int):
        """A time at TP ``from_tp`` of an iteration over ``tokens`` tokens, at TP ``to_tp``."""
        return (seconds - self.comm_time(from_tp, tokens)) * (from_tp / to_tp) + self.comm_time(to_tp, tokens)

    def parametric(self, one_gpu: ParametricLatency, tp: int) -> ParametricLatency:
        """``one_gpu`` (coefficients of one GPU) at TP ``tp``; ``one_gpu`` itself at tp 1."""
        if tp == 1:
            return one_gpu
        f, k = self.comm_fixed(tp), self.comm_per_token(tp)
        return TPParametricLatency(
            one_gpu.prefill_base / tp + f, one_gpu.prefill_per_token / tp + k, one_gpu.decode_base / tp + f,
            one_gpu.decode_per_seq / tp + k, one_gpu.decode_per_ctx_token / tp, model=self, tp=tp)

    def scale_grid(self, grid: Grid, to_tp: int) -> Grid:
        """``grid``'s cells carried from its TP to ``to_tp`` (a new, validated grid; its metadata
        says so). Raises :class:`ValueError` if a cell is faster than its TP's all-reduces."""
        t = grid.table.copy()
        b = t["batch_size"].to_numpy(dtype=np.float64)
        tokens = {"prefill_s": b * t["context_len"].to_numpy(dtype=np.float64), "decode_step_s": b}
        for col in TIME_COLUMNS:
            v = t[col].to_numpy(dtype=np.float64)
            short = np.flatnonzero(v <= self.comm_time(grid.tp, tokens[col]))   # NaN (unmeasured) is never short
            if short.size:
                i = short[0]
                raise ValueError(
                    f"grid {grid.name!r} measured {col} = {v[i]:.4g} s at batch_size {int(b[i])}, context_len "
                    f"{int(t['context_len'].iloc[i])}, less than the {self.comm_time(grid.tp, tokens[col][i]):.4g} s "
                    f"its tp {grid.tp} all-reduces take at interconnect_gbps {self.interconnect_gbps:g} (with "
                    f"{self.layers} layers, hidden_size {self.hidden_size}): these settings do not describe the "
                    "machine that measured it")
            t[col] = self.rescale(v, tokens[col], grid.tp, to_tp)
        meta = {**grid.meta, TP_KEY: str(to_tp), "scaled_from_tp": str(grid.tp),
                "scaled_from_sha256": grid.sha256,
                "scaled_by": (f"batchlab {MODEL}: layers {self.layers}, hidden_size {self.hidden_size}, "
                              f"interconnect_gbps {self.interconnect_gbps:g}, all-reduce latency "
                              f"{ALLREDUCE_LATENCY_S:g} s")}
        try:
            return grid_from_table(t, meta, grid.name)
        except GridError as e:
            raise ValueError(f"grid {grid.name!r} scaled from tp {grid.tp} to tp {to_tp}: {e}") from None

    def describe(self, from_tp: int, to_tp: int) -> dict:
        """The scaling, for identities and run notes."""
        return {"model": MODEL, "from_tp": from_tp, "to_tp": to_tp, "layers": self.layers,
                "hidden_size": self.hidden_size, "interconnect_gbps": self.interconnect_gbps,
                "allreduce_latency_s": ALLREDUCE_LATENCY_S}


@dataclass(frozen=True)
class TPParametricLatency(ParametricLatency):
    """The parametric model at TP ``tp`` > 1: coefficients from :meth:`TensorParallel.parametric` of
    ``model``; the scaling (:meth:`TensorParallel.describe`) is in its identity and run notes."""

    model: TensorParallel | None = None
    tp: int = 1

    @property
    def scaling(self) -> dict:
        return self.model.describe(1, self.tp)

    @property
    def identity(self) -> dict:
        return {**super().identity, "tp_scaling": self.scaling}

    def run_notes(self) -> dict:
        return {"tp_scaling": self.scaling}


class ScaledGridLatency(GridLatency):
    """A grid measured at another TP, carried to this run's TP by :meth:`TensorParallel.scale_grid`;
    ``measured`` is the grid as given, ``grid`` the scaled one that answers the queries."""

    def __init__(self, grid: Grid, model: TensorParallel, tp: int):
        self.measured = grid
        self.scaling = model.describe(grid.tp, tp)
        super().__init__(model.scale_grid(grid, tp))

    @property
    def identity(self) -> dict:
        return {**super().identity, "sha256": self.measured.sha256, "tp_scaling": self.scaling}

    def run_notes(self) -> dict:
        return {**super().run_notes(), "grid_sha256": self.measured.sha256,
                "scaled_grid_sha256": self.grid.sha256, "tp_scaling": self.scaling}


def grid_latency(config, grid: Grid) -> GridLatency:
    """``grid``'s latency model for ``config``'s TP: as measured at the grid's own TP, scaled when
    ``config.scale_grid_tp``, else :class:`~core.config.ConfigError` (field ``tp``)."""
    from .config import ConfigError

    if grid.tp == config.tp:
        return GridLatency(grid)
    if not config.scale_grid_tp:
        raise ConfigError("tp", f"grid {grid.name!r} was measured at tp {grid.tp}, this run has tp {config.tp}: "
                                f"use a grid measured at tp {config.tp}, or set scale_grid_tp to carry its times "
                                f"from tp {grid.tp} to tp {config.tp} with the tensor-parallel scaling model")
    try:
        return ScaledGridLatency(grid, TensorParallel.from_config(config), config.tp)
    except ValueError as e:
        raise ConfigError("interconnect_gbps", str(e)) from None


__all__ = ["ALLREDUCES_PER_LAYER", "ALLREDUCE_LATENCY_S", "BYTES_PER_ACTIVATION", "MODEL", "ScaledGridLatency",
           "TPParametricLatency", "TensorParallel", "grid_latency"]
