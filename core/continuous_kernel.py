"""The continuous engine's event loop, compiled with numba (semantics: :mod:`core.continuous_engine`).

:func:`simulate` runs a whole workload in one call. Its state is a record per request
(:data:`REQUEST`, in queue order) and per GPU (:data:`GPU`), the per-GPU lists (heap of
completions, running requests, prefill chunks, ...), the queues and a few counters, grouped in
named records (:mod:`core.kernel_state`) so each function says what it touches. The functions
mirror the engine's steps one to one: arrivals, routing, a span's accounting, a boundary's
decisions. Latency queries go through :mod:`core.latency_kernel`.

Fields are grouped into records rather than kept as one array each because every array, list or
record array handed to a compiled call costs an atomic reference count in and out: with one array
per field, that bookkeeping took more time than the simulation. For the same reason the groups are
:mod:`core.kernel_state` records, counted once, rather than tuples, counted member by member, and a
function takes the group rather than the members it reads (docs/benchmarks.md).
"""
from __future__ import annotations

import heapq
import math
from collections import namedtuple

import numpy as np
from numba import literal_unroll, njit

from .config import PREEMPT_POLICIES, QUEUE_POLICIES, ROUTERS
from .controllers import BRANCH_HOLD, BRANCH_OFF, BRANCH_OVER, BRANCH_UNDER, BRANCH_WITHIN
from .kernel_state import state
from .latency_kernel import bisect_right, decode_step_time, decode_time, one_reference, prefill_time, steps_until
from .prefix_cache import ADM, HIT, admit, fill, grow, leave, lookup, take_free

WAITING, RUNNING, DONE, MOVING = 0, 1, 2, 3   # MOVING: its KV on the way to a decode replica
NONE = -1                  # no request
BIG = 1 << 62              # more than any count or clock tick (see tick): "no limit", "never"
TICKS = 1e9                # events are ordered on a 1 ns clock (see core.continuous_engine)
POLICIES = ("fcfs", "longest", "round_robin", "short_first")
FCFS, LONGEST, ROUND_ROBIN, SHORT_FIRST = range(4)
MARGINS = ("factor", "clt", "none")
FACTOR, CLT = 0, 1
# the policies by their index in the settings' choices: which running request a preemption takes
# (_victim), the order of a waiting queue (_queue_key)
NEWEST = PREEMPT_POLICIES.index("newest")    # any other: priority
ARRIVAL_ORDER, PRIORITY_ORDER = QUEUE_POLICIES.index("fcfs"), QUEUE_POLICIES.index("priority")
# the routers by their index in ROUTERS (_pick)
(SHARED_QUEUE, ROUND_ROBIN_ROUTER, RANDOM_ROUTER, LEAST_OUTSTANDING, POWER_OF_TWO, LEAST_KV,
 PREFIX_AFFINITY) = range(len(ROUTERS))
# one row per span (core.continuous_engine turns it into the run's log columns)
LOG = np.dtype([("start", np.float64), ("duration", np.float64),   # when it started, how long it ran
                ("kv_blocks", np.int64),                          # KV blocks in use at its end
                ("gpu", np.int64), ("size", np.int64),            # its GPU; requests running in it
                ("iterations", np.int64), ("kv_tokens", np.int64),  # iterations; context tokens at its end
                ("b_mem", np.int64), ("b_sla", np.int64), ("b_cap", np.int64),  # the caps it was planned with
                ("branch", np.int64),                             # Algorithm 2's branch at its start
                ("preempted", np.int64),                          # requests preempted at its start
                ("cached_blocks", np.int64),                      # free blocks still cached at its end
                ("waiting", np.int64)])                           # requests waiting for it at its start
# the kernel hands the log back by column (_log_columns): the float fields (the first two), then the int ones
LOG_FLOATS = tuple(name for name in LOG.names if LOG[name].kind == "f")
LOG_INTS = tuple(name for name in LOG.names if LOG[name].kind == "i")

# the run's settings (plain numbers and flags), one record: compiled code reaches it by one pointer,
# however many fields it has (a tuple would be passed field by field to every function)
SETTINGS = np.dtype([
    ("n", np.int64), ("k", np.int64), ("gpus", np.int64),      # requests, queues (bins), replicas
    ("B", np.int64), ("K", np.int64),                          # block size (tokens), KV blocks per GPU
    ("watermark", np.int64), ("budget", np.int64),             # blocks admission keeps; tokens an iteration takes
    ("policy", np.int64), ("window", np.int64),                # bin policy (POLICIES); controller window
    ("batch_size", np.int64), ("dynamic", np.bool_), ("adaptive", np.bool_), ("memory_control", np.bool_),
    ("b_max", np.int64), ("b_min", np.int64), ("d_sla", np.float64), ("sla_eps", np.float64),
    ("alpha", np.int64), ("delta", np.int64), ("eta", np.int64), ("margin", np.int64),
    ("mem_factor", np.float64), ("theta", np.float64), ("stats_window", np.int64), ("b_start", np.int64),
    ("preempt", np.int64), ("queue", np.int64),                # the policies (PREEMPT_POLICIES, QUEUE_POLICIES)
    ("paged", np.bool_), ("kb", np.int64),                     # prefix caching on (core.prefix_cache); tokens a key
    ("keyed_out", np.bool_),                                   # ... some keys describe output tokens
    ("router", np.int64), ("routed", np.bool_),                # ROUTERS; a queue a replica (not shared)
    ("prefill", np.int64),                                     # prefill replicas (disaggregated; 0: none)
    ("clients", np.int64)], align=True)                        # closed loop: clients (0: open loop)
# one record per request, by queue position (inputs, then state: see core.continuous_engine)
REQUEST = np.dtype([("prompt", np.int64), ("output", np.int64), ("q_arr", np.float64), ("q_bin", np.int64),
                    ("state", np.int64), ("start", np.float64), ("first", np.float64), ("finish", np.float64),
                    ("gap", np.float64), ("last", np.float64), ("pre", np.int64), ("gpu", np.int64),
                    ("gen", np.int64), ("tdec", np.int64), ("ver", np.int64), ("share", np.float64),
                    ("steps", np.int64), ("prio", np.int64),
                    # the token count its replica runs it to (output, or 1 on a prefill replica); tokens
                    # whose KV came from a prefill replica (computed there); seconds its KV takes to move
                    ("stop", np.int64), ("xfer", np.int64), ("move_s", np.float64)], align=True)
# arrivals in arrival order (times, clock ticks, queues, two random replicas for the routers that draw),
# the request records, and in closed loop each arrival's queue position (else empty)
Requests = state("Requests", "arr arr_k bins draws r pos")
# the queues: bin q's requests are the slices [off[q], off[q+1]) of the queue positions, in arrival order;
# seen[q] of them have arrived (prefix sums of prompts and predictions feed Algorithm 1). Each replica has
# a queue per bin (slot replica * k + q) when routed, else the replicas share one (slot q); a slot's
# waiting = front + [head, arrived) + lane[lane_head:]: front is a heap of (_queue_key, position) holding
# preempted requests and, unless the queue is shared or routed in arrival order, every arrival; a routed
# queue in arrival order holds its arrivals in lane (positions ascending: one that would not ascend, a
# request whose KV moved, goes to front) and its slice stays empty (head == arrived). Per group of slots (a
# replica, or the shared queue): requests waiting, the round-robin bin policy's next bin.
Queues = state("Queues", "off head arrived seen front sums blocked wait rr lane lane_head")
# global counters (ints: next arrival, done, KV moves begun, preemptions, KV peak,
# roomy GPUs, calm GPUs, prompt tokens looked up in the prefix cache and found there, admissions so far,
# closed loop: the next arrival waiting for a client; float: wasted GPU-seconds); the event heaps, the
# log, the heap of KV moves (tick, request) and two lists a boundary and a routing step fill afresh each
# time (kept here rather than allocated per call: docs/benchmarks.md)
World = state("World", "c wasted heap idle log moves joiners soonest")
NEXT_, DONE_, MOVED_, PREEMPTIONS_, KV_PEAK_, ROOMY_, CALM_, QUERIED_, HIT_, ADMITTED_, GATED_ = range(11)
# prefix caching (core.prefix_cache): the GPUs' block pools, the cached blocks by name, each request's
# block table (by queue position), the requests' key chains, the requests leaving a GPU at a boundary,
# the requests' prefix-caching fields (core.prefix_cache.NB ...); a named tuple, built by the caller: the
# prefix cache's functions take the arrays they use
Pages = namedtuple("Pages", "pool names tables chain leaving req")
# one record per GPU: its state between events and the span it runs
GPU = np.dtype([
    ("t", np.float64), ("T", np.int64),            # time and index of the last boundary
    ("n", np.int64), ("ctx", np.int64),            # decoding requests and their context tokens
    ("U", np.int64), ("ver", np.int64),            # KV blocks in use; version of its heap entry
    ("b_sla", np.int64), ("bmem", np.int64),       # Algorithm 2's cap; b_mem of the latest admission decision
    ("blocked", np.int64),                         # the request memory kept out at the last boundary
    ("kept", np.int64),                            # ... since it last freed blocks (one shared queue)
    ("deal", np.int64),                            # woken from idle beside others: its share of the queue
    ("since_it", np.int64), ("since_dec", np.int64), ("since_step", np.float64), ("since_n", np.int64),
    ("share", np.float64),                         # sum over iterations of duration / requests served
    ("busy", np.float64), ("kv_int", np.float64), ("n_int", np.int64),
    # the running span [span_T, span_E): its first iteration, then pure decode iterations
    ("span_T", np.int64), ("span_E", np.int64), ("span_t", np.float64), ("d_first", np.float64),
    ("d_dec0", np.float64), ("n2", np.int64), ("c2", np.int64), ("U1", np.int64), ("served0", np.int64),
    ("n0", np.int64), ("span_cap", np.int64), ("span_branch", np.int64), ("span_pre", np.int64),
    ("held_n", np.int64), ("held_ctx", np.int64),  # requests whose last token ends its first iteration; their KV
    ("span_since", np.int64), ("span_dec", np.float64),
    ("b_low", np.float64), ("b_high", np.float64),  # Algorithm 2's interval
    ("ctl_step", np.float64), ("ctl_size", np.float64),  # ... and its latest observation
    ("roomy", np.bool_), ("calm", np.bool_),       # in the sets of GPUs with room / planned with nobody waiting
    ("soon", np.int64),                            # routing scratch: tick of its next boundary (-1: none)
    # prefix caching: free blocks holding no name, free cached blocks; ids unused; the blocks this
    # boundary's decode growth took already, the blocks the span's took and the pool has yet to give;
    # memory kept a request out at this boundary
    ("nu", np.int64), ("ncf", np.int64), ("nid", np.int64), ("prepaid", np.int64), ("owed", np.int64),
    ("short", np.bool_),
    # its group of queue slots (itself when routed, else 0, the shared queue); idle; requests running in
    # its span (those done at the span's end included); requests waiting for it when the span was planned
    ("grp", np.int64), ("idle", np.bool_), ("run", np.int64), ("span_wait", np.int64),
    # requests admitted at this boundary whose KV came from a prefill replica (they decode in its first
    # iteration), their context tokens
    ("xj", np.int64), ("xctx", np.int64)],
    align=True)
# per GPU: decoding requests by block phase, Algorithm 1's bound per queue, the heap of completions,
# running requests (newest last), prefill chunks, and the suffix maximum of iteration durations
GpuLists = state("GpuLists", "H bbase comp stack pref mono_i mono_d")


def settings(cfg, n: int, eta: int, theta: float, key_block: int = 0, keyed_out: bool = False) -> np.record:
    """The kernel's settings for ``cfg`` (``theta``: Algorithm 1's CLT quantile), a :data:`SETTINGS` record.
    ``key_block``: tokens a prefix key describes, 0 when the workload has no prefix keys (then prefix
    caching changes nothing); ``keyed_out``: some keys describe output tokens."""
    adaptive = cfg.dynamic and cfg.sla_control and cfg.d_sla_tbt is not None
    K = eta // cfg.block_size
    s = np.zeros(1, SETTINGS).view(np.recarray)[0]
    s.n, s.k, s.gpus, s.B, s.K = n, cfg.bins, cfg.n_replicas, cfg.block_size, K
    s.watermark = int(cfg.kv_watermark * (K + 1))   # vLLM's pool has K + 1 blocks, one its null block
    s.budget = cfg.token_budget
    s.policy, s.window, s.batch_size = POLICIES.index(cfg.bin_policy), cfg.sla_window, cfg.batch_size
    s.dynamic, s.adaptive, s.memory_control = cfg.dynamic, adaptive, cfg.memory_control
    s.b_max, s.b_min = cfg.b_max, cfg.b_min
    s.d_sla = cfg.d_sla_tbt if cfg.d_sla_tbt is not None else 0.0
    s.sla_eps, s.alpha, s.delta, s.eta = cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta, eta
    s.margin, s.mem_factor, s.theta = MARGINS.index(cfg.mem_margin), cfg.mem_factor, theta
    s.stats_window = cfg.stats_window
    s.b_start = (min((cfg.b_min + cfg.b_max) // 2, cfg.b_max) if adaptive
                 else (cfg.b_max if cfg.dynamic else cfg.batch_size))
    s.preempt, s.queue = PREEMPT_POLICIES.index(cfg.preempt_policy), QUEUE_POLICIES.index(cfg.queue_policy)
    s.paged = bool(cfg.enable_prefix_caching and key_block > 0)
    s.kb, s.keyed_out = max(key_block, 1), bool(keyed_out and s.paged)
    s.router = ROUTERS.index(cfg.routing)
    s.routed = s.router != SHARED_QUEUE
    s.prefill = cfg.pd_split[0] if cfg.disaggregate is not None else 0
    s.clients = cfg.max_concurrency if cfg.max_concurrency is not None else 0
    return s


def request_records(prompt, output, q_arrival, q_bin, priority, move_s=None) -> np.ndarray:
    """The request records (by queue position) before the run; ``move_s``: disaggregated, the seconds
    each request's KV takes to move to a decode replica (None: not disaggregated)."""
    r = np.zeros(len(prompt), dtype=REQUEST)
    _fill_requests(r, np.asarray(prompt, np.int64), np.asarray(output, np.int64), np.asarray(q_arrival, np.float64),
                   np.asarray(q_bin, np.int64), np.asarray(priority, np.int64),
                   np.zeros(0) if move_s is None else np.asarray(move_s, np.float64))
    return r


@njit(cache=True)
def _fill_requests(r, prompt, output, q_arrival, q_bin, priority, move_s):
    """:func:`request_records`' fields that do not start at 0, a record at a time (a field at a time would
    pass over every record once per field). ``move_s`` empty: not disaggregated."""
    for i in range(len(r)):
        e = r[i]
        e.prompt, e.output, e.q_arr, e.q_bin, e.prio = prompt[i], output[i], q_arrival[i], q_bin[i], priority[i]
        e.stop = output[i]
        if len(move_s):   # a prefill replica gives the first token
            e.stop = min(output[i], 1)
            e.move_s = move_s[i]
        e.start = e.first = e.finish = e.last = np.nan
        e.gpu = -1


@njit(cache=True)
def request_results(r, order):
    """The fields a run reports of the records (by queue position ``j``, request ``order[j]``), by request
    and in one pass: gpu, start, first, finish, gap, pre, steps."""
    n = len(r)
    gpu, pre, steps = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    start, first, finish, gap = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for j in range(n):
        e, i = r[j], order[j]
        gpu[i], start[i], first[i], finish[i], gap[i], pre[i], steps[i] = (e.gpu, e.start, e.first, e.finish,
                                                                           e.gap, e.pre, e.steps)
    return gpu, start, first, finish, gap, pre, steps


def gpu_records(s: np.record) -> np.ndarray:
    """The GPU records before the run."""
    g = np.zeros(s.gpus, dtype=GPU)
    g["b_sla"] = g["bmem"] = s.b_start
    g["blocked"] = g["kept"] = NONE
    g["since_it"] = s.window    # the controllers are due at once
    g["b_low"], g["b_high"] = s.b_min, s.b_max
    g["nu"] = g["nid"] = s.K     # every block free, holding no name
    g["grp"] = np.arange(s.gpus) if s.routed else 0
    g["idle"] = True
    return g


@njit(cache=True)
def tick(t):
    """The clock tick of time ``t`` >= 0. The clock ends before tick BIG (2^62 ns, 146 years): a later
    time stops the run with OverflowError rather than wrap around."""
    x = t * TICKS + 0.5
    if not x < BIG:
        raise OverflowError("simulated time beyond the continuous engine's clock")
    return int(x)


@njit(cache=True)
def ceil_div(a, b):
    return -(-a // b)


# ------------------------------------------------------------ the run
@njit(cache=True, nogil=True)
def simulate(s, arrival, bins, draws, r, gs, off, sums, packed, pages, progress):
    """Run the workload: arrivals (times, queues, and per arrival two distinct random replicas for the
    random and power_of_two routers: an (n, 2) array, or (0, 2) for the others) in arrival order; the request records
    (:func:`request_records`) and GPU records (:func:`gpu_records`), updated in place; queue offsets and ``sums``,
    the prefix sums of prompts, their squares, predictions and their squares by queue position (as
    QueueStats keeps them); ``pages``, the prefix cache's state (:data:`Pages`), or None without prefix caching
    (the kernel is then compiled without it).

    Returns (the span log by column (:func:`_log_columns`); counters: preemptions, KV peak tokens, prompt
    tokens looked up in the prefix cache, tokens found there; wasted GPU-seconds). ``progress[0]`` follows
    the requests done; ``progress[1] = 1`` stops the run.
    """
    n, G = s.n, s.gpus
    L = one_reference(packed)
    arrival_ticks = np.empty(n, np.int64)
    sent = min(s.clients, n) if s.clients else n   # closed loop: the first C are sent at their arrival
    for i in range(sent):
        arrival_ticks[i] = tick(arrival[i])
    arrival_ticks[sent:] = BIG                     # ... the others when a client frees (_release)
    pos = np.empty(n if s.clients else 0, np.int64)
    if s.clients:
        nxt = off[:-1].copy()
        for i in range(n):
            pos[i] = nxt[bins[i]]
            nxt[bins[i]] += 1
    rq = Requests(arrival, arrival_ticks, bins, draws, r, pos)
    groups = G if s.routed else 1
    front = [[(0, 0)] for _ in range(groups * s.k)]
    lane = [[0] for _ in range(groups * s.k)]
    for f in front:
        f.pop()
    for f in lane:
        f.pop()
    if s.routed:     # every arrival goes to its replica's lane or heap: the slices stay empty
        head = np.zeros(G * s.k, np.int64)
        arrived, seen = head.copy(), off[:-1].copy()
    else:
        head, arrived = off[:-1].copy(), off[:-1].copy()
        seen = arrived
    qs = Queues(off, head, arrived, seen, front, sums, np.zeros(s.k, np.bool_), np.zeros(groups, np.int64),
                np.zeros(groups, np.int64), lane, np.zeros(groups * s.k, np.int64))
    heap = [(0, 0, 0)]
    heap.pop()
    log = [(0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    log.pop()
    moves = [(0, 0)]
    moves.pop()
    joiners = [0]
    joiners.pop()
    soonest = [(0, 0, 0, 0)]
    soonest.pop()
    counters = np.zeros(11, np.int64)
    counters[GATED_] = sent      # (set before World holds it: set through w.c, numba dropped the write)
    w = World(counters, np.zeros(1), heap, list(range(G)), log, moves, joiners, soonest)
    gl = _gpu_lists(s)
    # one queue in arrival order: an arrival while requests wait joins behind them and changes nothing
    lazy = s.k == 1 and s.queue == ARRIVAL_ORDER
    c = w.c
    if s.routed:
        _serve_routed(s, rq, qs, w, gs, gl, L, pages, progress)
    while c[DONE_] < n:
        top = w.heap[0][0] if len(w.heap) else BIG
        nxt = c[NEXT_]
        if nxt < n and rq.arr_k[nxt] <= top and (len(w.idle) > 0 or len(w.heap) == 0
                                                 or not (lazy and qs.wait[0] > 0)):
            at = rq.arr_k[nxt]
            # arrivals matter now if they may start or end a span: they come to the head of a queue
            fresh = qs.wait[0] == 0 or (not lazy and _opens_queue(s, rq, qs, w, at))
            _advance(s, rq, qs, w, at)
            if fresh or len(w.idle) > 0:
                _route(s, rq, qs, w, gs, gl, L, pages, rq.arr[nxt], -1)
            continue
        at, gi, ver = heapq.heappop(w.heap)
        if ver != gs[gi].ver:
            continue
        if nxt < n and rq.arr_k[nxt] <= at:
            _advance(s, rq, qs, w, at)
        _finish_span(s, rq, w, gs[gi], gl, L, gi)
        _boundary(s, rq, qs, w, gs, gl, L, pages, gi)
        if qs.wait[0] > 0 and (len(w.idle) > 0 or c[ROOMY_] > 0 or c[CALM_] > 0):
            _route(s, rq, qs, w, gs, gl, L, pages, gs[gi].t, gi)
        progress[0] = c[DONE_]
        if progress[1]:             # the caller gave up on this run
            break
    return _log_columns(w.log), np.array([c[PREEMPTIONS_], c[KV_PEAK_], c[QUERIED_], c[HIT_]], np.int64), w.wasted[0]


@njit(cache=True)
def _serve_routed(s, rq, qs, w, gs, gl, L, pg, progress):
    """The event loop when each replica has its own queues: the router sends each arrival to a replica
    (:func:`_pick`), where it waits; a replica admits only from its queues. Events at one clock tick:
    arrivals first (each routed seeing those before it waiting), then the replicas they came to, then
    boundaries, each in replica order."""
    n, c = s.n, w.c
    woken = [0]
    woken.pop()
    while c[DONE_] < n:
        top = w.heap[0][0] if len(w.heap) else BIG
        moved = w.moves[0][0] if len(w.moves) else BIG
        i = c[NEXT_]
        if (i < n and rq.arr_k[i] <= min(top, moved)) or moved <= top:
            if i < n and rq.arr_k[i] <= moved:
                now, at = rq.arr[i], rq.arr_k[i]
                while i < n and rq.arr_k[i] == at:   # every arrival of this instant is there for the replicas
                    q = rq.bins[i]
                    p = qs.seen[q]
                    qs.seen[q] = p + 1
                    gi = _pick(s, rq, qs, gs, gl, L, pg, p, now, 0, s.prefill if s.prefill else s.gpus, i,
                               rq.draws[i, 0] if len(rq.draws) else 0, rq.draws[i, 1] if len(rq.draws) else 0)
                    if _enqueue(s, rq, qs, gi, p):
                        woken.append(gi)
                    i += 1
                c[NEXT_] = i
            else:      # KV moves done at this instant: each request joins a decode replica's queue
                at = moved
                while len(w.moves) and w.moves[0][0] == at:
                    _, p = heapq.heappop(w.moves)
                    r = rq.r[p]
                    r.xfer = r.prompt + r.gen      # its KV, computed on the prefill replica
                    r.gen += 1                     # ... which gave its first token
                    r.stop = r.output
                    now = r.first + r.move_s
                    m = c[MOVED_]
                    c[MOVED_] = m + 1
                    gi = _pick(s, rq, qs, gs, gl, L, pg, p, now, s.prefill, s.gpus, m,
                               rq.draws[m, 2] if len(rq.draws) else 0, rq.draws[m, 3] if len(rq.draws) else 0)
                    if _enqueue(s, rq, qs, gi, p):
                        woken.append(gi)
            if len(woken) > 1:
                woken.sort()
            last = -1
            for gi in woken:
                if gi != last and gs[gi].idle:   # an idle replica starts an iteration now
                    gs[gi].idle = False
                    gs[gi].t = now
                    _boundary(s, rq, qs, w, gs, gl, L, pg, gi)
                elif gi != last:
                    _wake(s, rq, qs, w, gs, gl, L, pg, now, gi)
                last = gi
            woken.clear()
            continue
        at, gi, ver = heapq.heappop(w.heap)
        if ver != gs[gi].ver:
            continue
        _finish_span(s, rq, w, gs[gi], gl, L, gi)
        _boundary(s, rq, qs, w, gs, gl, L, pg, gi)
        progress[0] = c[DONE_]
        if progress[1]:
            break


@njit(cache=True)
def _enqueue(s, rq, qs, gi, p):
    """Request ``p`` joins its queue on replica ``gi``; whether it is that queue's head now."""
    r = rq.r
    slot = gi * s.k + r[p].q_bin
    lane = qs.lane[slot]
    if s.queue == ARRIVAL_ORDER and (qs.lane_head[slot] == len(lane) or lane[-1] < p):
        lane.append(p)    # a first-come queue in arrival order: the lane's end
    else:
        heapq.heappush(qs.front[slot], (_queue_key(s, r, p), p))
    qs.wait[gi] += 1
    r[p].state = WAITING
    return _queue_head(qs, slot) == p


@njit(cache=True)
def _outstanding(qs, g, gi):
    """Requests replica ``gi`` (record ``g``) holds: waiting for it, or running (until the boundary where
    they finish)."""
    return qs.wait[gi] + (0 if g.idle else g.run)


@njit(cache=True)
def _pick(s, rq, qs, gs, gl, L, pg, p, now, lo, hi, turn, a, b):
    """The router: the replica of the pool [lo, hi) request ``p`` (queue position) goes to, from what a router
    knows at ``now``: each replica's waiting and running requests, its KV blocks in use, the prefixes it
    caches. ``turn``: the request's turn at this pool (arrival, or KV move, index); ``a``, ``b``: two
    distinct replicas of the pool drawn at random for it.
    round_robin: in turn; random: uniform; least_outstanding: vLLM 0.33's data-parallel balancer
    (fewest waiting + running, waiting weighing 6 x (KV use - 1/2) more above half KV use; ties to the
    first); power_of_two: of two distinct random replicas the one with fewer outstanding (ties: the first
    drawn); least_kv: most free KV blocks; prefix_affinity: the longest cached prefix of the request (as
    llm-d's prefix scorer; none without prefix keys or caching). The last two break ties by fewest
    outstanding, then the first."""
    if s.router == ROUND_ROBIN_ROUTER:
        return lo + turn % (hi - lo)
    if s.router == RANDOM_ROUTER:
        return a
    if s.router == POWER_OF_TWO:
        return b if _outstanding(qs, gs[b], b) < _outstanding(qs, gs[a], a) else a
    best, best_key, best_load = lo, 0.0, 0
    for gi in range(lo, hi):
        g = gs[gi]
        load = _outstanding(qs, g, gi)
        if s.router == LEAST_OUTSTANDING:
            key = float(load)
            if gi != lo and key >= best_key:
                continue     # the KV term only adds: it cannot come first
            held = qs.wait[gi]
            if held:
                use = _blocks_in_use(s, g, gl, L, gi, now) / (s.K + 1)   # vLLM's pool has K + 1 blocks
                if use > 0.5:
                    key += held * 6.0 * (use - 0.5)
        elif s.router == LEAST_KV:
            key = float(_blocks_in_use(s, g, gl, L, gi, now))
        else:     # PREFIX_AFFINITY: more cached blocks first
            key = 0.0
            if pg is not None and not rq.r[p].xfer:
                tokens = rq.r[p].prompt
                key = -float(lookup(pg.pool, s, pg.req, pg.chain, pg.names, _table(s, rq.r, pg, p), gi, p,
                                    tokens)[0])
        if gi == lo or key < best_key or (key == best_key and s.router != LEAST_OUTSTANDING and load < best_load):
            best, best_key, best_load = gi, key, load
    return best


@njit(cache=True)
def _blocks_in_use(s, g, gl, L, gi, now):
    """KV blocks replica ``gi`` holds at ``now``: at its span's start, plus the decodes' growth in the
    iterations started since."""
    if g.idle:
        return g.U
    soon, x = _next_boundary(g, L, now)
    if x <= 0:
        return g.U1
    B, T = s.B, g.span_T + 1   # _growth, on GPU gi's row in place
    full, rest = divmod(x, B)
    total = full * gl.H[gi].sum() if full else 0
    for j in range(T, T + rest):
        total += gl.H[gi, j % B]
    return g.U1 + total


@njit(cache=True)
def _wake(s, rq, qs, w, gs, gl, L, pg, now, gi):
    """A request came to the head of one of busy replica ``gi``'s queues at ``now`` (an idle one starts an
    iteration at once, in :func:`_serve_routed`): with room, it stops its span at its next boundary where
    it could admit; if its span was planned with nobody waiting, it stops where its controllers come due."""
    g, c = gs[gi], w.c
    admits = False
    if g.roomy and not (s.k == 1 and g.blocked == _queue_head(qs, gi * s.k)):
        soon, x = _next_boundary(g, L, now)
        if soon < g.span_E and _admits_at(s, rq, qs, g, gl, pg, gi, soon, x):
            _end_span(w, g, L, gi, soon)
            admits = True
    if g.calm:
        if not admits:
            soon, _ = _next_boundary(g, L, now)
            due = max(soon, g.span_T + max(1, s.window - g.span_since))
            if due < g.span_E:
                _end_span(w, g, L, gi, due)
        _calm(c, g, False)


@njit(cache=True)
def _admits_at(s, rq, qs, g, gl, pg, gi, soon, x):
    """Could GPU ``gi`` admit at boundary ``soon`` of its span (``x`` decode iterations after its first)?"""
    used = g.U1 + _growth(s, gl.H[gi], g.span_T + 1, x) + gl.H[gi, soon % s.B]
    return _admissible(s, rq, qs, g, gl.bbase[gi], g.n2 + len(gl.pref[gi]), s.K - s.watermark - used, pg, gi)


@njit(cache=True)
def _log_columns(log):
    """The span log by column, in one pass: its float fields, then its int fields (:data:`LOG_FLOATS`,
    :data:`LOG_INTS`), each row of the two arrays a column."""
    n = len(log)
    floats, ints = np.empty((2, n)), np.empty((12, n), np.int64)
    for i in range(n):
        e = log[i]
        floats[0, i], floats[1, i] = e[0], e[1]
        for j in literal_unroll((2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)):
            ints[j - 2, i] = e[j]
    return floats, ints


@njit(cache=True)
def _gpu_lists(s):
    G = s.gpus
    comp = [[(0, 0, 0)] for _ in range(G)]
    stack = [[0] for _ in range(G)]
    pref = [[(0, 0)] for _ in range(G)]
    mono_i = [[0] for _ in range(G)]
    mono_d = [[0.0] for _ in range(G)]
    for gi in range(G):
        comp[gi].pop()
        stack[gi].pop()
        pref[gi].pop()
        mono_i[gi].pop()
        mono_d[gi].pop()
    return GpuLists(np.zeros((G, s.B), np.int64), np.full((G, s.k), s.b_start, np.int64), comp, stack, pref,
                    mono_i, mono_d)


# ------------------------------------------------------------ arrivals and queues
@njit(cache=True)
def _advance(s, rq, qs, w, at):
    """Requests arriving up to clock tick ``at`` join their queues."""
    c = w.c
    g = c[NEXT_]
    if g >= s.n or rq.arr_k[g] > at:
        return
    new_g = bisect_right(rq.arr_k, g, s.n, at)
    if s.queue != ARRIVAL_ORDER:      # each arrival takes its place in its queue's heap
        for i in range(g, new_g):
            q = rq.bins[i]
            p = qs.arrived[q]
            heapq.heappush(qs.front[q], (_queue_key(s, rq.r, p), p))
            qs.arrived[q] = qs.head[q] = p + 1
    elif s.k == 1:
        qs.arrived[0] += new_g - g
    else:
        for i in range(g, new_g):
            qs.arrived[rq.bins[i]] += 1
    qs.wait[0] += new_g - g
    c[NEXT_] = new_g


@njit(cache=True)
def _release(s, rq, c, m, t):
    """Closed loop: ``m`` requests finished at time ``t``, so their clients send the next ``m`` arrivals
    waiting for one, each at the latest of its scheduled arrival, ``t`` and the send before it (the clients
    take requests in arrival order, as vLLM's benchmark semaphore does). A send at ``t`` comes after the
    boundary that finished the request: that GPU admits it at its next boundary, or at once if it went
    idle; boundaries at the same tick taken after this one see it."""
    n = s.n
    for _ in range(m):
        j = c[GATED_]
        if j >= n:
            return
        c[GATED_] = j + 1
        at = rq.arr[j]
        k = tick(at)
        if t > at:
            at = t
        k2 = tick(t)
        if k2 > k:
            k = k2
        if rq.arr[j - 1] > at:    # (float rounding of simultaneous finishes: sends stay in order)
            at = rq.arr[j - 1]
        if rq.arr_k[j - 1] > k:
            k = rq.arr_k[j - 1]
        rq.arr[j] = at
        rq.arr_k[j] = k
        rq.r[rq.pos[j]].q_arr = at


@njit(cache=True)
def _queue_key(s, r, p):
    """The queue policy: waiting requests are admitted by ascending (key, queue position), the position
    being arrival order within a queue. fcfs: arrival order (preempted requests, which arrived before
    any request not yet admitted, come first); priority (vLLM's): smallest priority value first."""
    if s.queue == PRIORITY_ORDER:
        return r[p].prio
    return 0


@njit(cache=True)
def _opens_queue(s, rq, qs, w, at):
    """Whether some request arriving at clock tick ``at`` would be its queue's head: it comes to a
    queue with nobody waiting, or ahead of the head in the queue order."""
    g = w.c[NEXT_]
    in_order = s.queue == ARRIVAL_ORDER   # then an arrival queues behind any head
    nxt = qs.arrived if in_order else qs.arrived.copy()   # the queue position of each queue's next arrival
    for i in range(g, bisect_right(rq.arr_k, g, s.n, at)):
        q = rq.bins[i]
        h = _queue_head(qs, q)
        if h == NONE:
            return True
        if not in_order:
            p = nxt[q]
            nxt[q] += 1
            if (_queue_key(s, rq.r, p), p) < (_queue_key(s, rq.r, h), h):
                return True
    return False


@njit(cache=True)
def _queue_head(qs, q):
    """The request queue ``q`` would admit next (the front's first, or the lane's if it arrived before), or
    NONE."""
    j = qs.lane_head[q]
    if j < len(qs.lane[q]):    # routed in arrival order (front: keys 0)
        p = qs.lane[q][j]
        return qs.front[q][0][1] if len(qs.front[q]) and qs.front[q][0][1] < p else p
    if len(qs.front[q]):
        return qs.front[q][0][1]
    h = qs.head[q]
    return h if h < qs.arrived[q] else NONE


@njit(cache=True)
def _choose(s, r, qs, rr, base):
    """(bin, request) the bin policy admits next among the bins not blocked of the queue slots from ``base``,
    or (-1, NONE) (``rr``: the round-robin policy's next bin)."""
    best_q, best_p, best_key = -1, NONE, 0.0
    k = s.k
    for q in range(k):
        if qs.blocked[q]:
            continue
        p = _queue_head(qs, base + q)
        if p == NONE:
            continue
        if s.policy == SHORT_FIRST:
            return q, p
        if s.policy == FCFS:
            key = r[p].q_arr
        elif s.policy == LONGEST:
            key = float(-_waiting(qs, base + q))
        else:
            key = float((q - rr) % k)
        if best_q < 0 or key < best_key:
            best_q, best_p, best_key = q, p, key
    return best_q, best_p


@njit(cache=True)
def _take(qs, slot, grp, p):
    """Request ``p``, the head of queue ``slot`` (of group ``grp``), leaves it."""
    fq = qs.front[slot]
    if len(fq) and fq[0][1] == p:
        heapq.heappop(fq)
    elif qs.lane_head[slot] < len(qs.lane[slot]):
        qs.lane_head[slot] += 1
    else:
        qs.head[slot] += 1
    qs.wait[grp] -= 1


@njit(cache=True)
def _waiting(qs, slot):
    """Requests waiting in queue ``slot``."""
    return len(qs.front[slot]) + qs.arrived[slot] - qs.head[slot] + len(qs.lane[slot]) - qs.lane_head[slot]


# ------------------------------------------------------------ the controllers
@njit(cache=True)
def _memory_cap(s, qs, q):
    """Algorithm 1's bound for queue ``q`` from its recent arrivals' moments (MemoryBound.cap)."""
    lo, hi = qs.off[q], qs.seen[q]
    if s.stats_window and hi - lo > s.stats_window:
        lo = hi - s.stats_window
    m = hi - lo
    mi = mo = vi = vo = 0.0
    if m > 0:
        sp, sp2, so, so2 = qs.sums[0], qs.sums[1], qs.sums[2], qs.sums[3]
        mi = (sp[hi] - sp[lo]) / m
        mo = (so[hi] - so[lo]) / m
        vi = (sp2[hi] - sp2[lo]) / m - mi * mi
        vo = (so2[hi] - so2[lo]) / m - mo * mo
    return memory_bound(s, mi, mo, vi, vo)


@njit(cache=True)
def memory_bound(s, mi, mo, vi, vo):
    """Algorithm 1 (MemoryBound.cap) from the means and variances of prompt and predicted lengths."""
    mu = mi + mo
    eta = s.eta
    if mu <= 0:
        b = s.b_max
    elif s.margin == CLT:
        ts = s.theta * math.sqrt(max(vi + vo, 0.0))
        x = (-ts + math.sqrt(ts * ts + 4.0 * mu * eta)) / (2.0 * mu)
        b = int(x * x)
        while (b + 1) * mu + ts * math.sqrt(b + 1) <= eta:
            b += 1
        while b > 0 and not b * mu + ts * math.sqrt(b) <= eta:
            b -= 1
    else:
        buffer = eta * (1.0 - s.mem_factor) if s.margin == FACTOR else 0.0
        b = int((eta - buffer) // mu)
    b = min(max(b, 0), s.b_max)
    return b if b >= 1 else 1


@njit(cache=True)
def _sla_update(s, g, running):
    """Algorithm 2 (SlaController.cap after one observation: the mean decode-step time ``ctl_step``
    and batch size ``ctl_size`` of the window): (b_SLA, branch)."""
    tau, b_bar = g.ctl_step, g.ctl_size
    if tau > s.d_sla + s.sla_eps:
        branch = BRANCH_OVER
        g.b_high = max(b_bar, g.b_low + s.alpha)
        g.b_low = max(g.b_low - s.delta, s.b_min)
    elif tau < s.d_sla - s.sla_eps:
        branch = BRANCH_UNDER
        g.b_low = min(b_bar, g.b_high - s.alpha)
        g.b_high = min(g.b_high + s.delta, s.b_max)
    else:
        branch = BRANCH_WITHIN
        half = s.alpha // 2
        g.b_high = min(b_bar + half, s.b_max)
        g.b_low = max(b_bar - half, s.b_min)
    b = int(math.floor((g.b_low + g.b_high) / 2.0))
    b = min(max(b, running), s.b_max)
    return (b if b >= s.b_min else s.b_min), branch


@njit(cache=True)
def _cap(s, g, bbase, q, running):
    """The most requests GPU ``g`` (Algorithm 1's bounds ``bbase``) may run when admitting from
    queue ``q`` (recording b_mem)."""
    if not s.dynamic:
        return s.batch_size
    b = bbase[q]
    b_mem = b if b > running else (running if running < s.b_max else s.b_max)
    g.bmem = b_mem
    return b_mem if b_mem < g.b_sla else g.b_sla


# ------------------------------------------------------------ routing
@njit(cache=True)
def _route(s, rq, qs, w, gs, gl, L, pg, now, exclude):
    """Idle GPUs take waiting requests now; of the busy GPUs with room, the one whose next boundary
    comes first stops there to admit (with several, the first whose load lets it: :func:`_fewest_elsewhere`;
    also where memory would keep the request out, so that the others learn it); calm GPUs whose
    controllers come due stop then."""
    c = w.c
    while qs.wait[0] > 0 and len(w.idle) > 0:
        gi = heapq.heappop(w.idle)
        gs[gi].idle = False
        gs[gi].t = now
        if s.gpus > 1:   # the idle GPUs share what waits: this one its part
            gs[gi].deal = ceil_div(qs.wait[0], len(w.idle) + 1)
        _boundary(s, rq, qs, w, gs, gl, L, pg, gi)
        gs[gi].deal = 0
    if qs.wait[0] == 0:
        return
    head = _queue_head(qs, 0) if s.k == 1 else NONE
    soonest = w.soonest          # (boundary tick, GPU, boundary, decode iterations before it)
    soonest.clear()
    for gi in range(s.gpus):
        gs[gi].soon = -1
    if c[ROOMY_] > 0:
        for gi in range(s.gpus):
            g = gs[gi]
            if not g.roomy or gi == exclude:
                continue
            if head != NONE and g.blocked == head:
                continue             # memory kept this very request out at its last boundary
            soon, x = _next_boundary(g, L, now)
            if soon < g.span_E:
                at = tick(_boundary_time(g, L, x))
                soonest.append((at, gi, soon, x))
                g.soon = at
    soonest.sort()
    admit_tick, admit_gi = BIG, -1
    balance = s.gpus > 1 and len(soonest) > 0
    least, least_gi, second = BIG, -1, BIG
    if balance:   # the two fewest loads of the GPUs that could take the head (with bins: any with room)
        for gi in range(s.gpus):
            g = gs[gi]
            if g.roomy and (head == NONE or g.kept != head):
                if g.run < least:
                    least, least_gi, second = g.run, gi, least
                elif g.run < second:
                    second = g.run
    for at, gi, soon, x in soonest:
        g = gs[gi]
        if balance and g.run > (second if gi == least_gi else least):
            continue
        if _admits_at(s, rq, qs, g, gl, pg, gi, soon, x) or (balance and head != NONE and g.kept != head):
            admit_tick, admit_gi = at, gi
            _end_span(w, g, L, gi, soon)
            break
    if c[CALM_] == 0:
        return
    for gi in range(s.gpus):
        g = gs[gi]
        if not g.calm:
            continue
        if admit_gi >= 0 and g.soon >= 0 and (g.soon, gi) > (admit_tick, admit_gi):
            continue                 # due no earlier than its next boundary, after the admission
        soon, _ = _next_boundary(g, L, now)
        due = max(soon, g.span_T + max(1, s.window - g.span_since))
        if due >= g.span_E:
            _calm(c, g, False)       # its span ends before its controllers are due anyway
        elif admit_gi < 0 or (tick(_boundary_time(g, L, due - g.span_T - 1)), gi) < (admit_tick, admit_gi):
            _end_span(w, g, L, gi, due)
            _calm(c, g, False)


@njit(cache=True)
def _fewest_elsewhere(s, gs, gi, p, busy):
    """Shared queue: the fewest requests another replica than ``gi`` runs that could take request ``p`` at
    its next boundary (0 if one idles, unless only ``busy`` ones count): one under its batch cap that (with
    one queue) memory has not kept ``p`` out of since it last freed blocks. A replica admits ``p`` only if
    it runs no more than that (one woken from idle beside others: also no more than its share, ``deal``):
    the queue goes to the least loaded replica with room, which keeps the batches, and so the TBT, even."""
    best = BIG
    for h in range(s.gpus):
        if h == gi:
            continue
        o = gs[h]
        if o.idle:
            if busy:
                continue
            return 0
        if o.roomy and o.kept != p and o.run < best:
            best = o.run
    return best


@njit(cache=True)
def _roomy(c, g, on):
    """Put GPU ``g`` in (or out of) the set of busy GPUs with room under their cap."""
    if g.roomy != on:
        g.roomy = on
        c[ROOMY_] += 1 if on else -1


@njit(cache=True)
def _calm(c, g, on):
    """Put GPU ``g`` in (or out of) the set of busy GPUs whose span was planned with nobody waiting."""
    if g.calm != on:
        g.calm = on
        c[CALM_] += 1 if on else -1


@njit(cache=True)
def _boundary_time(g, L, x):
    """When GPU ``g``'s span reaches the boundary after its first iteration and ``x`` more."""
    dec = decode_time(L, g.n2, g.c2 / g.n2, x) if x > 0 else 0.0
    return g.span_t + g.d_first + dec


@njit(cache=True)
def _admissible(s, rq, qs, g, bbase, running, free_blocks, pg, gi):
    """Could GPU ``gi`` (record ``g``) admit some queue's next request with this many running and blocks
    free? With prefix caching, blocks it would find cached on this GPU count as free (what is cached
    when the boundary comes may differ: where keys describe output tokens, any request may fit)."""
    base = g.grp * s.k
    for q in range(s.k):
        p = _queue_head(qs, base + q)
        if p == NONE:
            continue
        if running >= _cap(s, g, bbase, q, running):
            continue
        tokens = rq.r[p].prompt + rq.r[p].gen
        blocks = ceil_div(tokens, s.B)
        if pg is not None and not rq.r[p].xfer:
            if s.keyed_out:
                return True
            blocks -= lookup(pg.pool, s, pg.req, pg.chain, pg.names, _table(s, rq.r, pg, p), gi, p, tokens)[0]
        if blocks <= free_blocks:
            return True
    return False


@njit(cache=True)
def _next_boundary(g, L, now):
    """(index of GPU ``g``'s first boundary at or after ``now`` on the clock, decode iterations before it)."""
    first_end = g.span_t + g.d_first
    n2 = g.n2
    if tick(now) <= tick(first_end) or not n2:
        return g.span_T + 1, 0
    earliest = (tick(now) - 0.5) / TICKS   # the start of now's tick
    x = steps_until(L, n2, g.c2 / n2, g.span_E - g.span_T - 1, earliest - first_end)
    return g.span_T + 1 + x, x


@njit(cache=True)
def _end_span(w, g, L, gi, new_E):
    """Stop GPU ``gi``'s (record ``g``) running span at boundary ``new_E`` (earlier than planned)."""
    x = new_E - g.span_T - 1
    g.span_E = new_E
    g.ver += 1
    g.span_dec = decode_time(L, g.n2, g.c2 / g.n2, x) if x else 0.0
    heapq.heappush(w.heap, (tick(g.span_t + g.d_first + g.span_dec), gi, g.ver))


@njit(cache=True)
def _growth(s, H, T, x):
    """Blocks that decode growth (``H``: decoding requests by block phase) allocates in iterations
    T .. T+x-1."""
    if x <= 0:
        return 0
    B = s.B
    full, rest = divmod(x, B)
    total = full * H.sum() if full else 0
    for j in range(T, T + rest):
        total += H[j % B]
    return total


@njit(cache=True)
def _max_since(mi, md, it):
    """The longest iteration from index ``it`` on (0 if none), from a suffix-maximum stack of
    iteration indices ``mi`` and durations ``md``."""
    lo, hi = 0, len(mi)
    while lo < hi:                   # bisect_left
        mid = (lo + hi) // 2
        if mi[mid] < it:
            lo = mid + 1
        else:
            hi = mid
    return md[lo] if lo < len(md) else 0.0


# ------------------------------------------------------------ spans
@njit(cache=True)
def _finish_span(s, rq, w, g, gl, L, gi):
    """Account for the span of GPU ``gi`` (record ``g``) that just ended: time, tokens, blocks, gaps, shares,
    the log row."""
    H, mi, md = gl.H, gl.mono_i[gi], gl.mono_d[gi]
    T0, E = g.span_T, g.span_E
    x = E - T0 - 1
    n2, c2, U1, d_first = g.n2, g.c2, g.U1, g.d_first
    mean = c2 / n2 if n2 else 0.0
    if x > 0:
        dec = g.span_dec
        B = s.B
        if x < B:
            grown = 0
            for j in range(T0 + 1, E):
                grown += H[gi, j % B]
        else:
            grown = _growth(s, H[gi], T0 + 1, x)
        U_end = U1 + grown
    else:
        dec = 0.0
        U_end = U1
    duration = d_first + dec
    span_t = g.span_t
    g.t = span_t + duration
    g.T = E
    g.kv_int += U1 * d_first + (U1 + U_end) * 0.5 * dec
    cached = 0
    if s.paged:   # the blocks the span's decode growth takes (the boundary's took its first) come at the next
        g.owed = U_end - g.U - g.prepaid   # boundary, the cached ones they evict with them
        g.prepaid = 0
        cached = g.ncf - max(g.owed - g.nu, 0)
    g.U = U_end
    ctx = c2 + n2 * x
    g.ctx = ctx
    g.n = n2
    g.busy += duration
    n0, served0 = g.n0, g.served0
    g.n_int += served0 + n2 * x
    if s.dynamic:
        g.since_it += 1 + x
        g.since_dec += (1 if n0 else 0) + (x if n2 else 0)
        g.since_step += (d_first if n0 else 0.0) + dec
        g.since_n += n0 + n2 * x
    while len(md) and md[-1] <= d_first:
        md.pop()
        mi.pop()
    mi.append(T0)
    md.append(d_first)
    if x > 0:
        a = decode_step_time(L, n2, mean)
        longest = decode_step_time(L, n2, mean + x - 1) if x > 1 else a
        if a > longest:
            longest = a
        while len(md) and md[-1] <= longest:
            md.pop()
            mi.pop()
        mi.append(E - 1)
        md.append(longest)
        g.share += (d_first / served0 if served0 else 0.0) + dec / n2
    elif served0:
        g.share += d_first / served0
    ctx += g.held_ctx
    r, pref = rq.r, gl.pref[gi]
    for p, rem in pref:
        ctx += r[p].prompt + r[p].gen - rem
    if s.paged and ctx > U_end * s.B:   # requests sharing cached blocks hold their tokens once
        ctx = U_end * s.B
    if ctx > w.c[KV_PEAK_]:
        w.c[KV_PEAK_] = ctx
    w.log.append((span_t, duration, U_end, gi, n2 + len(pref) + g.held_n, 1 + x, ctx, g.bmem, g.b_sla,
                  g.span_cap, g.span_branch, g.span_pre, cached, g.span_wait))


@njit(cache=True)
def _boundary(s, rq, qs, w, gs, gl, L, pg, gi):
    """Between iterations: completions, the controllers, preemptions, prefill chunks, admissions; then
    plan the next span (or idle)."""
    # The steps are inlined and take only what they use: each list or array a step is handed
    # costs a reference count in and out, which with whole tuples took more time than the steps.
    g, r, c = gs[gi], rq.r, w.c
    H, comp, pref, bbase = gl.H[gi], gl.comp[gi], gl.pref[gi], gl.bbase[gi]
    g.blocked = NONE
    g.short = False
    g.xj = g.xctx = 0
    if pg is not None and g.owed:
        take_free(pg.pool, pg.names, g, gi, g.owed, s.K)
        g.owed = 0
    done = c[DONE_]
    _complete(s, r, c, g, H, comp, gl.mono_i[gi], gl.mono_d[gi], pg, gi, w.moves)
    if s.clients and c[DONE_] > done:
        _release(s, rq, c, c[DONE_] - done, g.t)
    branch = BRANCH_HOLD if s.dynamic else BRANCH_OFF
    if s.dynamic and qs.wait[g.grp] > 0 and g.since_it >= s.window:   # the controllers are due
        branch = _update_controllers(s, qs, g, bbase, len(pref))
    need, pre = H[g.T % s.B], 0
    if g.U + need > s.K:
        need, pre = _make_room(s, rq, qs, w, g, gl, pg, gi, need)
    budget = s.budget - g.n            # running requests first: a token a decode, then the prompts' chunks
    if len(pref) and g.U + need + _chunk_blocks(s, r, pref, budget) > s.K:
        need, pre = _make_room_for_chunks(s, rq, qs, w, g, gl, pg, gi, need, pre)
        budget = s.budget - g.n
    if c[DONE_] > done or pre:         # blocks freed: a request memory kept out may fit now
        g.kept = NONE
    if pg is not None:   # the decodes' new blocks come first (vLLM schedules running requests first)
        take_free(pg.pool, pg.names, g, gi, need, s.K)
        g.prepaid = need
    joiners = w.joiners          # requests whose prefill ends in this iteration
    joiners.clear()
    budget, seqs, tok = _continue_prefills(s, r, g, budget, pref, joiners, pg, gi)
    running = g.n + len(pref) + len(joiners)
    if qs.wait[g.grp] > 0 and budget > 0 and not pre:   # no admission in an iteration that preempted (vLLM)
        running, budget, seqs, tok = _admit(s, r, qs, c, gs, g, bbase, gl.stack[gi], pref, gi, need, running,
                                            budget, seqs, tok, joiners, pg)
    if running == 0:   # nothing to run: the GPU idles until a request comes
        g.ver += 1
        g.idle = True
        if not s.routed:
            heapq.heappush(w.idle, gi)
        _roomy(c, g, False)
        _calm(c, g, False)
        return
    _plan_span(s, r, c, w.heap, g, H, comp, pref, bbase, L, gi, need, pre, running, budget, seqs, tok, joiners,
               branch, qs.wait[g.grp])


@njit(cache=True, inline="always")
def _complete(s, r, c, g, H, comp, mono_i, mono_d, pg, gi, moves):
    """Requests whose last token came at the end of iteration T-1 leave GPU ``g`` (its decoding requests
    by block phase ``H``, heap of completions ``comp``, suffix maximum of iteration durations). A request
    of output ``o`` leaves with the KV of its prompt and ``o - 1`` tokens: its last token is never fed back."""
    E, B = g.T, s.B
    while len(comp) and comp[0][0] < E:
        _, ver, p = heapq.heappop(comp)
        if ver != r[p].ver or r[p].state != RUNNING:
            continue
        prompt, gen = r[p].prompt, r[p].gen
        steps = _steps_left(r, p)
        tokens = prompt + gen + steps
        if pg is not None:
            pg.leaving.append(p)
        else:
            g.U -= ceil_div(tokens, B)
        if steps:
            g.n -= 1
            g.ctx -= tokens
            H[(r[p].tdec - prompt - gen) % B] -= 1
            gap = _max_since(mono_i, mono_d, r[p].tdec)
            if gap > r[p].gap:
                r[p].gap = gap
        r[p].steps += steps
        if r[p].stop < r[p].output:   # prefilled on a prefill replica: its KV moves to a decode replica
            r[p].state = MOVING
            heapq.heappush(moves, (tick(r[p].first + r[p].move_s), p))
            continue
        r[p].finish = g.t
        r[p].state = DONE
        c[DONE_] += 1
    if pg is not None and len(pg.leaving):
        _leave(s, r, g, pg, gi)


@njit(cache=True)
def _leave(s, r, g, pg, gi):
    """Prefix caching: the requests done free their blocks in the order they run in (vLLM frees them
    so), and their tables go."""
    leaving = pg.leaving
    order = np.empty(len(leaving), np.int64)
    for j in range(len(leaving)):
        order[j] = pg.req[leaving[j], ADM]
    for j in np.argsort(order):
        p = leaving[j]
        g.U -= leave(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p,
                     r[p].prompt + r[p].gen + _steps_left(r, p))
        pg.tables[p] = np.empty(0, np.int64)
    leaving.clear()


@njit(cache=True)
def _update_controllers(s, qs, g, bbase, prefilling):
    """Algorithms 1 and 2 (into ``bbase`` and ``g``), due once a window of iterations has passed while
    requests wait; the span's branch code."""
    branch = BRANCH_HOLD
    for q in range(s.k):
        bbase[q] = _memory_cap(s, qs, q) if s.memory_control else s.b_max
    if s.adaptive and g.since_dec:
        g.ctl_step = g.since_step / g.since_dec
        g.ctl_size = g.since_n / g.since_dec
        g.b_sla, branch = _sla_update(s, g, g.n + prefilling)
    elif not s.adaptive:
        branch = BRANCH_OFF   # an update with Algorithm 2 switched off (or no TBT deadline)
    g.since_it = g.since_dec = g.since_n = 0
    g.since_step = 0.0
    return branch


@njit(cache=True)
def _make_room(s, rq, qs, w, g, gl, pg, gi, need):
    """This iteration's decode growth (``need`` blocks) must fit: preempt (:func:`_victim`) until it does.
    Returns (blocks the growth takes, requests preempted)."""
    pre = 0
    while g.U + need > s.K:
        need = _preempt_victim(s, rq, qs, w, g, gl, pg, gi, need)
        pre += 1
    return need, pre


@njit(cache=True)
def _preempt_victim(s, rq, qs, w, g, gl, pg, gi, need):
    """Preempt the policy's victim (:func:`_victim`) on GPU ``gi``; returns ``need``, the blocks this
    iteration's decode growth takes, less the victim's."""
    r, E = rq.r, g.T
    p = _victim(s, r, gl.stack[gi], gi)
    decoding = True
    for e in gl.pref[gi]:
        if e[0] == p:
            decoding = False
    if decoding and (r[p].tdec - r[p].prompt - r[p].gen) % s.B == E % s.B:
        need -= 1
    _preempt(s, rq, qs, w, g, gl, pg, gi, p, E, g.t, decoding)
    return need


@njit(cache=True)
def _chunk_blocks(s, r, pref, budget):
    """Blocks the chunks of prompts being prefilled take in this iteration, within ``budget`` tokens."""
    total = 0
    for p, rem in pref:
        if budget <= 0:
            break
        take = rem if rem <= budget else budget
        done = r[p].prompt + r[p].gen - rem
        total += ceil_div(done + take, s.B) - ceil_div(done, s.B)
        budget -= take
    return total


@njit(cache=True)
def _make_room_for_chunks(s, rq, qs, w, g, gl, pg, gi, need, pre):
    """After the decode growth (``need`` blocks), the chunks of prompts being prefilled must fit too:
    preempt (:func:`_victim`, vLLM's order: usually the prompt being chunked, the newest) until they do.
    Returns (blocks the growth takes, requests preempted so far)."""
    r, pref = rq.r, gl.pref[gi]
    while len(pref) and g.U + need + _chunk_blocks(s, r, pref, s.budget - g.n) > s.K:
        need = _preempt_victim(s, rq, qs, w, g, gl, pg, gi, need)
        pre += 1
    return need, pre


@njit(cache=True)
def _table(s, r, pg, p):
    """Request ``p``'s block table, made the first time it is needed (room for all its tokens)."""
    if len(pg.tables[p]) == 0:
        pg.tables[p] = np.empty(ceil_div(r[p].prompt + r[p].output, s.B) + 1, np.int64)
    return pg.tables[p]


@njit(cache=True)
def _steps_left(r, p):
    """Decode steps request ``p`` runs after the prefill that gives its token gen + 1 (a request of output
    ``o`` emits ``o`` tokens: one from its prefill, then a decode step each; output 0, a failed trace
    row, only its prefill)."""
    steps = r[p].stop - r[p].gen - 1
    return steps if steps > 0 else 0


@njit(cache=True)
def _victim(s, r, stack, gi):
    """The preemption policy: the running request of GPU ``gi`` a preemption takes, removed from
    ``stack`` (its running requests in admission order, with finished ones not yet dropped).
    newest: the latest admitted (vLLM's FCFS recompute victim); priority (vLLM's): the largest
    priority value, then the latest arrival, then the earliest admitted."""
    if s.preempt == NEWEST:
        while True:
            p = stack.pop()
            if r[p].state == RUNNING and r[p].gpu == gi:
                return p
    best, keep = -1, 0
    for j in range(len(stack)):
        p = stack[j]
        if r[p].state != RUNNING or r[p].gpu != gi:
            continue                 # finished: dropped
        stack[keep] = p
        if best < 0 or (r[p].prio, r[p].q_arr) > (r[stack[best]].prio, r[stack[best]].q_arr):
            best = keep
        keep += 1
    while len(stack) > keep:
        stack.pop()
    return stack.pop(best)


@njit(cache=True, inline="always")
def _continue_prefills(s, r, g, budget, pref, joiners, pg, gi):
    """Chunks of admitted prompts, oldest first, within the ``budget`` of tokens the decodes left, each
    allocating the blocks it fills on GPU ``g`` (they fit: :func:`_make_room_for_chunks`); requests whose
    prefill ends in this iteration join ``joiners``. Returns (budget left, sequences prefilled, their
    tokens)."""
    seqs = tok = 0
    if len(pref):
        keep = 0
        for j in range(len(pref)):
            p, rem = pref[j]
            if budget <= 0:
                pref[keep] = pref[j]
                keep += 1
                continue
            take = rem if rem <= budget else budget
            done = r[p].prompt + r[p].gen - rem
            new = ceil_div(done + take, s.B) - ceil_div(done, s.B)
            g.U += new
            if pg is not None:
                grow(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p, new, done + take)
            budget -= take
            seqs += 1
            tok += take
            if take == rem:
                joiners.append(p)
            else:
                pref[keep] = (p, rem - take)
                keep += 1
        while len(pref) > keep:
            pref.pop()
    return budget, seqs, tok


@njit(cache=True, inline="always")
def _admit(s, r, qs, c, gs, g, bbase, stack, pref, gi, need, running, budget, seqs, tok, joiners, pg):
    """Admissions to GPU ``gi`` from the queues (the bin policy picks the queue, the queue policy its
    head) under the caps and the blocks free after this iteration's growth (``need``) and, while some
    request runs, the watermark; admitted requests join ``stack`` and, while their prompt is prefilled,
    ``pref``. With prefix caching, a request's first blocks found cached on this GPU skip their prefill
    and take no new block (one no request holds leaves the free queue). A shared queue's replica stops
    where another could take the request and runs fewer (:func:`_fewest_elsewhere`). Returns (running,
    budget, seqs, tok) updated."""
    B = s.B
    balance = not s.routed and s.gpus > 1
    grp = g.grp
    base = grp * s.k
    if pg is not None and s.keyed_out and qs.wait[grp] > 0:
        _cache_decoded(s, r, g, pg, gi, stack, pref, joiners)
    room = s.K - need - g.U      # blocks free for admissions
    single = s.k == 1
    if not single:
        qs.blocked[:] = False
    ceiling = g.b_sla if s.dynamic else s.batch_size   # no queue's cap is above it
    while qs.wait[grp] > 0 and budget > 0 and running < ceiling:
        if single:
            q = 0
            p = _queue_head(qs, base)
            if p == NONE:
                break
        else:
            q, p = _choose(s, r, qs, qs.rr[grp], base)
            if p == NONE:
                break
        if balance and ((g.deal and running >= g.deal) or running > _fewest_elsewhere(s, gs, gi, p, g.deal > 0)):
            break
        tokens = r[p].prompt + r[p].gen
        hits = loose = 0   # blocks found cached; how many of them no request holds
        moved = r[p].xfer > 0   # its KV came from a prefill replica: blocks for it all, and it decodes now
        if pg is not None and not moved:
            hits, loose = lookup(pg.pool, s, pg.req, pg.chain, pg.names, _table(s, r, pg, p), gi, p, tokens)
        blocks = ceil_div(tokens, B) - hits + loose
        short = blocks > room - (s.watermark if running else 0)   # vLLM's watermark: only while some run
        if running >= _cap(s, g, bbase, q, running) or short:
            g.short = g.short or short
            if single:
                if short and not s.keyed_out:   # memory only shrinks until the next event: p stays out
                    g.blocked = g.kept = p
                break
            qs.blocked[q] = True
            continue
        _take(qs, base + q, grp, p)
        qs.rr[grp] = q + 1
        cached = hits * B
        todo = tokens - cached
        take = todo if todo <= budget else budget
        new = ceil_div(cached + take, B) - hits   # the whole prompt fits; its blocks come chunk by chunk (vLLM)
        if moved:   # one token of the budget: the decode step that feeds its first token
            g.xj += 1
            g.xctx += r[p].xfer
            r[p].xfer = 0
            r[p].steps += 1
            todo = take = 1
            new = blocks
        held = new + loose
        room -= held
        g.U += held
        if pg is not None and moved:
            admit(pg.pool, s, pg.req, pg.chain, pg.names, _table(s, r, pg, p), g, gi, p, 0, new, tokens)
        elif pg is not None:
            admit(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p, hits, new, cached + take)
            pg.req[p, HIT] += cached
            pg.req[p, ADM] = c[ADMITTED_]
            c[ADMITTED_] += 1
            c[QUERIED_] += tokens
            c[HIT_] += cached
        r[p].state = RUNNING
        r[p].gpu = gi
        r[p].share = g.share
        if r[p].start != r[p].start:  # NaN: first admission
            r[p].start = g.t
        stack.append(p)
        running += 1
        budget -= take
        if not moved:
            seqs += 1
            tok += take
        if take == todo:
            joiners.append(p)
        else:
            pref.append((p, todo - take))
    return running, budget, seqs, tok


@njit(cache=True)
def _cache_decoded(s, r, g, pg, gi, stack, pref, joiners):
    """Before admissions look the prefix cache up, cache the blocks GPU ``gi``'s decoding requests
    filled (their names are otherwise settled when they leave): needed only where keys describe
    output tokens, which another request may then find."""
    E = g.T
    for p in stack:
        if r[p].state != RUNNING or r[p].gpu != gi or r[p].tdec > E:
            continue
        busy = False
        for e in pref:
            busy = busy or e[0] == p
        for e in joiners:
            busy = busy or e == p
        if not busy:   # decoding: slots through this iteration's token
            tokens = r[p].prompt + r[p].gen + E - r[p].tdec + 1
            fill(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p, tokens)


@njit(cache=True, inline="always")
def _plan_span(s, r, c, heap, g, H, comp, pref, bbase, L, gi, need, pre, running, budget, seqs, tok, joiners,
               branch, nwait):
    """The next span of GPU ``gi`` (record ``g``; ``nwait`` requests wait for it): its first iteration (this
    iteration's prefill plus one decode step), then decode iterations until the next event on this GPU; its
    end goes on the event ``heap``."""
    E, t, B, K = g.T, g.t, s.B, s.K
    # ---- the first iteration: prefill of this iteration's prompt tokens plus one decode step
    n, ctx = g.n + g.xj, g.ctx + g.xctx   # the decodes, and the requests whose KV came from a prefill replica
    d_dec0 = decode_step_time(L, n, ctx / n) if n else 0.0
    d_first = (prefill_time(L, seqs, tok / seqs) if seqs else 0.0) + d_dec0
    first_end = t + d_first
    n2, c2 = g.n, g.ctx + g.n
    held_n = held_ctx = 0
    for p in joiners:   # the prefill over prompt + gen tokens gives token gen + 1 at first_end
        tokens = r[p].prompt + r[p].gen
        steps = _steps_left(r, p)
        heapq.heappush(comp, (E + steps, r[p].ver, p))   # its last decode iteration (E: none)
        r[p].tdec = E + 1
        if steps:
            H[(E + 1 - tokens) % B] += 1
            n2 += 1
            c2 += tokens
        else:
            held_n += 1
            held_ctx += tokens
        if r[p].first != r[p].first:
            r[p].first = first_end
        elif first_end - r[p].last > r[p].gap:   # re-admitted: the gap since its token before the preemption
            r[p].gap = first_end - r[p].last
        r[p].last = first_end
    g.held_n, g.held_ctx = held_n, held_ctx
    U1 = g.U + need
    # ---- the span lasts until the next event on this GPU
    while len(comp) and (comp[0][1] != r[comp[0][2]].ver or r[comp[0][2]].state != RUNNING):
        heapq.heappop(comp)
    E_next = comp[0][0] + 1 if len(comp) else E + 1
    waiting = nwait > 0
    g.run, g.span_wait = running, nwait
    # prefill continues, or admission may (where keys describe output tokens, a request memory kept out
    # may fit after any iteration: the blocks it would find cached grow as the decodes fill theirs)
    if len(pref) or (waiting and (pre or budget <= 0 or (s.keyed_out and g.short))):
        E_next = E + 1
    if s.dynamic:   # the controllers are due every window of iterations while requests wait
        if waiting:
            since = g.since_it
            due = E + (s.window - since if since < s.window - 1 else 1)
            if due < E_next:
                E_next = due
            _calm(c, g, False)
        else:
            _calm(c, g, True)
    if n2 and E_next > E + 1:
        free = K - U1
        if n2 * ((E_next - E - 1) // B + 1) > free:   # growth may run out of blocks within the span
            m = _overflow(s, H, E + 1, n2, free)
            if E + m < E_next:
                E_next = E + m
    x = E_next - E - 1
    g.span_T, g.span_E, g.span_t = E, E_next, t
    g.d_first, g.d_dec0, g.n2, g.c2, g.U1 = d_first, d_dec0, n2, c2, U1
    g.served0 = n + seqs
    g.n0 = n
    if not s.dynamic:
        cap = s.batch_size
    else:
        cap = _cap(s, g, bbase, 0, running)
        for q in range(1, s.k):
            cq = _cap(s, g, bbase, q, running)
            if cq > cap:
                cap = cq
    g.span_cap, g.span_branch, g.span_pre, g.span_since = cap, branch, pre, g.since_it
    g.ver += 1
    dec = decode_time(L, n2, c2 / n2, x) if x > 0 else 0.0
    g.span_dec = dec
    heapq.heappush(heap, (tick(first_end + dec), gi, g.ver))
    _roomy(c, g, running < cap)   # a request that comes might be admitted before the span ends


@njit(cache=True)
def _overflow(s, H, T, n, free):
    """Fewest iterations m from T on whose growth exceeds ``free`` blocks (boundary at T + m - 1)."""
    B = s.B
    cycles = free // n
    total = cycles * n
    j = cycles * B
    while True:
        total += H[(T + j) % B]
        j += 1
        if total > free:
            return j


@njit(cache=True)
def _preempt(s, rq, qs, w, g, gl, pg, gi, p, E, t, decoding):
    """Free ``p``'s blocks on GPU ``gi`` (record ``g``) and send it back to the front of its queue
    (recompute later)."""
    r = rq.r
    B = s.B
    prompt, gen = r[p].prompt, r[p].gen
    if decoding:
        done_here = E - r[p].tdec
        tokens = prompt + gen + done_here
        if pg is not None:
            g.U -= leave(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p, tokens)
        else:
            g.U -= ceil_div(tokens, B)
        g.n -= 1
        g.ctx -= tokens
        gl.H[gi, (r[p].tdec - prompt - gen) % B] -= 1
        if done_here:
            gap = _max_since(gl.mono_i[gi], gl.mono_d[gi], r[p].tdec)
            if gap > r[p].gap:
                r[p].gap = gap
        r[p].steps += done_here
        r[p].gen = gen + 1 + done_here     # its prefill's token and one a decode step
        if done_here:                      # its latest token came at the end of the last iteration
            r[p].last = t
    else:                                  # still prefilling: it holds the blocks of its computed tokens
        pref = gl.pref[gi]
        for j in range(len(pref)):
            if pref[j][0] == p:
                done = prompt + gen - pref[j][1]
                if pg is not None:
                    g.U -= leave(pg.pool, s, pg.req, pg.chain, pg.names, pg.tables[p], g, gi, p, done)
                else:
                    g.U -= ceil_div(done, B)
                pref.pop(j)
                break
    w.wasted[0] += g.share - r[p].share
    r[p].pre += 1
    w.c[PREEMPTIONS_] += 1
    r[p].state = WAITING
    r[p].ver += 1
    heapq.heappush(qs.front[g.grp * s.k + r[p].q_bin], (_queue_key(s, r, p), p))
    qs.wait[g.grp] += 1
