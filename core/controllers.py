"""Batch-size controllers of Paper 2 (Pang et al. 2025), kept independent of any engine.

``MemoryBound`` is Algorithm 1 and ``SlaController`` is Algorithm 2. Both take
``n_decode`` (requests already decoding on the GPU) so the iteration-level engine
can share them; in the run-to-completion engine a free GPU has ``n_decode = 0``.
"""
from __future__ import annotations

import math
from statistics import NormalDist

# Algorithm 2 branch codes, recorded per batch in the controller trace.
BRANCH_OFF = -1      # no TBT deadline: the SLA controller is disabled (b_SLA = B_max)
BRANCH_START = 0     # no history yet: b_t = floor((B_min + B_max) / 2)
BRANCH_OVER = 1      # recent step time above D_SLA + eps_D: shrink
BRANCH_UNDER = 2     # recent step time below D_SLA - eps_D: grow
BRANCH_WITHIN = 3    # within the band: re-centre on the recent batch size
BRANCH_HOLD = -2     # continuous engine: a span that starts without a controller update
BRANCH_NAMES = {BRANCH_OFF: "off", BRANCH_START: "start", BRANCH_OVER: "over",
                BRANCH_UNDER: "under", BRANCH_WITHIN: "within", BRANCH_HOLD: "hold"}


class MemoryBound:
    """Algorithm 1: the largest batch whose expected KV footprint fits in eta tokens.

    margin="factor": b = floor((eta - L0) / (E[l_in] + E[l_out])) with L0 = eta (1 - memory_factor).
    margin="clt":    the largest b with b mu + theta sigma sqrt(b) <= eta, theta = Phi^-1(1 - eps_M)
                     (the paper's rigorous CLT bound; sigma^2 = Var[l_in] + Var[l_out]).
    margin="none":   b = floor(eta / (E[l_in] + E[l_out])): no safety buffer (for comparison).
    Then b = min(max(b, n_decode), B_max), and at least 1.
    """

    def __init__(self, eta: int, b_max: int, margin: str = "factor",
                 memory_factor: float = 0.95, eps_m: float = 0.05):
        self.eta = eta
        self.b_max = b_max
        self.margin = margin
        self.memory_factor = memory_factor
        self.theta = NormalDist().inv_cdf(1.0 - eps_m)

    def buffer(self, b: int, var_in: float = 0.0, var_out: float = 0.0) -> float:
        """The safety buffer L0 (tokens) this margin keeps free for a batch of ``b``."""
        if self.margin == "factor":
            return self.eta * (1.0 - self.memory_factor)
        if self.margin == "clt":
            return self.theta * math.sqrt(max(var_in + var_out, 0.0) * b)
        return 0.0

    def cap(self, mean_in: float, mean_out: float, var_in: float = 0.0, var_out: float = 0.0,
            n_decode: int = 0) -> int:
        mu = mean_in + mean_out
        if mu <= 0:
            b = self.b_max
        elif self.margin == "clt":
            ts = self.theta * math.sqrt(max(var_in + var_out, 0.0))
            x = (-ts + math.sqrt(ts * ts + 4.0 * mu * self.eta)) / (2.0 * mu)  # x = sqrt(b)
            b = int(x * x)

            def fits(c: int) -> bool:
                return c * mu + ts * math.sqrt(c) <= self.eta

            while fits(b + 1):  # mend floating-point rounding of x*x
                b += 1
            while b > 0 and not fits(b):
                b -= 1
        else:
            b = int((self.eta - self.buffer(0)) // mu)
        b = min(max(b, n_decode), self.b_max)
        return b if b >= 1 else 1


class SlaController:
    """Algorithm 2: keep the recent decode-step time near the TBT deadline D_SLA.

    State [b_low, b_high] starts at [B_min, B_max]. Each call of :meth:`cap` with
    history applies one update from the recent mean step time and mean batch size
    (the last ``window`` observations), then b_t = floor((b_low + b_high) / 2),
    b_t = min(max(b_t, n_decode), B_max), clamped to at least B_min.
    """

    def __init__(self, d_sla: float | None, eps: float, alpha: int, delta: int,
                 b_min: int, b_max: int, window: int):
        self.d_sla = d_sla
        self.eps = eps
        self.alpha = alpha
        self.delta = delta
        self.b_min = b_min
        self.b_max = b_max
        self.b_low: float = b_min
        self.b_high: float = b_max
        self._window = window
        self._steps: list[float] = []
        self._sizes: list[int] = []
        self._pos = 0
        self._sum_step = 0.0
        self._sum_size = 0

    def observe(self, step_time: float, batch_size: int) -> None:
        """Record an observation: a batch's (or a run of iterations') mean decode-step time and size,
        once it has happened (an engine never observes what has not ended yet)."""
        if len(self._steps) < self._window:
            self._steps.append(step_time)
            self._sizes.append(batch_size)
        else:
            i = self._pos
            self._sum_step -= self._steps[i]
            self._sum_size -= self._sizes[i]
            self._steps[i] = step_time
            self._sizes[i] = batch_size
            self._pos = (i + 1) % self._window
        self._sum_step += step_time
        self._sum_size += batch_size

    def cap(self, n_decode: int = 0) -> tuple[int, int]:
        """Return (b_SLA, branch code) after one update step."""
        if self.d_sla is None:
            return self.b_max, BRANCH_OFF
        n = len(self._steps)
        if n == 0:
            branch = BRANCH_START
        else:
            tau = self._sum_step / n
            b_bar = self._sum_size / n
            if tau > self.d_sla + self.eps:
                branch = BRANCH_OVER
                self.b_high = max(b_bar, self.b_low + self.alpha)
                self.b_low = max(self.b_low - self.delta, self.b_min)
            elif tau < self.d_sla - self.eps:
                branch = BRANCH_UNDER
                self.b_low = min(b_bar, self.b_high - self.alpha)
                self.b_high = min(self.b_high + self.delta, self.b_max)
            else:
                branch = BRANCH_WITHIN
                half = self.alpha // 2
                self.b_high = min(b_bar + half, self.b_max)
                self.b_low = max(b_bar - half, self.b_min)
        b = int(math.floor((self.b_low + self.b_high) / 2.0))
        b = min(max(b, n_decode), self.b_max)
        return (b if b >= self.b_min else self.b_min), branch
