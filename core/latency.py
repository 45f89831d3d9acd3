"""Latency models: how long a batch takes on one GPU (or one tensor-parallel replica:
:mod:`core.tensor_parallel`).

A batch of ``b`` requests is padded (static batching): every sequence holds the
batch's longest prompt ``P`` and decodes until the longest output ``O`` is done.
The prefill emits every sequence's first token, so a batch costs
``prefill_time(b, P) + decode_time(b, P, O - 1)``, and its decode steps see
per-sequence contexts ``P, P+1, ..., P+O-2``.

These implementations share this interface:

* :class:`ParametricLatency` (the default): prefill linear in ``b * P``; decode
  step ``t0 + t1*b + t2*b*c`` for per-sequence context ``c`` (so ``b*c`` is the
  batch's total context tokens). Paper 2 fits a decode step of about 30 ms +
  0.22 ms per sequence; the context term makes long-output batches slower.
* :class:`core.latency_grid.GridLatency`: interpolates a measured calibration grid.
* :class:`core.roofline.RooflineLatency`: a grid computed from the model's operators on the GPU's
  compute and bandwidth (no measurement).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass


class LatencyModel(ABC):
    """Time (seconds) of the phases of one padded batch on one GPU."""

    @abstractmethod
    def prefill_time(self, batch: int, prompt_len: int) -> float:
        """Whole-batch prefill of ``batch`` prompts padded to ``prompt_len`` tokens."""

    @abstractmethod
    def decode_step_time(self, batch: int, context_len: float) -> float:
        """One decode step of ``batch`` sequences, each attending ``context_len`` tokens."""

    def decode_time(self, batch: int, prompt_len: int, steps: int) -> float:
        """Sum of ``steps`` decode steps at contexts ``prompt_len .. prompt_len+steps-1``.

        Subclasses override this with a closed form; the loop is the definition.
        """
        step = self.decode_step_time
        return float(sum(step(batch, prompt_len + s) for s in range(steps)))

    def decode_step_times(self, batch, context_len):
        """:meth:`decode_step_time` over arrays of batch sizes and contexts (numpy in, numpy out)."""
        import numpy as np

        step = self.decode_step_time
        return np.fromiter((step(int(b), float(c)) for b, c in zip(batch, context_len)), dtype=np.float64,
                           count=len(batch))

    def steps_until(self, batch: int, context_len: float, max_steps: int, budget: float) -> int:
        """The fewest decode steps (at most ``max_steps``) from ``context_len`` on whose total time
        reaches ``budget`` seconds; ``max_steps`` if even all of them stay below it."""
        if budget <= 0:
            return 0
        if self.decode_time(batch, context_len, max_steps) < budget:
            return max_steps
        lo, hi = 0, max_steps                # decode_time(lo) < budget <= decode_time(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.decode_time(batch, context_len, mid) < budget:
                lo = mid
            else:
                hi = mid
        return hi

    @property
    @abstractmethod
    def identity(self) -> dict:
        """JSON-able description that changes whenever predictions would change."""

    def run_notes(self) -> dict:
        """Facts about the queries answered so far (e.g. grid extrapolation)."""
        return {}


@dataclass(frozen=True)
class ParametricLatency(LatencyModel):
    """Linear prefill and decode-step model (docs/semantics.md#latency-model).

    prefill(b, P)      = prefill_base + prefill_per_token * b * P
    decode_step(b, c)  = decode_base + decode_per_seq * b + decode_per_ctx_token * b * c
    """

    prefill_base: float = 0.020
    prefill_per_token: float = 5.0e-5
    decode_base: float = 0.030
    decode_per_seq: float = 2.2e-4
    decode_per_ctx_token: float = 1.0e-7

    def prefill_time(self, batch: int, prompt_len: int) -> float:
        return self.prefill_base + self.prefill_per_token * batch * prompt_len

    def decode_step_time(self, batch: int, context_len: float) -> float:
        return (self.decode_base + self.decode_per_seq * batch
                + self.decode_per_ctx_token * batch * context_len)

    def decode_time(self, batch: int, prompt_len: int, steps: int) -> float:
        # sum_{s<steps} (t0 + t1 b + t2 b (P + s)) in closed form
        per_step = self.decode_base + self.decode_per_seq * batch + self.decode_per_ctx_token * batch * prompt_len
        return steps * per_step + self.decode_per_ctx_token * batch * steps * (steps - 1) * 0.5

    def decode_step_times(self, batch, context_len):
        return self.decode_base + self.decode_per_seq * batch + self.decode_per_ctx_token * batch * context_len

    def steps_until(self, batch: int, context_len: float, max_steps: int, budget: float) -> int:
        # total(x) = x a + c x (x - 1) / 2 is increasing: solve the quadratic, then mend rounding
        if budget <= 0:
            return 0
        a = self.decode_base + self.decode_per_seq * batch + self.decode_per_ctx_token * batch * context_len
        c = self.decode_per_ctx_token * batch
        if c > 0:
            h = a - c / 2
            x = (-h + math.sqrt(h * h + 2 * c * budget)) / c
        else:
            x = budget / a
        x = min(max(int(math.ceil(x)), 0), max_steps)
        total = self.decode_time
        while x > 0 and total(batch, context_len, x - 1) >= budget:
            x -= 1
        while x < max_steps and total(batch, context_len, x) < budget:
            x += 1
        return x

    @property
    def identity(self) -> dict:
        return {
            "kind": "parametric",
            "prefill_base": self.prefill_base,
            "prefill_per_token": self.prefill_per_token,
            "decode_base": self.decode_base,
            "decode_per_seq": self.decode_per_seq,
            "decode_per_ctx_token": self.decode_per_ctx_token,
        }


def build_latency_model(config, grid=None) -> LatencyModel:
    """The config's latency model for one replica of ``config.tp`` GPUs; ``grid:NAME`` uses ``grid`` or
    a bundled calibration grid.

    The parametric coefficients are one GPU's; at tp > 1 they go through the tensor-parallel scaling
    model (:meth:`core.tensor_parallel.TensorParallel.parametric`). A grid is used at the TP it was
    measured at; another TP raises :class:`~core.config.ConfigError` unless ``config.scale_grid_tp``
    (:func:`core.tensor_parallel.grid_latency`). ``roofline`` estimates the times from ``config.model``'s
    operators on ``config.gpu`` (:mod:`core.roofline`).
    """
    if config.latency == "parametric":
        one_gpu = ParametricLatency(config.prefill_base, config.prefill_per_token, config.decode_base,
                                    config.decode_per_seq, config.decode_per_ctx_token)
        if config.tp == 1:
            return one_gpu
        from .tensor_parallel import TensorParallel

        return TensorParallel.from_config(config).parametric(one_gpu, config.tp)
    if config.latency == "roofline":   # the model's operators on the GPU's peaks, at the config's TP
        from .roofline import Roofline, RooflineLatency

        return RooflineLatency(Roofline.from_config(config))
    from batchlab.calibration.data import bundled_grids, load_bundled

    from .config import ConfigError
    from .tensor_parallel import grid_latency

    name = config.latency.split(":", 1)[1]
    if grid is None:
        if name not in bundled_grids():
            raise ConfigError("latency", f"no grid named {name!r} was given and none is bundled "
                                         f"(bundled: {', '.join(sorted(bundled_grids()))})")
        grid = load_bundled(name)
    return grid_latency(config, grid)
