"""The run-to-completion (batch-level) engine.

A batch starts on a free GPU, runs prefill plus decode steps until its longest
output is done, and all its requests finish together. The loop's cost grows
with the number of batches, not requests:

* FIFO within a queue makes every queue a contiguous slice of ``order``; a batch
  is usually the slice ``[head, head + size)``: only pointers move. Requests
  evicted by an out-of-memory event go back to the *front* of their queue (a
  short list consulted before the slice).
* Arrivals have no events: a global pointer into the arrival-sorted requests
  advances to the decision time and bumps per-queue ``arrived`` pointers.
* A heap of GPU free times drives the loop; an idle GPU stays in the heap with
  the time it went idle and is popped once per batch, never once per arrival.

No look-ahead. A decision at time ``t`` uses only what is known at ``t``: each
bin's SLA controller (Algorithm 2) observes a batch's mean decode-step time when
the batch *ends* (observations wait in a heap of end times and are delivered,
in end order, before the next decision at or after it), and requests evicted by
an out-of-memory event count in their queue's readiness, order and size only
from the moment they are back.

Decision rule. The earliest-free GPU (free at ``f``) takes the next batch. With
``fill="greedy"`` a queue is ready as soon as its head request has arrived; with
``fill="full"`` when it holds its target batch size, or when its head has waited
``max_wait``, or when the queue's last request of the trace has arrived (the end
of the trace flushes partial batches), or when evicted requests are back at its
front. The batch starts at ``t = max(f, ready time, previous decision time)``;
among the queues ready by ``t`` the bin policy picks one.

Tokens. A request with output ``o >= 1`` emits ``o`` tokens: the first at the end of
its batch's prefill, then one per decode step. So a batch with longest true output
``O`` runs prefill then ``O - 1`` decode steps (none when every member emits one
token), and all its requests finish together at its end (a request that emits one
token alone, at the end of the prefill).

Memory, without an oracle. A padded batch of ``b`` requests with longest prompt
``P`` holds ``b (P + s)`` KV tokens after ``s`` decode steps (decode step ``j``
writes token ``P + j``; the last sampled token never gets KV), so it needs
``b (P + O - 1)`` at its last step. Admission knows prompts and predictions only:
the batch is the longest FIFO prefix (up to the cap) whose *reservation*
``b (P + R - 1) + L0 <= eta``, where ``R`` is the longest predicted output
(raised, for a request evicted before, to the tokens it had already generated
plus one) or ``max_new_tokens``, and ``L0`` is Algorithm 1's safety buffer in the
dynamic modes (0 in the static ones). The true lengths then decide what happens:
if ``b (P + O - 1) > eta``, the batch runs out of memory at decode step
``s* = eta // b - P + 1`` (after ``s* - 1`` steps, each member has generated
``s*`` tokens); the requests already complete (output ``<= s*``) finish then,
every other one is evicted to the front of its queue (recompute: it starts again,
keeping its arrival time), and the evicted share of the batch's GPU time is
counted as wasted. Its reservation is then at least ``s* + 1`` tokens, so its next
batch runs out of memory, if at all, at a later step: a request with ``o`` output
tokens is evicted at most ``o - 1`` times (a one-token request never is).

Algorithm 2 observes a batch's mean decode-step time; a batch that ran no decode
step (every member emitted one token) has none and is not observed.
"""
from __future__ import annotations

import bisect
import heapq
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .controllers import BRANCH_OFF, MemoryBound, SlaController
from .latency import LatencyModel
from .queues import INF, QueueStats, pick_queue, queue_layout


@dataclass
class EngineOutput:
    """What an engine hands to metrics: per-request arrays, the engine's log, and counters.

    requests  per request (workload order): for the batch-level engine ``batch`` (the
              batch that completed it) and ``preemptions`` (evictions); the continuous
              engine gives the times themselves (see core.continuous_engine)
    log       one row per batch (batch-level) or per span of iterations (continuous)
    counters  oom_events, evicted_requests, preemptions, wasted_gpu_s
    """

    requests: dict[str, np.ndarray]
    log: dict[str, np.ndarray]
    counters: dict = field(default_factory=dict)


class _Reserve:
    """The admission check: the longest prefix whose padded KV reservation fits the budget."""

    def __init__(self, eta: int, mem: MemoryBound | None, max_new: int | None):
        self.eta = eta
        self.mem = mem          # Algorithm 1's margin in the dynamic modes, else no buffer
        self.max_new = max_new  # reserve this much output per sequence instead of predictions

    def fit(self, prompts: list, known: list, var: float) -> int:
        """Largest m >= 1 with m (max prompts[:m] + max reserved[:m] - 1) + L0(m) <= eta: the KV the
        batch holds at its last decode step if its longest output were the longest reserved one."""
        m = len(prompts)
        P = max(prompts)
        R = self.max_new if self.max_new is not None else max(known)
        if self._need(m, P + R - 1, var) <= self.eta:
            return m
        p = np.maximum.accumulate(np.asarray(prompts, dtype=np.int64))
        r = (np.full(m, self.max_new) if self.max_new is not None
             else np.maximum.accumulate(np.asarray(known, dtype=np.int64)))
        sizes = np.arange(1, m + 1)
        need = sizes * (p + r - 1) + self._buffers(sizes, var)
        bad = np.flatnonzero(need > self.eta)
        return max(int(bad[0]), 1)

    def _need(self, m: int, per_seq: int, var: float) -> float:
        return m * per_seq + (self.mem.buffer(m, var) if self.mem is not None else 0.0)

    def _buffers(self, sizes: np.ndarray, var: float):
        if self.mem is None:
            return 0.0
        if self.mem.margin == "clt":
            return self.mem.theta * np.sqrt(max(var, 0.0) * sizes)
        return self.mem.buffer(1, var)


def run_batch_engine(cfg: SimConfig, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                     predicted: np.ndarray, bins: np.ndarray, latency: LatencyModel, eta: int,
                     progress: Callable[[float], None] | None = None) -> EngineOutput:
    """Simulate the whole workload with run-to-completion batches; return the batch log."""
    n = len(arrival)
    k = cfg.bins
    order, off = queue_layout(bins, k)
    q_prompt_l = prompt[order].tolist()
    q_output_l = output[order].tolist()
    q_known = predicted[order].tolist()   # what admission reserves: prediction, raised after an eviction
    q_arr = arrival[order].tolist()
    arr_l = arrival.tolist()
    bins_l = bins.tolist()
    q_batch = np.full(n, -1, dtype=np.int64)  # completing batch of each queue position
    q_evictions = np.zeros(n, dtype=np.int64)

    head = off[:-1]                      # next unserved slice position of each queue
    end = off[1:]
    arrived = list(off[:-1])             # first not-yet-arrived position of each queue
    front: list[list[tuple[float, int]]] = [[] for _ in range(k)]  # (ready time, position) evicted
    n_front = 0
    g = 0                                # global arrival pointer
    taken = 0                            # requests taken from the queue slices (all queues)
    done = 0                             # completed requests

    dynamic = cfg.dynamic
    greedy = cfg.fill == "greedy"
    max_wait = cfg.max_wait if cfg.max_wait is not None else INF
    policy = cfg.bin_policy
    rr = 0
    mem = None
    if dynamic:
        stats = QueueStats(prompt[order], predicted[order], cfg.stats_window)
        if cfg.memory_control:
            mem = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps)
        d_sla = cfg.d_sla_tbt if cfg.sla_control else None   # no deadline to steer to: b_SLA = B_max
        observing = d_sla is not None
        sla = [SlaController(d_sla, cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta,
                             cfg.b_min, cfg.b_max, cfg.sla_window) for _ in range(k)]
        first_cap = min((cfg.b_min + cfg.b_max) // 2, cfg.b_max)
        target = [first_cap] * k         # fill=full: the batch size a queue waits for
    else:
        target = [cfg.batch_size] * k
        observing = False
    pending: list[tuple[float, int, int, float, int]] = []   # (end, batch, queue, step time, size) unobserved
    reserve = _Reserve(eta, mem, cfg.max_new_tokens if cfg.kv_reserve == "max_new_tokens" else None)

    heap = [(0.0, gpu) for gpu in range(cfg.n_replicas)]
    heappush, heappop = heapq.heappush, heapq.heappop
    clock = 0.0                          # time of the latest decision
    prefill_time = latency.prefill_time
    decode_time = latency.decode_time
    oom_events = evicted_total = 0
    wasted = 0.0

    L_start, L_pre, L_dec = array("d"), array("d"), array("d")
    (L_gpu, L_q, L_size, L_P, L_steps, L_bmem, L_bsla, L_cap, L_branch, L_evicted) = (
        array("q") for _ in range(10))
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

    def queue_ready(i: int) -> float:
        """When queue i can start a batch (INF when it holds nothing more). Evicted requests make it
        ready when they are back (before that they count for nothing: whether a batch runs out of
        memory is only known when it does)."""
        r = min(front[i])[0] if front[i] else INF   # the earliest back (front is in arrival order)
        h = head[i]
        if h < end[i]:
            if greedy:
                s = q_arr[h]
            else:
                last = h + target[i] - 1
                s = q_arr[last] if last < end[i] else q_arr[end[i] - 1]
                w = q_arr[h] + max_wait
                s = s if s < w else w
            r = r if r < s else s
        return r

    while done < n:
        f, gpu = heappop(heap)
        if f < clock:  # decisions happen in time order: this GPU idled until now
            f = clock

        # ---- when does the next batch start, and from which queue? ----------
        if n_front == 0 and greedy:   # the common case: plain FIFO slices
            advance(f)
            if g > taken:
                t = f
                single = False
            else:                     # nothing waits: the next arrival starts a batch
                t = arr_l[g]
                advance(t)
                single = g - taken == 1
            if k == 1:
                q = 0
            elif single:              # light load: the one request that just arrived is all there is
                q = bins_l[g - 1]
            else:
                cands = [i for i in range(k) if arrived[i] > head[i]]
                q = cands[0] if len(cands) == 1 else pick_queue(
                    policy, cands, [q_arr[h] if h < e else INF for h, e in zip(head, end)],
                    [a - h for a, h in zip(arrived, head)], rr, k)
        else:
            ready = [queue_ready(i) for i in range(k)]
            first = min(ready)
            t = f if f > first else first
            advance(t)
            if k == 1:
                q = 0
            else:
                cands = [i for i in range(k) if ready[i] <= t]
                if policy == "fcfs" and not greedy:
                    q = ready.index(first)  # Paper 1: the first formed batch is served first
                elif len(cands) == 1:
                    q = cands[0]
                else:
                    back = [[p for r, p in fr if r <= t] if fr else fr for fr in front]   # evicted and back by t
                    q = pick_queue(policy, cands, [min(q_arr[back[i][0]] if back[i] else INF,
                                                       q_arr[head[i]] if head[i] < end[i] else INF)
                                                   for i in range(k)],
                                   [arrived[i] - head[i] + len(back[i]) for i in range(k)], rr, k)
        rr = q + 1

        # ---- batch size: the cap, then the reservation check -----------------
        while pending and pending[0][0] <= t:   # Algorithm 2 sees the batches that have ended
            _, _, pq, step, sz = heappop(pending)
            sla[pq].observe(step, sz)
        if dynamic:
            mi, mo, vi, vo = stats.moments(off[q], arrived[q])
            b_mem = mem.cap(mi, mo, vi, vo) if mem is not None else cfg.b_max
            ctl = sla[q]
            b_sla, branch = ctl.cap()
            cap = b_mem if b_mem < b_sla else b_sla
            target[q] = cap
            var = vi + vo
        else:
            cap = target[q]
            b_mem = b_sla = cap
            branch = BRANCH_OFF
            var = 0.0
        h = head[q]
        evicted_here = n_front and front[q] and min(front[q])[0] <= t
        if not evicted_here:      # fast path: a slice of the queue
            size = arrived[q] - h
            if size > cap:
                size = cap
            if size == 1:
                members = None
                P = q_prompt_l[h]
                O = q_output_l[h]
            else:
                m = reserve.fit(q_prompt_l[h:h + size], q_known[h:h + size], var)
                size = m
                members = None
                P = max(q_prompt_l[h:h + m]) if m > 1 else q_prompt_l[h]
                O = max(q_output_l[h:h + m]) if m > 1 else q_output_l[h]
        else:                     # evicted requests first, then the slice
            ready_front = [pos for r, pos in front[q] if r <= t]
            room = cap - len(ready_front)
            tail = list(range(h, min(arrived[q], h + room))) if room > 0 else []
            members = (ready_front + tail)[:cap]
            m = reserve.fit([q_prompt_l[p] for p in members], [q_known[p] for p in members], var)
            members = members[:m]
            size = m
            P = max(q_prompt_l[p] for p in members)
            O = max(q_output_l[p] for p in members)

        # ---- run it: to completion, or to its out-of-memory step --------------
        full = O - 1 if O > 1 else 0      # decode steps after the prefill's token (a failed row emits none)
        steps = full
        evicted = 0
        if size * (P + full) > eta:
            steps = eta // size - P       # steps completed before the failing one
        pre = prefill_time(size, P)
        dec = decode_time(size, P, steps) if steps > 0 else 0.0
        finish = t + pre + dec
        heappush(heap, (finish, gpu))
        clock = t
        bid = len(L_start)
        if observing and steps > 0:       # a batch without a decode step has no step time to observe
            heappush(pending, (finish, bid, q, dec / steps, size))
        if members is None:
            if steps == full:
                q_batch[h:h + size] = bid
                done_here = size
            else:
                members = list(range(h, h + size))
            head[q] = h + size
            taken += size
        else:
            chosen = set(members)
            front[q] = [(r, p) for r, p in front[q] if p not in chosen]
            n_front -= sum(1 for p in members if p < h)
            from_slice = sum(1 for p in members if p >= h)
            head[q] = h + from_slice
            taken += from_slice
        if members is not None:
            done_here = 0
            back = []
            for p in members:
                if q_output_l[p] <= steps + 1:   # its first token came with the prefill
                    q_batch[p] = bid
                    done_here += 1
                else:
                    back.append(p)
                    q_evictions[p] += 1
                    if q_evictions[p] >= q_output_l[p]:   # each eviction comes at a later step than the last
                        raise RuntimeError(f"request {int(order[p])} evicted {int(q_evictions[p])} times with "
                                           f"{q_output_l[p]} output tokens: the engine is not making progress")
                    if steps + 2 > q_known[p]:   # it had generated steps + 1 tokens
                        q_known[p] = steps + 2
            if back:
                evicted = len(back)
                oom_events += 1
                evicted_total += evicted
                wasted += (pre + dec) * evicted / size
                front[q] = sorted(front[q] + [(finish, p) for p in back], key=lambda x: x[1])
                n_front += evicted
        done += done_here

        L_start.append(t)
        L_pre.append(pre)
        L_dec.append(dec)
        L_gpu.append(gpu)
        L_q.append(q)
        L_size.append(size)
        L_P.append(P)
        L_steps.append(steps)
        L_bmem.append(b_mem)
        L_bsla.append(b_sla)
        L_cap.append(cap)
        L_branch.append(branch)
        L_evicted.append(evicted)

        if progress is not None and done >= next_tick:
            progress(done / n)
            next_tick = done + tick

    if progress is not None:
        progress(1.0)
    i64, f64 = np.int64, np.float64
    log = {
        "start": np.frombuffer(L_start, f64).copy(),
        "prefill": np.frombuffer(L_pre, f64).copy(),
        "decode": np.frombuffer(L_dec, f64).copy(),
        "gpu": np.frombuffer(L_gpu, i64).copy(),
        "bin": np.frombuffer(L_q, i64).copy(),
        "size": np.frombuffer(L_size, i64).copy(),
        "max_prompt": np.frombuffer(L_P, i64).copy(),
        "steps": np.frombuffer(L_steps, i64).copy(),
        "b_mem": np.frombuffer(L_bmem, i64).copy(),
        "b_sla": np.frombuffer(L_bsla, i64).copy(),
        "b_cap": np.frombuffer(L_cap, i64).copy(),
        "branch": np.frombuffer(L_branch, i64).copy(),
        "evicted": np.frombuffer(L_evicted, i64).copy(),
    }
    batch = np.empty(n, dtype=np.int64)
    batch[order] = q_batch
    evictions = np.empty(n, dtype=np.int64)
    evictions[order] = q_evictions
    counters = {"oom_events": oom_events, "evicted_requests": evicted_total, "preemptions": 0,
                "wasted_gpu_s": wasted}
    return EngineOutput(requests={"batch": batch, "preemptions": evictions}, log=log, counters=counters)

