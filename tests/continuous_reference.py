"""A deliberately naive continuous-batching simulator: every iteration of every GPU, one at a time.

It implements the semantics documented in :mod:`core.continuous_engine` with
plain per-request state and no closed forms, so that the event-driven engine
(which skips whole spans of iterations) can be checked against it request by
request. Multi-bin mode takes the bins the engine assigned (bin assignment is
tested on its own) and keeps one queue per bin; slow, for small workloads.

A boundary runs the kernel's steps under the kernel's names (``complete``,
``update_controllers``, ``make_room`` with ``victim``, ``continue_prefills``,
``admit``, ``plan_span``: here a span is one iteration), and the two policies
have their twins here: ``victim`` (preempt_policy) and ``queue_key`` (queue_policy). Routers
(``route``): each arrival is sent to a replica's queue from the replicas' state at that moment
(shared_queue: one queue for all, from which a replica takes a request only while no other replica that
could take it runs fewer: ``fewest_elsewhere``); the random draws are the engine's own (an input, not logic).
Times are ordered with the kernel's own :func:`core.continuous_kernel.tick`.
Closed loop (``max_concurrency`` C): the first C requests are sent at their arrival, the others wait
(an infinite arrival) until a finish frees a client (``release``, from ``complete``): then at the latest
of their arrival, that finish and the previous send; a request's ``arrival`` becomes its send.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from batchlab.core.continuous_kernel import tick
from batchlab.core.controllers import MemoryBound, SlaController
from batchlab.core.memory import MemoryModel
from batchlab.core.queues import QueueStats

WAITING, RUNNING, DONE = "waiting", "running", "done"


def victim(policy, running):
    """The preemption policy's twin: the request a preemption takes from ``running`` (admission order)."""
    if policy == "newest":
        return running[-1]
    return max(running, key=lambda r: (r.priority, r.arrival))   # the first of equals: earliest admitted


def queue_key(policy, r):
    """The queue policy's twin: waiting requests are admitted by ascending (key, arrival index)."""
    return r.priority if policy == "priority" else 0


def route(router, i, loads, used, waiting, blocks, draws):
    """The router's twin: the replica of arrival ``i`` from each replica's outstanding requests ``loads``,
    KV blocks ``used`` (of ``blocks``) and ``waiting`` requests (no prefix keys here: prefix_affinity
    ranks by load)."""
    n = len(loads)
    if router == "round_robin":
        return i % n
    if router == "random":
        return int(draws[i][0])
    if router == "power_of_two":
        a, b = (int(x) for x in draws[i])
        return b if loads[b] < loads[a] else a
    if router == "least_outstanding":
        def score(g):
            use = used[g] / (blocks + 1)
            return loads[g] + (waiting[g] * 6.0 * (use - 0.5) if waiting[g] and use > 0.5 else 0.0)
        return min(range(n), key=lambda g: (score(g), g))
    if router == "least_kv":
        return min(range(n), key=lambda g: (used[g], loads[g], g))
    return min(range(n), key=lambda g: (loads[g], g))    # prefix_affinity without keys


class Req:
    __slots__ = ("i", "arrival", "prompt", "output", "priority", "state", "gen", "blocks", "prefill_left", "first",
                 "finish", "start", "last_token", "gaps", "preemptions", "gpu", "share0", "steps", "replica")

    def __init__(self, i, arrival, prompt, output, priority=0):
        self.i, self.arrival, self.prompt, self.output, self.priority = i, arrival, prompt, output, priority
        self.state = WAITING       # once arrived: waiting in its queue
        self.gen = 0               # tokens generated (a prefill gives one, then a decode step each)
        self.blocks = 0
        self.prefill_left = 0
        self.first = self.finish = self.start = math.nan
        self.last_token = math.nan
        self.gaps: list[float] = []
        self.preemptions = 0
        self.gpu = -1
        self.share0 = 0.0          # its GPU's share count at its latest admission
        self.steps = 0             # decode steps run
        self.replica = None        # the replica whose queue it waits in (None: the shared queue)


def simulate_reference(cfg, workload, latency, bins=None, draws=None):
    """(per-request arrays, preemptions, wasted GPU-seconds); ``bins`` (one per request) is required
    when cfg.bins > 1; ``draws``: the random and power_of_two routers' draws. A GPU's *share* count grows by each iteration's duration over the requests it
    served (decoding or prefilling); a preempted request wastes the growth since its admission."""
    eta = MemoryModel.from_config(cfg).eta
    B = cfg.block_size
    K = eta // B
    watermark = int(cfg.kv_watermark * (K + 1))    # vLLM: of its K + 1 blocks (one null), while some run
    budget_total = cfg.token_budget
    dynamic = cfg.dynamic
    adaptive = dynamic and cfg.sla_control and cfg.d_sla_tbt is not None
    priority = workload.priority if workload.priority is not None else np.zeros(len(workload), np.int64)
    reqs = [Req(i, float(a), int(p), int(o), int(c)) for i, (a, p, o, c) in
            enumerate(zip(workload.arrival, workload.prompt, workload.output, priority))]
    n = len(reqs)
    k = cfg.bins
    bins = [0] * n if k == 1 else [int(b) for b in bins]
    members = [[r for r in reqs if bins[r.i] == q] for q in range(k)]   # each queue in arrival order
    order = [r.i for q in range(k) for r in members[q]]
    start_of = [sum(len(m) for m in members[:q]) for q in range(k)]     # a queue's first position
    stats = (QueueStats(workload.prompt[order], workload.predicted[order], cfg.stats_window)
             if dynamic else None)
    mem = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps) if dynamic else None
    routed = cfg.routing != "shared_queue"
    gpus = []
    for _ in range(cfg.n_replicas):
        ctl = (SlaController(cfg.d_sla_tbt, cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta, cfg.b_min, cfg.b_max, 1)
               if adaptive else None)
        b_sla = min((cfg.b_min + cfg.b_max) // 2, cfg.b_max) if adaptive else cfg.b_max
        # cap: its iteration's cap; kept: the request memory kept out since it last freed blocks; deal: its
        # share of the shared queue when woken beside other idle GPUs
        gpus.append({"running": [], "used": 0, "ctl": ctl, "b_sla": b_sla, "b": [None] * k, "share": 0.0,
                     "since_it": cfg.sla_window, "since_dec": 0, "since_step": 0.0, "since_n": 0, "busy": False,
                     "cap": 0, "kept": None, "deal": 0})
    next_arrival = 0                # requests [0, next_arrival) have arrived
    clients = cfg.max_concurrency
    arrivals = [tick(r.arrival) for r in reqs]
    gated = min(clients, n) if clients else n   # closed loop: requests [gated, n) wait for a client
    arrivals[gated:] = [math.inf] * (n - gated)
    done = 0
    events = []                     # (tick, 1, gpu, time) of each GPU's next boundary
    preemptions = 0
    wasted = 0.0
    rr = {}                         # round robin: per queue group (a replica, or 0: the shared queue), the
    group = (lambda g: g) if routed else (lambda g: 0)   # bin after the last one admitted from

    def arrived(q):
        return sum(1 for r in members[q] if r.i < next_arrival)

    def waiting_in(q, g):
        return [r for r in members[q] if r.i < next_arrival and r.state == WAITING and r.replica in (None, g)]

    def queue_waiting(q, g):
        return len(waiting_in(q, g))

    def waiting_count(g):
        return sum(queue_waiting(q, g) for q in range(k))

    def queue_head(q, g):
        return min(waiting_in(q, g), key=lambda r: (queue_key(cfg.queue_policy, r), r.i), default=None)

    def pick(blocked, g):
        """The queue the bin policy admits from next among unblocked queues with a head; None if none."""
        open_ = [q for q in range(k) if q not in blocked and queue_head(q, g) is not None]
        if not open_:
            return None
        key = {"fcfs": lambda q: queue_head(q, g).arrival, "longest": lambda q: -queue_waiting(q, g),
               "round_robin": lambda q: (q - rr.get(group(g), 0)) % k, "short_first": lambda q: q}[cfg.bin_policy]
        return min(open_, key=lambda q: (key(q), q))

    def release(t):
        """Closed loop: a request finished at ``t``; its client sends the next request waiting for one."""
        nonlocal gated
        j = gated
        if j >= n:
            return
        gated += 1
        arrivals[j] = max(arrivals[j - 1], tick(reqs[j].arrival), tick(t))
        reqs[j].arrival = max(reqs[j - 1].arrival, reqs[j].arrival, t)

    def complete(st, t):
        """Requests with every token generated leave (output 0, a failed trace row: after its prefill)."""
        nonlocal done
        running = st["running"]
        for r in [r for r in running if r.prefill_left == 0 and r.gen >= max(r.output, 1)]:
            st["kept"] = None              # blocks freed: a request memory kept out may fit now
            r.finish = t
            r.state = DONE
            running.remove(r)
            st["used"] -= r.blocks
            done += 1
            release(t)

    def update_controllers(g, st):
        if dynamic and waiting_count(g) and st["since_it"] >= cfg.sla_window:
            for q in range(k):
                lo = start_of[q]
                st["b"][q] = mem.cap(*stats.moments(lo, lo + arrived(q))) if cfg.memory_control else cfg.b_max
            if adaptive and st["since_dec"]:
                st["ctl"].observe(st["since_step"] / st["since_dec"], st["since_n"] / st["since_dec"])
                st["b_sla"], _ = st["ctl"].cap(len(st["running"]))
            st["since_it"] = st["since_dec"] = st["since_n"] = 0
            st["since_step"] = 0.0

    def grows(r):
        """Whether ``r`` decodes in this iteration into a new block."""
        return r.prefill_left == 0 and (r.prompt + r.gen - 1) % B == 0

    def preempt(st, r):
        nonlocal preemptions, wasted
        st["running"].remove(r)
        st["used"] -= r.blocks
        st["kept"] = None
        r.blocks = 0
        r.preemptions += 1
        preemptions += 1
        wasted += st["share"] - r.share0
        r.prefill_left = 0
        r.state = WAITING

    def make_room(st):
        """Preempt until this iteration's decode growth fits; returns (growth blocks, preemptions)."""
        running = st["running"]
        need = sum(1 for r in running if grows(r))
        preempted = 0
        while st["used"] + need > K:
            r = victim(cfg.preempt_policy, running)
            need -= grows(r)
            preempt(st, r)
            preempted += 1
        return need, preempted

    def chunk_blocks(st, budget):
        """Blocks this iteration's prompt chunks add (oldest first, within ``budget`` tokens)."""
        total = 0
        for r in st["running"]:
            if r.prefill_left > 0 and budget > 0:
                take = min(r.prefill_left, budget)
                done = r.prompt + r.gen - r.prefill_left
                total += -(-(done + take) // B) - r.blocks
                budget -= take
        return total

    def make_room_for_chunks(st, need, preempted):
        """Preempt until the prompt chunks fit beside the decode growth too (vLLM allocates a prompt's
        blocks chunk by chunk); returns (growth blocks, preemptions)."""
        running = st["running"]
        while st["used"] + need + chunk_blocks(st, budget_total - sum(r.prefill_left == 0 for r in running)) > K:
            r = victim(cfg.preempt_policy, running)
            need -= grows(r)
            preempt(st, r)
            preempted += 1
        return need, preempted

    def continue_prefills(st, decoding, joined):
        """Prompt chunks of admitted requests, oldest first, in the token budget the decodes left (a
        token each); returns (budget left, sequences, tokens)."""
        budget = budget_total - len(decoding)
        seqs = tok = 0
        for r in st["running"]:
            if r.prefill_left > 0 and budget > 0:
                take = min(r.prefill_left, budget)
                done = r.prompt + r.gen - r.prefill_left
                grown = -(-(done + take) // B) - r.blocks
                r.blocks += grown
                st["used"] += grown
                budget -= take
                seqs += 1
                tok += take
                r.prefill_left -= take
                if r.prefill_left == 0:
                    joined.append(r)
        return budget, seqs, tok

    def cap_of(st, q):
        if not dynamic:
            return cfg.batch_size
        return min(min(max(st["b"][q], len(st["running"])), cfg.b_max), st["b_sla"])

    def fewest_elsewhere(g, r, busy):
        """Shared queue: the fewest requests another replica runs that could take ``r`` (0 if one idles,
        unless only ``busy`` ones count): one under its cap that (with one queue) memory has not kept ``r``
        out of since it last freed blocks."""
        loads = [0 if not st["busy"] else len(st["running"]) for h, st in enumerate(gpus) if h != g
                 and (not st["busy"] and not busy or st["busy"] and len(st["running"]) < st["cap"]
                      and st["kept"] is not r)]
        return min(loads, default=math.inf)

    def wake(t):
        """Idle GPUs take what waits, in turn; beside other idle ones, a shared queue's GPU its share."""
        for g, st in enumerate(gpus):
            if not st["busy"] and waiting_count(g):
                if not routed and len(gpus) > 1:
                    st["deal"] = -(-waiting_count(g) // sum(not o["busy"] for o in gpus))
                boundary(g, t)
                st["deal"] = 0

    def admit(g, st, t, need, budget, seqs, tok, joined):
        running = st["running"]
        blocked = set()                    # queues whose head cannot be admitted here now
        while waiting_count(g) and budget > 0:
            q = pick(blocked, g)
            if q is None:
                break
            r = queue_head(q, g)
            deal = st["deal"]
            if not routed and len(gpus) > 1 and (deal and len(running) >= deal
                                                 or len(running) > fewest_elsewhere(g, r, deal > 0)):
                break
            blocks = -(-(r.prompt + r.gen) // B)
            short = st["used"] + blocks > K - need - (watermark if running else 0)
            if short and k == 1:
                st["kept"] = r
            if len(running) >= cap_of(st, q) or short:
                blocked.add(q)
                continue
            r.state = RUNNING
            rr[group(g)] = q + 1
            tokens = r.prompt + r.gen
            take = min(tokens, budget)
            r.blocks = -(-take // B)           # the whole prompt fits; its blocks come chunk by chunk
            st["used"] += r.blocks
            r.gpu = g
            r.share0 = st["share"]
            if math.isnan(r.start):
                r.start = t
            running.append(r)
            budget -= take
            seqs += 1
            tok += take
            r.prefill_left = tokens - take
            if r.prefill_left == 0:
                joined.append(r)
        return seqs, tok

    def plan_span(g, st, t, decoding, seqs, tok, joined):
        """Run the iteration (a span of one here) and put its end on the event heap."""
        d_pre = latency.prefill_time(seqs, tok / seqs) if seqs else 0.0
        ctx = sum(r.prompt + r.gen - 1 for r in decoding)   # KV before the step: the last token is fed now
        d_dec = latency.decode_step_time(len(decoding), ctx / len(decoding)) if decoding else 0.0
        end = t + d_pre + d_dec
        st["share"] += (d_pre + d_dec) / (len(decoding) + seqs)
        for r in decoding:
            if (r.prompt + r.gen - 1) % B == 0:
                r.blocks += 1
                st["used"] += 1
            r.gen += 1
            r.steps += 1
            r.gaps.append(end - r.last_token)
            r.last_token = end
        for r in joined:                  # the prefill gives a token: the first, or the next after a preemption
            if math.isnan(r.first):
                r.first = end
            else:
                r.gaps.append(end - r.last_token)
            r.gen += 1
            r.last_token = end
        assert st["used"] <= K
        st["since_it"] += 1
        if decoding:
            st["since_dec"] += 1
            st["since_step"] += d_pre + d_dec
            st["since_n"] += len(decoding)
        st["busy"] = True
        st["cap"] = max(cap_of(st, q) for q in range(k))
        heapq.heappush(events, (tick(end), 1, g, end))

    def boundary(g, t):
        st = gpus[g]
        complete(st, t)
        update_controllers(g, st)
        need, preempted = make_room(st)
        need, preempted = make_room_for_chunks(st, need, preempted)
        decoding = [r for r in st["running"] if r.prefill_left == 0]
        joined = []
        budget, seqs, tok = continue_prefills(st, decoding, joined)
        if not preempted:                  # an iteration that preempted admits nobody
            seqs, tok = admit(g, st, t, need, budget, seqs, tok, joined)
        if not st["running"]:
            st["busy"] = False
            return
        plan_span(g, st, t, decoding, seqs, tok, joined)

    while done < n:
        t_next = events[0][0] if events else math.inf
        if next_arrival < n and arrivals[next_arrival] <= t_next:
            at = arrivals[next_arrival]
            t = reqs[next_arrival].arrival
            if routed:                    # one arrival at a time: the router sees the previous ones waiting
                while next_arrival < n and arrivals[next_arrival] == at:
                    r = reqs[next_arrival]
                    loads = [waiting_count(g) + len(st["running"]) for g, st in enumerate(gpus)]
                    waits = [waiting_count(g) for g in range(len(gpus))]
                    r.replica = route(cfg.routing, next_arrival, loads, [st["used"] for st in gpus], waits, K, draws)
                    next_arrival += 1
                wake(t)
                continue
            while next_arrival < n and arrivals[next_arrival] <= at:
                next_arrival += 1
            wake(t)
            continue
        at, _, g, t = heapq.heappop(events)
        while not routed and next_arrival < n and arrivals[next_arrival] <= at:
            next_arrival += 1
        boundary(g, t)
        wake(t)                           # an idle GPU takes what waits at once
    out = {
        "start": np.array([r.start for r in reqs]),
        "first_token": np.array([r.first for r in reqs]),
        "finish": np.array([r.finish for r in reqs]),
        "gpu": np.array([r.gpu for r in reqs]),
        "preemptions": np.array([r.preemptions for r in reqs]),
        "tbt_max": np.array([max(r.gaps) if r.gaps else math.nan for r in reqs]),
        "tbt": np.array([float(np.mean(r.gaps)) if r.gaps else math.nan for r in reqs]),
        "decode_steps": np.array([r.steps for r in reqs]),
        "arrival": np.array([r.arrival for r in reqs]),   # the sends (closed loop), else the arrivals
    }
    return out, preemptions, wasted
