"""The run-to-completion (batch-level) engine.

A batch starts on a free GPU, runs prefill plus ``max output`` decode steps, and
all of its requests finish together. The loop's cost grows with the number of
batches, not requests:

* FIFO within a queue makes every queue a contiguous slice of ``order`` (request
  indices grouped by queue, arrival-sorted within a queue): a batch is the slice
  ``[head[q], head[q] + size)``; only pointers move.
* Arrivals have no events: a global pointer into the arrival-sorted requests
  advances to the decision time and bumps per-queue ``arrived`` pointers.
* A heap of GPU free times drives the loop; an idle GPU stays in the heap with
  the time it went idle and is popped once per batch, never once per arrival.

Decision rule. The earliest-free GPU (free at ``f``) takes the next batch. With
``fill="greedy"`` a queue is ready as soon as its head request has arrived; with
``fill="full"`` when it holds its target batch size, or when its head has waited
``max_wait``, or when the queue's last request of the trace has arrived (the end
of the trace flushes partial batches). The batch starts at
``t = max(f, ready time, previous decision time)`` (decisions are made in time
order); among the queues ready by ``t`` the bin policy picks one.
"""
from __future__ import annotations

import bisect
from array import array
import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import SimConfig
from .controllers import BRANCH_OFF, MemoryBound, SlaController
from .latency import LatencyModel

INF = float("inf")


@dataclass
class EngineOutput:
    """Raw per-batch log plus the queue layout needed to map batches to requests."""

    order: np.ndarray          # request index at each queue-ordered position
    batches: dict[str, np.ndarray]


class _QueueStats:
    """Windowed mean/variance of prompt and predicted output lengths of arrived requests.

    Prefix sums over the queue-ordered arrays make every query O(1).
    """

    def __init__(self, prompt: np.ndarray, predicted: np.ndarray, window: int):
        def prefix(x: np.ndarray) -> np.ndarray:
            out = np.zeros(len(x) + 1)
            np.cumsum(x, out=out[1:])
            return out

        p = prompt.astype(np.float64)
        o = predicted.astype(np.float64)
        self.sp, self.sp2 = prefix(p), prefix(p * p)
        self.so, self.so2 = prefix(o), prefix(o * o)
        self.window = window

    def moments(self, lo: int, hi: int) -> tuple[float, float, float, float]:
        """(mean_in, mean_out, var_in, var_out) over queue positions [lo, hi)."""
        if self.window and hi - lo > self.window:
            lo = hi - self.window
        n = hi - lo
        mi = (self.sp[hi] - self.sp[lo]) / n
        mo = (self.so[hi] - self.so[lo]) / n
        vi = (self.sp2[hi] - self.sp2[lo]) / n - mi * mi
        vo = (self.so2[hi] - self.so2[lo]) / n - mo * mo
        return float(mi), float(mo), float(vi), float(vo)


def run_engine(cfg: SimConfig, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
               predicted: np.ndarray, bins: np.ndarray, latency: LatencyModel, eta: int,
               progress: Callable[[float], None] | None = None) -> EngineOutput:
    """Simulate the whole workload; return the per-batch log."""
    n = len(arrival)
    k = cfg.bins
    order = np.argsort(bins, kind="stable")  # grouped by queue, arrival order kept
    counts = np.bincount(bins, minlength=k)
    off = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    q_prompt = prompt[order]
    q_output = output[order]
    q_arr = arrival[order].tolist()
    q_prompt_l = q_prompt.tolist()
    q_output_l = q_output.tolist()
    arr_l = arrival.tolist()
    bins_l = bins.tolist()

    head = off[:-1].tolist()             # next unserved position of each queue
    end = off[1:].tolist()
    arrived = off[:-1].tolist()          # first not-yet-arrived position of each queue
    g = 0                                # global arrival pointer
    served = 0

    dynamic = cfg.dynamic
    greedy = cfg.fill == "greedy"
    max_wait = cfg.max_wait if cfg.max_wait is not None else INF
    policy = cfg.bin_policy
    rr = 0
    if dynamic:
        stats = _QueueStats(q_prompt, predicted[order], cfg.stats_window)
        mem = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps)
        sla = [SlaController(cfg.d_sla_tbt, cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta,
                             cfg.b_min, cfg.b_max, cfg.sla_window) for _ in range(k)]
        first_cap = min((cfg.b_min + cfg.b_max) // 2, cfg.b_max)
        target = [first_cap] * k         # fill=full: the batch size a queue waits for
    else:
        target = [cfg.batch_size] * k

    heap = [(0.0, gpu) for gpu in range(cfg.gpus)]
    clock = 0.0                          # time of the latest decision
    prefill_time = latency.prefill_time
    decode_time = latency.decode_time

    # per-batch log (typed arrays: appends are cheaper than numpy stores, 8 bytes an entry)
    L_start, L_pre, L_dec = array("d"), array("d"), array("d")
    L_gpu, L_q, L_pos, L_size, L_P, L_O, L_bmem, L_bsla, L_cap, L_branch, L_trunc = (
        array("q") for _ in range(11))
    tick = max(n // 200, 1)
    next_tick = tick

    def advance(t: float) -> None:
        nonlocal g
        if g >= n or arr_l[g] > t:
            return
        new_g = bisect.bisect_right(arr_l, t, g)
        if new_g - g > 32:
            add = np.bincount(bins[g:new_g], minlength=k)
            for q in np.flatnonzero(add).tolist():
                arrived[q] += int(add[q])
        else:
            for i in range(g, new_g):
                arrived[bins_l[i]] += 1
        g = new_g

    while served < n:
        f, gpu = heapq.heappop(heap)

        # ---- when does the next batch start, and from which queue? ----------
        if f < clock:  # decisions happen in time order: this GPU idled until now
            f = clock
        if greedy:
            advance(f)
            if g - served > 0:
                t = f
                q = 0 if k == 1 else _pick_ready(policy, k, head, arrived, q_arr, rr)
            else:
                t = arr_l[g]
                advance(t)
                # light load: usually the one request that just arrived is all there is
                q = bins_l[g - 1] if g - served == 1 else (
                    0 if k == 1 else _pick_ready(policy, k, head, arrived, q_arr, rr))
            rr = q + 1
        else:
            ready = [INF] * k
            for i in range(k):
                h = head[i]
                if h >= end[i]:
                    continue
                last = h + target[i] - 1
                r = q_arr[last] if last < end[i] else q_arr[end[i] - 1]
                w = q_arr[h] + max_wait
                ready[i] = r if r < w else w
            first = min(ready)
            t = f if f > first else first
            advance(t)
            if k == 1:
                q = 0
            elif policy == "fcfs":
                q = ready.index(first)
            else:
                q = _pick_ready(policy, k, head, arrived, q_arr, rr, ready, t)
                rr = q + 1

        # ---- batch size -----------------------------------------------------
        h = head[q]
        avail = arrived[q] - h
        if dynamic:
            mi, mo, vi, vo = stats.moments(off[q], arrived[q])
            b_mem = mem.cap(mi, mo, vi, vo)
            ctl = sla[q]
            b_sla, branch = ctl.cap()
            cap = b_mem if b_mem < b_sla else b_sla
            target[q] = cap
        else:
            cap = target[q]
            b_mem = b_sla = cap
            branch = BRANCH_OFF
        size = cap if cap < avail else avail

        # ---- padded KV footprint must fit (the server's out-of-memory guard) -
        if size == 1:
            P = q_prompt_l[h]
            O = q_output_l[h]
            trunc = 0
        else:
            if size <= 256:
                P = max(q_prompt_l[h:h + size])
                O = max(q_output_l[h:h + size])
            else:
                P = int(q_prompt[h:h + size].max())
                O = int(q_output[h:h + size].max())
            trunc = 0
            if size * (P + O) > eta:
                fit = _largest_fitting_prefix(q_prompt[h:h + size], q_output[h:h + size], eta)
                trunc = size - fit
                size = fit
                P = int(q_prompt[h:h + size].max())
                O = int(q_output[h:h + size].max())

        pre = prefill_time(size, P)
        dec = decode_time(size, P, O) if O > 0 else 0.0
        heapq.heappush(heap, (t + pre + dec, gpu))
        clock = t
        if dynamic:
            ctl.observe(dec / O if O > 0 else 0.0, size)

        L_start.append(t); L_pre.append(pre); L_dec.append(dec); L_gpu.append(gpu)
        L_q.append(q); L_pos.append(h); L_size.append(size); L_P.append(P); L_O.append(O)
        L_bmem.append(b_mem); L_bsla.append(b_sla); L_cap.append(cap); L_branch.append(branch)
        L_trunc.append(trunc)

        head[q] = h + size
        served += size
        if progress is not None and served >= next_tick:
            progress(served / n)
            next_tick = served + tick

    if progress is not None:
        progress(1.0)
    i64, f64 = np.int64, np.float64
    batches = {
        "start": np.frombuffer(L_start, f64).copy(),
        "prefill": np.frombuffer(L_pre, f64).copy(),
        "decode": np.frombuffer(L_dec, f64).copy(),
        "gpu": np.frombuffer(L_gpu, i64).copy(),
        "bin": np.frombuffer(L_q, i64).copy(),
        "pos": np.frombuffer(L_pos, i64).copy(),
        "size": np.frombuffer(L_size, i64).copy(),
        "max_prompt": np.frombuffer(L_P, i64).copy(),
        "max_output": np.frombuffer(L_O, i64).copy(),
        "b_mem": np.frombuffer(L_bmem, i64).copy(),
        "b_sla": np.frombuffer(L_bsla, i64).copy(),
        "b_cap": np.frombuffer(L_cap, i64).copy(),
        "branch": np.frombuffer(L_branch, i64).copy(),
        "mem_truncated": np.frombuffer(L_trunc, i64).copy(),
    }
    return EngineOutput(order=order, batches=batches)


def _pick_ready(policy: str, k: int, head: list, arrived: list, q_arr: list, rr: int,
                ready: list | None = None, t: float = 0.0) -> int:
    """Choose among queues with work by the bin policy.

    A queue qualifies when it has an arrived request (greedy) or is ready by ``t`` (full).
    """
    def ok(i: int) -> bool:
        if ready is not None:
            return ready[i] <= t
        return arrived[i] > head[i]

    if policy == "fcfs":
        best, best_t = -1, INF
        for i in range(k):
            if ok(i) and q_arr[head[i]] < best_t:
                best, best_t = i, q_arr[head[i]]
        return best
    if policy == "longest":
        best, best_n = -1, -1
        for i in range(k):
            if ok(i) and arrived[i] - head[i] > best_n:
                best, best_n = i, arrived[i] - head[i]
        return best
    if policy == "round_robin":
        for j in range(k):
            i = (rr + j) % k
            if ok(i):
                return i
        return -1
    for i in range(k):  # short_first
        if ok(i):
            return i
    return -1


def _largest_fitting_prefix(prompt: np.ndarray, output: np.ndarray, eta: int) -> int:
    """Largest m with m * (max prompt[:m] + max output[:m]) <= eta, at least 1.

    The padded footprint is non-decreasing in m, so the first prefix that does
    not fit bounds the answer.
    """
    need = np.arange(1, len(prompt) + 1) * (np.maximum.accumulate(prompt) + np.maximum.accumulate(output))
    bad = np.flatnonzero(need > eta)
    return max(int(bad[0]), 1) if len(bad) else len(prompt)
