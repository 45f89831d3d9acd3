"""The iteration-level (continuous batching) engine, as vLLM and SGLang schedule.

Each GPU runs iterations. An iteration *prefills* the requests admitted at its
start (their whole prompt, or with ``chunk_size`` at most that many prompt tokens
per iteration, oldest first) and *decodes* one token for every running request
whose prefill is done. A request with output length ``o`` needs its prefill (whose
end is its first token) and then ``o`` decode iterations, as in the batch-level
engine; it leaves on its own last token, freeing its KV blocks.

Iteration time (how prefill and decode compose). With ``a`` sequences receiving
``x`` prompt tokens in all, and ``n`` decoding sequences holding ``C`` context
tokens in all, an iteration takes

    prefill_time(a, x / a) + decode_step_time(n, C / n)

(either term absent when there is nothing of that kind): the latency model's
whole-batch prefill of ``a`` sequences of the mean admitted length, plus one
decode step at the running batch size and mean context. The parametric model is
linear in tokens, so this is exactly its prefill of ``x`` tokens and its decode
step over ``C`` context tokens; a calibration grid is read at the row of ``a``
(prefill) and ``n`` (decode) sequences, at the mean length (interpolated, and
extrapolation counted, as for any query).

KV memory is paged: ``eta`` tokens make ``K = eta // block_size`` blocks. A
request holds ``ceil(tokens / block_size)`` blocks, allocated for its prompt (plus,
after a preemption, the tokens it had generated) when it is admitted and one
block more each time a decode step crosses a block boundary. Admission (between
iterations, oldest first, at most the cap of running requests, within the chunk
budget) needs those blocks plus the watermark ``kv_watermark * K`` free after this
iteration's decode growth; an iteration that preempted admits nobody (as vLLM). When the growth finds no free block, the newest running request is
preempted: its blocks are freed and it goes back to the front of its queue, to be
prefilled again later over its prompt and the tokens it had generated (recompute,
as vLLM does); its share of the GPU time spent on it so far is counted as wasted.

Caps. ``continuous_static``: ``batch_size`` running requests. The dynamic modes:
``min(b_mem, b_SLA)``. The controllers of a GPU update at a boundary where a
request is waiting, once at least ``sla_window`` iterations have passed since
their last update (at once the first time): Algorithm 1 recomputes its bound
``b`` for each queue from the statistics of the queue's recent arrivals (prompts
and predictions), and Algorithm 2 (one controller per GPU) updates ``b_SLA`` from
the mean duration and mean decoding batch size of the iterations that decoded:
an iteration is one step of every running request, so its duration, prefill
work included, is the gap between tokens those requests see.
Every admission then uses ``b_mem = min(max(b, N_decode), B_max)`` with
``N_decode`` = the requests running at that moment. ``continuous_multi_bin`` admits from K queues on predicted output
length by the bin policy, each queue with its own ``b_mem``.

Several GPUs share the queues. An idle GPU starts an iteration as soon as a
request arrives; busy GPUs admit at their iteration boundaries, so a waiting
request goes to the busy GPU with room whose next boundary comes first. Events are
ordered on a 1 ns clock (times closer than that are simultaneous, whatever the
rounding of the sums that gave them): simultaneous boundaries are taken in GPU
order, and an arrival at a boundary's instant is there for it.

Speed. Between two events of a GPU (a completion, a preemption, an admission, a
controller update) its batch is fixed, so the iterations in between are one
*span*: their times are one closed-form sum of decode steps (context grows by
one token per sequence per iteration), their block growth a count over block
phases, and the next completion the top of a heap. Nothing is stepped token by
token. The engine's log has one row per span.
"""
from __future__ import annotations

import bisect
import heapq
import math
from array import array
from typing import Callable

import numpy as np

from .batch_engine import EngineOutput
from .config import SimConfig
from .controllers import BRANCH_HOLD, BRANCH_OFF, MemoryBound, SlaController
from .latency import LatencyModel
from .queues import INF, QueueStats, queue_layout

WAITING, RUNNING, DONE = 0, 1, 2
LOG_COLUMNS = ("start", "duration", "kv_blocks", "gpu", "size", "iterations", "kv_tokens", "b_mem", "b_sla", "b_cap",
               "branch", "preempted")
LOG_FLOATS = ("start", "duration")
TICKS = 1e9  # events are ordered on a 1 ns clock: times closer than that are simultaneous


def _tick(t: float) -> int:
    """The clock tick of time ``t`` >= 0 (closed-form sums and step-by-step sums of the same
    iterations differ in their last bits; on ticks they are the same instant)."""
    return int(t * TICKS + 0.5)


class _Gpu:
    """One GPU's state between events, and the span it is running."""

    __slots__ = ("idx", "t", "T", "n", "ctx", "H", "U", "comp", "stack", "pref", "ver", "ctl", "b_sla", "bmem",
                 "bbase", "blocked_head",
                 "since_it", "since_dec", "since_step", "since_n", "mono_i", "mono_d", "share", "await_gap",
                 "busy", "kv_int", "n_int",
                 # the running span [span_T, span_E): its first iteration, then pure decode iterations
                 "span_T", "span_E", "span_t", "d_first", "d_dec0", "n0", "n2", "c2", "U1", "served0",
                 "span_cap", "span_branch", "span_pre", "span_since", "span_dec")

    def __init__(self, idx: int, block: int, ctl: SlaController | None, b_sla: int, k: int, window: int):
        self.idx = idx
        self.t = 0.0            # time of the last boundary
        self.T = 0              # index of the next iteration
        self.n = 0              # decoding requests
        self.ctx = 0            # their tokens (context) in all
        self.H = [0] * block    # decoding requests by the iteration phase at which they need a new block
        self.U = 0              # KV blocks in use
        self.comp: list = []    # heap of (last iteration, version, position) of decoding requests
        self.stack: list = []   # running positions in admission order (newest last; pruned lazily)
        self.pref: list = []    # [position, prompt tokens still to prefill] (chunked prefill)
        self.ver = 0
        self.ctl = ctl
        self.b_sla = b_sla
        self.bmem = b_sla       # the b_mem of this GPU's latest admission decision
        self.bbase = [b_sla] * k  # Algorithm 1's bound per queue at the latest update
        self.blocked_head = None  # the waiting request memory kept out at the last boundary (one queue)
        self.since_it = window  # iterations since the controllers' last update (due at once); those that decoded,
        self.since_dec = 0      # their decode-step time and their decoding batch sizes
        self.since_step = 0.0
        self.since_n = 0
        self.mono_i: list = []  # a suffix-maximum stack of iteration durations: indices ...
        self.mono_d: list = []  # ... and durations (strictly decreasing)
        self.share = 0.0        # sum over iterations of duration / requests served in it
        self.await_gap: list = []  # (position, iteration, time) of re-admitted requests' first gap
        self.busy = 0.0
        self.kv_int = 0.0       # integral over time of blocks in use
        self.n_int = 0          # sum over iterations of running requests

    def max_since(self, it: int) -> float:
        """The longest iteration from index ``it`` on (0 if none)."""
        j = bisect.bisect_left(self.mono_i, it)
        return self.mono_d[j] if j < len(self.mono_d) else 0.0


def run_continuous_engine(cfg: SimConfig, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                          predicted: np.ndarray, bins: np.ndarray, latency: LatencyModel, eta: int,
                          progress: Callable[[float], None] | None = None) -> EngineOutput:
    """Simulate the whole workload with continuous batching; return per-request times and the span log."""
    return _Engine(cfg, arrival, prompt, output, predicted, bins, latency, eta, progress).run()


class _Engine:
    def __init__(self, cfg, arrival, prompt, output, predicted, bins, latency, eta, progress):
        n = self.n_req = len(arrival)
        k = self.k = cfg.bins
        self.order, off = queue_layout(bins, k)
        order = self.order
        self.off = off
        self.q_prompt = prompt[order].tolist()
        self.q_output = output[order].tolist()
        self.q_arr = arrival[order].tolist()
        self.arr_l = arrival.tolist()
        self.arr_k = (np.asarray(arrival, dtype=np.float64) * TICKS + 0.5).astype(np.int64).tolist()  # _tick
        self.bins_l = bins.tolist()
        self.bins = bins
        self.q_bin = bins[order].tolist()
        self.head = off[:-1]
        self.end = off[1:]
        self.arrived = list(off[:-1])
        self.front: list[list[int]] = [[] for _ in range(k)]
        self.waiting = 0
        self.g = 0
        self.done = 0
        self.B = cfg.block_size
        self.K = eta // cfg.block_size
        self.watermark = int(math.ceil(cfg.kv_watermark * self.K))
        self.chunk = cfg.chunk_size if cfg.chunk_size is not None else INF
        self.policy = cfg.bin_policy
        self.rr = 0
        self.window = cfg.sla_window
        self.batch_size = cfg.batch_size
        self.latency = latency
        self.progress = progress
        self.tick = max(n // 200, 1)
        self.next_tick = self.tick
        self.dynamic = cfg.dynamic
        self.adaptive = cfg.dynamic and cfg.sla_control and cfg.d_sla_tbt is not None  # Algorithm 2 runs
        self.memory_control = cfg.memory_control
        if self.dynamic:
            self.stats = QueueStats(prompt[order], predicted[order], cfg.stats_window)
            self.mem = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps)

            def controller():
                return SlaController(cfg.d_sla_tbt, cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta,
                                     cfg.b_min, cfg.b_max, 1)  # fed one mean per window of iterations

            start = min((cfg.b_min + cfg.b_max) // 2, cfg.b_max) if self.adaptive else cfg.b_max
            self.gpus = [_Gpu(i, self.B, controller(), start, k, cfg.sla_window) for i in range(cfg.gpus)]
        else:
            self.gpus = [_Gpu(i, self.B, None, cfg.batch_size, k, cfg.sla_window) for i in range(cfg.gpus)]
        self.b_max = cfg.b_max
        self.idle = list(range(cfg.gpus))   # heap of idle GPU indices
        self.roomy: set[int] = set()        # busy GPUs whose last boundary left room under the cap
        self.calm: set[int] = set()         # busy GPUs whose span was planned with nobody waiting
        self.heap: list = []                # (boundary's clock tick, GPU index, version)
        self.r_state = [WAITING] * n        # per queue position from here on
        self.r_start = [math.nan] * n
        self.r_first = [math.nan] * n
        self.r_finish = [math.nan] * n
        self.r_gap = [0.0] * n
        self.r_last = [math.nan] * n
        self.r_pre = [0] * n
        self.r_gpu = [-1] * n
        self.r_gen = [0] * n                # decode steps done before the current residency
        self.r_tdec = [0] * n               # first decode iteration of the current residency
        self.r_ver = [0] * n
        self.r_share = [0.0] * n
        self.r_steps = [0] * n
        self.preemptions = 0
        self.wasted = 0.0
        self.kv_peak_tokens = 0
        self.log = array("d")   # LOG_COLUMNS of every span, flat

    # ------------------------------------------------------------ arrivals
    def advance(self, tick: int) -> None:
        """Requests arriving up to clock tick ``tick`` join their queues."""
        g, arr = self.g, self.arr_k
        if g >= self.n_req or arr[g] > tick:
            return
        new_g = bisect.bisect_right(arr, tick, g)
        if self.k == 1:
            self.arrived[0] += new_g - g
        elif new_g - g > 32:
            add = np.bincount(self.bins[g:new_g], minlength=self.k)
            for q in np.flatnonzero(add).tolist():
                self.arrived[q] += int(add[q])
        else:
            bl, arrived = self.bins_l, self.arrived
            for i in range(g, new_g):
                arrived[bl[i]] += 1
        self.waiting += new_g - g
        self.g = new_g

    def opens_queue(self, tick: int) -> bool:
        """Whether some request arriving at clock tick ``tick`` comes to a queue with nobody waiting."""
        g = self.g
        new = self.bins_l[g:bisect.bisect_right(self.arr_k, tick, g)]
        return any(self.queue_head(q) is None for q in (new if len(new) < 8 else set(new)))

    def queue_head(self, q: int):
        """The request queue ``q`` would admit next (preempted ones first), or None."""
        if self.front[q]:
            return self.front[q][0]
        h = self.head[q]
        return h if h < self.arrived[q] else None

    # ------------------------------------------------------------ main loop
    def run(self) -> EngineOutput:
        heap, gpus, arr, arr_k, n = self.heap, self.gpus, self.arr_l, self.arr_k, self.n_req
        single = self.k == 1
        while self.done < n:
            top = heap[0][0] if heap else INF
            g = self.g
            if g < n and arr_k[g] <= top and (self.idle or not heap or not (single and self.waiting)):
                tick = arr_k[g]
                # arrivals matter now if they may start or end a span: they come to an empty queue
                fresh = self.waiting == 0 or (not single and self.opens_queue(tick))
                self.advance(tick)
                if fresh or self.idle:
                    self.route(arr[g])
                continue
            tick, gi, ver = heapq.heappop(heap)
            gpu = gpus[gi]
            if ver != gpu.ver:
                continue
            if g < n and arr_k[g] <= tick:
                self.advance(tick)
            self.finish_span(gpu)
            self.boundary(gpu)
            if self.waiting and (self.idle or self.roomy or self.calm):
                self.route(gpu.t, exclude=gi)
            if self.progress is not None and self.done >= self.next_tick:
                self.progress(self.done / n)
                self.next_tick = self.done + self.tick
        if self.progress is not None:
            self.progress(1.0)
        return self.output()

    def route(self, now: float, exclude: int = -1) -> None:
        """Requests wait. Idle GPUs take them now. Of the busy GPUs with room, the one whose next
        boundary comes first stops there to admit; every busy GPU whose controllers come due while
        requests still wait stops then to update them (as if every boundary were simulated)."""
        while self.waiting and self.idle:
            gpu = self.gpus[heapq.heappop(self.idle)]
            gpu.t = now
            self.boundary(gpu)
        if not self.waiting:
            return
        soonest = {}                         # busy GPU with room -> (time, index, boundary, iterations)
        head = self.queue_head(0) if self.k == 1 else None
        for gi in self.roomy:
            if gi != exclude:
                gpu = self.gpus[gi]
                if head is not None and gpu.blocked_head == head:
                    continue                 # memory kept this very request out at its last boundary
                soon, x = self.next_boundary(gpu, now)
                if soon < gpu.span_E:
                    soonest[gi] = (_tick(self.boundary_time(gpu, x)), gi, soon, x)
        admit = None                         # (tick, GPU index, boundary) of the admission
        for when, gi, soon, x in sorted(soonest.values()):
            gpu = self.gpus[gi]
            used = gpu.U1 + self.growth(gpu.H, gpu.span_T + 1, x) + gpu.H[soon % self.B]
            if self.admissible(gpu, gpu.n2 + len(gpu.pref), self.K - self.watermark - used):
                admit = (when, gi, soon)
                self.end_span(gpu, soon)
                break
        for gi in sorted(self.calm):
            if admit is not None and gi in soonest and soonest[gi][:2] > admit[:2]:
                continue                     # due no earlier than its next boundary, after the admission
            gpu = self.gpus[gi]
            soon, _ = self.next_boundary(gpu, now)
            due = max(soon, gpu.span_T + max(1, self.window - gpu.span_since))
            if due >= gpu.span_E:
                self.calm.discard(gi)        # its span ends before its controllers are due anyway
            elif admit is None or (_tick(self.boundary_time(gpu, due - gpu.span_T - 1)), gi) < admit[:2]:
                self.end_span(gpu, due)
                self.calm.discard(gi)

    def boundary_time(self, gpu: _Gpu, x: int) -> float:
        """When ``gpu``'s span reaches the boundary after its first iteration and ``x`` more."""
        dec = self.latency.decode_time(gpu.n2, gpu.c2 / gpu.n2, x) if x > 0 else 0.0
        return gpu.span_t + gpu.d_first + dec

    def cap(self, gpu: _Gpu, q: int, running: int) -> int:
        """The most requests ``gpu`` may run when admitting from queue ``q`` (recording b_mem)."""
        if not self.dynamic:
            return self.batch_size
        b = gpu.bbase[q]
        b_mem = gpu.bmem = b if b > running else (running if running < self.b_max else self.b_max)
        return b_mem if b_mem < gpu.b_sla else gpu.b_sla

    def admissible(self, gpu: _Gpu, running: int, free_blocks: int) -> bool:
        """Could ``gpu`` admit some queue's next request with this many running and blocks free?"""
        for q in range(self.k):
            p = self.queue_head(q)
            if p is None:
                continue
            if running < self.cap(gpu, q, running) and \
                    -(-(self.q_prompt[p] + self.r_gen[p]) // self.B) <= free_blocks:
                return True
        return False

    def next_boundary(self, gpu: _Gpu, now: float) -> tuple[int, int]:
        """(index of ``gpu``'s first boundary at or after ``now`` (on the clock's ticks), decode
        iterations before it)."""
        first_end = gpu.span_t + gpu.d_first
        if _tick(now) <= _tick(first_end) or not gpu.n2:
            return gpu.span_T + 1, 0
        earliest = (_tick(now) - 0.5) / TICKS   # the start of now's tick
        x = self.latency.steps_until(gpu.n2, gpu.c2 / gpu.n2, gpu.span_E - gpu.span_T - 1, earliest - first_end)
        return gpu.span_T + 1 + x, x

    def end_span(self, gpu: _Gpu, new_E: int) -> None:
        """Stop ``gpu``'s running span at boundary ``new_E`` (earlier than planned)."""
        x = new_E - gpu.span_T - 1
        gpu.span_E = new_E
        gpu.ver += 1
        gpu.span_dec = self.latency.decode_time(gpu.n2, gpu.c2 / gpu.n2, x) if x else 0.0
        heapq.heappush(self.heap, (_tick(gpu.span_t + gpu.d_first + gpu.span_dec), gpu.idx, gpu.ver))

    def growth(self, H: list, T: int, x: int) -> int:
        """Blocks that decode growth allocates in iterations T .. T+x-1."""
        if x <= 0:
            return 0
        B = self.B
        full, rest = divmod(x, B)
        total = full * sum(H) if full else 0
        for j in range(T, T + rest):
            total += H[j % B]
        return total

    # ------------------------------------------------------------ spans
    def finish_span(self, gpu: _Gpu) -> None:
        """Account for the span that just ended: time, tokens, blocks, gaps, shares, the log row."""
        T0, E = gpu.span_T, gpu.span_E
        x = E - T0 - 1
        lat = self.latency
        n2, c2, U1, d_first = gpu.n2, gpu.c2, gpu.U1, gpu.d_first
        mean = c2 / n2 if n2 else 0.0
        if x > 0:
            dec = gpu.span_dec
            H, B = gpu.H, self.B
            if x < B:
                grown = 0
                for j in range(T0 + 1, E):
                    grown += H[j % B]
            else:
                grown = self.growth(H, T0 + 1, x)
            U_end = U1 + grown
        else:
            dec = 0.0
            U_end = U1
        duration = d_first + dec
        span_t = gpu.span_t
        gpu.t = span_t + duration
        gpu.T = E
        gpu.kv_int += U1 * d_first + (U1 + U_end) * 0.5 * dec
        gpu.U = U_end
        ctx = gpu.ctx = c2 + n2 * x
        gpu.n = n2
        gpu.busy += duration
        n0, served0 = gpu.n0, gpu.served0
        gpu.n_int += served0 + n2 * x
        if self.dynamic:
            gpu.since_it += 1 + x
            gpu.since_dec += (1 if n0 else 0) + (x if n2 else 0)
            gpu.since_step += (d_first if n0 else 0.0) + dec
            gpu.since_n += n0 + n2 * x
        mi, md = gpu.mono_i, gpu.mono_d       # suffix-maximum stack of iteration durations
        while md and md[-1] <= d_first:
            md.pop()
            mi.pop()
        mi.append(T0)
        md.append(d_first)
        if x > 0:
            a = lat.decode_step_time(n2, mean)
            longest = lat.decode_step_time(n2, mean + x - 1) if x > 1 else a
            if a > longest:
                longest = a
            while md and md[-1] <= longest:
                md.pop()
                mi.pop()
            mi.append(E - 1)
            md.append(longest)
            gpu.share += (d_first / served0 if served0 else 0.0) + dec / n2
        elif served0:
            gpu.share += d_first / served0
        if gpu.await_gap:
            keep = []
            r_gap = self.r_gap
            for p, it, before in gpu.await_gap:
                if it < E:   # its first decode iteration after re-admission ran in this span
                    d = d_first if it == T0 else lat.decode_step_time(n2, mean + (it - T0 - 1))
                    if before + d > r_gap[p]:
                        r_gap[p] = before + d
                else:
                    keep.append((p, it, before))
            gpu.await_gap = keep
        pref = gpu.pref
        if pref:
            q_prompt, r_gen = self.q_prompt, self.r_gen
            ctx += sum(q_prompt[p] + r_gen[p] - rem for p, rem in pref)
        if ctx > self.kv_peak_tokens:
            self.kv_peak_tokens = ctx
        self.log.extend((span_t, duration, U_end, gpu.idx, n2 + len(pref), 1 + x, ctx, gpu.bmem,
                         gpu.b_sla, gpu.span_cap, gpu.span_branch, gpu.span_pre))

    def boundary(self, gpu: _Gpu) -> None:
        """Between iterations: completions, the controllers, preemptions, admissions; then plan the next span."""
        E, t, B, K = gpu.T, gpu.t, self.B, self.K
        q_prompt, r_gen, r_state, r_ver = self.q_prompt, self.r_gen, self.r_state, self.r_ver
        gpu.blocked_head = None
        dynamic = self.dynamic
        # ---- requests whose last token came at the end of iteration E-1 leave
        comp = gpu.comp
        if comp and comp[0][0] < E:
            q_output, r_tdec, r_gap, r_steps, r_finish = (self.q_output, self.r_tdec, self.r_gap, self.r_steps,
                                                          self.r_finish)
            H = gpu.H
            while comp and comp[0][0] < E:
                _, ver, p = heapq.heappop(comp)
                if ver != r_ver[p] or r_state[p] != RUNNING:
                    continue
                prompt, out, gen = q_prompt[p], q_output[p], r_gen[p]
                tokens = prompt + out
                gpu.U -= -(-tokens // B)
                gpu.n -= 1
                gpu.ctx -= tokens
                H[(r_tdec[p] - prompt - gen) % B] -= 1
                if out > gen:
                    gap = gpu.max_since(r_tdec[p])
                    if gap > r_gap[p]:
                        r_gap[p] = gap
                r_steps[p] += out - gen
                r_finish[p] = t
                r_state[p] = DONE
                self.done += 1
        # ---- the controllers, once a window of iterations has passed while requests wait
        branch = BRANCH_HOLD if dynamic else BRANCH_OFF
        pref = gpu.pref
        running = gpu.n + len(pref)
        if dynamic and self.waiting and gpu.since_it >= self.window:
            mem, stats, off, arrived = self.mem, self.stats, self.off, self.arrived
            bbase = gpu.bbase
            if self.memory_control:
                for q in range(self.k):
                    bbase[q] = mem.cap(*stats.moments(off[q], arrived[q]))
            else:
                bbase[:] = [self.b_max] * self.k
            if self.adaptive and gpu.since_dec:
                gpu.ctl.observe(gpu.since_step / gpu.since_dec, gpu.since_n / gpu.since_dec)
                gpu.b_sla, branch = gpu.ctl.cap(running)
            elif not self.adaptive:
                branch = BRANCH_OFF   # an update with Algorithm 2 switched off (or no TBT deadline)
            gpu.since_it = gpu.since_dec = gpu.since_n = 0
            gpu.since_step = 0.0
        # ---- decode growth of this iteration must fit: preempt the newest running requests
        H = gpu.H
        need = H[E % B]
        pre = 0
        while gpu.U + need > K:
            p = gpu.stack.pop()
            if r_state[p] != RUNNING or self.r_gpu[p] != gpu.idx:
                continue
            decoding = not any(e[0] == p for e in pref)
            if decoding and (self.r_tdec[p] - q_prompt[p] - r_gen[p]) % B == E % B:
                need -= 1
            self.preempt(gpu, p, E, t, decoding)
            pref = gpu.pref
            pre += 1
        # ---- prefill work: chunks of admitted prompts, then new admissions
        budget = self.chunk
        seqs = tok = 0
        joiners = []
        if pref:
            keep = []
            for entry in pref:
                if budget <= 0:
                    keep.append(entry)
                    continue
                take = entry[1] if entry[1] <= budget else budget
                budget -= take
                seqs += 1
                tok += take
                if take == entry[1]:
                    joiners.append(entry[0])
                else:
                    keep.append([entry[0], entry[1] - take])
            pref = gpu.pref = keep
        running = gpu.n + len(pref) + len(joiners)
        if self.waiting and budget > 0 and not pre:   # no admission in an iteration that preempted (vLLM)
            room = K - self.watermark - need - gpu.U  # blocks admissions may take
            single = self.k == 1
            blocked = set()
            r_start = self.r_start
            front0, head, arrived = self.front[0], self.head, self.arrived
            fixed = None if dynamic else self.batch_size
            ceiling = gpu.b_sla if dynamic else self.batch_size   # no queue's cap is above it
            while self.waiting and budget > 0 and running < ceiling:
                if single:
                    q = 0
                    if front0:
                        p = front0[0]
                    elif head[0] < arrived[0]:
                        p = head[0]
                    else:
                        break
                else:
                    q, p = self.choose(blocked)
                    if p is None:
                        break
                blocks = -(-(q_prompt[p] + r_gen[p]) // B)
                if running >= (fixed or self.cap(gpu, q, running)) or blocks > room:
                    if single:
                        if blocks > room:   # memory only shrinks until the next event: p stays out
                            gpu.blocked_head = p
                        break
                    blocked.add(q)
                    continue
                self.take(q, p)
                self.rr = q + 1
                room -= blocks
                gpu.U += blocks
                r_state[p] = RUNNING
                self.r_gpu[p] = gpu.idx
                self.r_share[p] = gpu.share
                if r_start[p] != r_start[p]:  # NaN: first admission
                    r_start[p] = t
                gpu.stack.append(p)
                running += 1
                tokens = q_prompt[p] + r_gen[p]
                take = tokens if tokens <= budget else budget
                budget -= take
                seqs += 1
                tok += take
                if take == tokens:
                    joiners.append(p)
                else:
                    pref.append([p, tokens - take])
        if running == 0:   # nothing to run: the GPU idles until a request comes
            gpu.ver += 1
            heapq.heappush(self.idle, gpu.idx)
            self.roomy.discard(gpu.idx)
            self.calm.discard(gpu.idx)
            return
        # ---- the first iteration: prefill of this iteration's prompt tokens plus one decode step
        lat = self.latency
        n, ctx = gpu.n, gpu.ctx
        d_dec0 = lat.decode_step_time(n, ctx / n) if n else 0.0
        d_first = (lat.prefill_time(seqs, tok / seqs) if seqs else 0.0) + d_dec0
        first_end = t + d_first
        n2, c2 = n, ctx + n
        if joiners:
            q_output, r_tdec, r_first = self.q_output, self.r_tdec, self.r_first
            for p in joiners:
                tokens = q_prompt[p] + r_gen[p]
                H[(E + 1 - tokens) % B] += 1
                n2 += 1
                c2 += tokens
                r_tdec[p] = E + 1
                heapq.heappush(comp, (E + q_output[p] - r_gen[p], r_ver[p], p))
                if r_first[p] != r_first[p]:
                    r_first[p] = first_end
                else:      # re-admitted: its next gap runs from its last token to its next decode step
                    gpu.await_gap.append((p, E + 1, first_end - self.r_last[p]))
        U1 = gpu.U + need
        # ---- the span lasts until the next event on this GPU
        while comp and (comp[0][1] != r_ver[comp[0][2]] or r_state[comp[0][2]] != RUNNING):
            heapq.heappop(comp)
        E_next = comp[0][0] + 1 if comp else E + 1
        waiting = self.waiting
        if pref or (waiting and (pre or budget <= 0)):   # prefill continues, or admission may
            E_next = E + 1
        if dynamic:   # the controllers are due every window of iterations while requests wait
            if waiting:
                since = gpu.since_it
                due = E + (self.window - since if since < self.window - 1 else 1)
                if due < E_next:
                    E_next = due
                if self.calm:
                    self.calm.discard(gpu.idx)
            else:
                self.calm.add(gpu.idx)
        if n2 and E_next > E + 1:
            free = K - U1
            if n2 * ((E_next - E - 1) // B + 1) > free:   # growth may run out of blocks within the span
                m = self.overflow(H, E + 1, n2, free)
                if E + m < E_next:
                    E_next = E + m
        x = E_next - E - 1
        gpu.span_T, gpu.span_E, gpu.span_t = E, E_next, t
        gpu.d_first, gpu.d_dec0, gpu.n2, gpu.c2, gpu.U1 = d_first, d_dec0, n2, c2, U1
        gpu.served0 = n + seqs
        gpu.n0 = n
        if not dynamic:
            cap = self.batch_size
        elif self.k == 1:
            cap = self.cap(gpu, 0, running)
        else:
            cap = max(self.cap(gpu, q, running) for q in range(self.k))
        gpu.span_cap, gpu.span_branch, gpu.span_pre, gpu.span_since = cap, branch, pre, gpu.since_it
        gpu.ver += 1
        dec = gpu.span_dec = lat.decode_time(n2, c2 / n2, x) if x > 0 else 0.0
        heapq.heappush(self.heap, (_tick(first_end + dec), gpu.idx, gpu.ver))
        if running < cap:   # a request that comes might be admitted before the span ends
            self.roomy.add(gpu.idx)
        else:
            self.roomy.discard(gpu.idx)

    def overflow(self, H: list, T: int, n: int, free: int) -> int:
        """Fewest iterations m from T on whose growth exceeds ``free`` blocks (boundary at T + m - 1)."""
        B = self.B
        cycles = free // n
        total = cycles * n
        j = cycles * B
        while True:
            total += H[(T + j) % B]
            j += 1
            if total > free:
                return j

    # ------------------------------------------------------------ requests
    def choose(self, blocked: set) -> tuple:
        """(queue, request) the bin policy admits next among unblocked queues, or (-1, None).

        fcfs: the oldest head; longest: the most waiting; round_robin: the first queue at or
        after ``rr``, cyclically; short_first: the lowest bin. Ties go to the lower bin.
        """
        front, head, arrived, q_arr = self.front, self.head, self.arrived, self.q_arr
        policy, k, rr = self.policy, self.k, self.rr
        best_q, best_p, best_key = -1, None, None
        for q in range(k):
            if q in blocked:
                continue
            fq = front[q]
            if fq:
                p = fq[0]
            elif head[q] < arrived[q]:
                p = head[q]
            else:
                continue
            if policy == "short_first":
                return q, p
            if policy == "fcfs":
                key = q_arr[p]
            elif policy == "longest":
                key = head[q] - arrived[q] - len(fq)
            else:
                key = (q - rr) % k
            if best_key is None or key < best_key:
                best_q, best_p, best_key = q, p, key
        return best_q, best_p

    def take(self, q: int, p: int) -> None:
        if self.front[q] and self.front[q][0] == p:
            self.front[q].pop(0)
        else:
            self.head[q] += 1
        self.waiting -= 1

    def preempt(self, gpu: _Gpu, p: int, E: int, t: float, decoding: bool) -> None:
        """Free ``p``'s blocks and send it back to the front of its queue (recompute later)."""
        B = self.B
        prompt, gen = self.q_prompt[p], self.r_gen[p]
        if decoding:
            done_here = E - self.r_tdec[p]
            tokens = prompt + gen + done_here
            gpu.U -= -(-tokens // B)
            gpu.n -= 1
            gpu.ctx -= tokens
            gpu.H[(self.r_tdec[p] - prompt - gen) % B] -= 1
            if done_here:
                gap = gpu.max_since(self.r_tdec[p])
                if gap > self.r_gap[p]:
                    self.r_gap[p] = gap
            self.r_steps[p] += done_here
            self.r_gen[p] = gen + done_here
            if done_here:                      # its latest token came at the end of the last iteration
                self.r_last[p] = t
            elif self.r_last[p] != self.r_last[p]:
                self.r_last[p] = self.r_first[p]
        else:                                                       # still prefilling
            gpu.U -= -(-(prompt + gen) // B)
            gpu.pref = [e for e in gpu.pref if e[0] != p]
        self.wasted += gpu.share - self.r_share[p]
        self.r_pre[p] += 1
        self.preemptions += 1
        self.r_state[p] = WAITING
        self.r_ver[p] += 1
        bisect.insort(self.front[self.q_bin[p]], p)
        self.waiting += 1

    # ------------------------------------------------------------ results
    def output(self) -> EngineOutput:
        n, order = self.n_req, self.order

        def back(values, dtype):
            out = np.empty(n, dtype=dtype)
            out[order] = np.asarray(values, dtype=dtype)
            return out

        finish = back(self.r_finish, np.float64)
        first = back(self.r_first, np.float64)
        steps = back(self.r_steps, np.int64)
        tbt = np.where(steps > 0, (finish - first) / np.maximum(steps, 1), 0.0)
        requests = {
            "gpu": back(self.r_gpu, np.int64),
            "start": back(self.r_start, np.float64),
            "first_token": first,
            "finish": finish,
            "tbt": tbt,
            "tbt_max": back(self.r_gap, np.float64),
            "preemptions": back(self.r_pre, np.int64),
            "decode_steps": steps,
        }
        flat = np.frombuffer(self.log, np.float64).reshape(-1, len(LOG_COLUMNS))
        log = {name: (flat[:, i].copy() if name in LOG_FLOATS else flat[:, i].astype(np.int64))
               for i, name in enumerate(LOG_COLUMNS)}
        log["kv_util"] = log.pop("kv_blocks") / self.K   # blocks in use at each span's end
        gpus = self.gpus
        counters = {"oom_events": 0, "evicted_requests": 0, "preemptions": self.preemptions,
                    "wasted_gpu_s": self.wasted, "kv_peak_tokens": self.kv_peak_tokens,
                    "kv_block_seconds": sum(g.kv_int for g in gpus), "kv_blocks": self.K,
                    "busy_s": sum(g.busy for g in gpus),
                    "iterations": int(log["iterations"].sum()),
                    "running_iterations": sum(g.n_int for g in gpus)}
        return EngineOutput(requests=requests, log=log, counters=counters)
