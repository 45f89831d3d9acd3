"""The iteration-level (continuous batching) engine, as vLLM 0.33's scheduler runs it.

Each GPU runs iterations. An iteration *decodes* one token for every running request
whose prefill is done and *prefills* the admitted requests' prompts within its token
budget ``max_num_batched_tokens``: the decodes take a token each, then prompts being
prefilled take what is left, oldest first, then admissions; a prompt that does not fit
is chunked over several iterations. A request with output length ``o`` emits ``o`` tokens, as
vLLM's ``max_tokens`` and BurstGPT's response tokens count them: the first at the end
of the iteration that completes its prefill, then one per decode iteration (``o - 1``;
none for ``o = 1``). It leaves on its own last token, freeing its KV blocks; its last
token is never fed back, so it holds the KV of its prompt and ``o - 1`` tokens at most.
Its mean time between tokens is over its ``o - 1`` gaps; a one-token request has none.

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
request holds ``ceil(tokens / block_size)`` blocks of the tokens computed so far: its
prompt's (plus, after a preemption, the tokens it had generated) as its chunks are
prefilled, then one block more each time a decode step crosses a block boundary. A chunk
that finds too few blocks free beside the decodes' growth preempts as the growth does. Admission (between
iterations, oldest first, at most the cap of running requests, within the token
budget) needs those blocks free after this iteration's decode growth, plus, while some
request runs, vLLM's watermark ``int(kv_watermark * (K + 1))`` (its pool counts a null block); an
iteration that preempted admits nobody (as vLLM). When the growth
finds no free block, the preemption policy's victim (``preempt_policy``: the newest running request
by default) is preempted: its blocks are freed and it goes back to the front of its queue, to be
prefilled again later over its prompt and every token it had generated, with blocks for all of
them (recompute, as vLLM does); that prefill's iteration gives its next token, as a first prefill
gives the first. Its share of the GPU time spent on it so far is counted as wasted.

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

Replicas (``tp`` GPUs each; "GPU" below) and routers (``router``, docs/cluster.md). Behind a router,
each replica has its own queues: an arrival is sent to one at once, from what a router knows then, and
waits there; with ``disaggregate``, prefill replicas hand each prefilled request's KV to a decode replica.
With ``shared_queue`` several GPUs share the queues (the ideal bound): an idle GPU starts an iteration as
soon as a request arrives; busy GPUs admit at their iteration boundaries, so a waiting
request goes to the busy GPU with room whose next boundary comes first. Events are
ordered on a 1 ns clock (times closer than that are simultaneous, whatever the
rounding of the sums that gave them): simultaneous boundaries are taken in GPU
order, and an arrival at a boundary's instant is there for it (and starts at its
arrival, not at the boundary's time a rounding error before it). The clock counts
in int64 and ends at 2^62 ns (146 years, :data:`workloads.limits.MAX_TIME_S`): a
run that would pass it stops with an error instead of wrapping around.

Closed loop (``max_concurrency`` C, as ``vllm bench serve --max-concurrency``): C clients take the
requests in arrival order, each sending its next one when its last one finishes, so request ``k`` is sent
at the latest of its scheduled arrival, the send of request ``k - 1`` and the ``(k - C + 1)``-th earliest
finish among requests ``0 .. k - 1``. The first C are sent at their arrival; each finish (a request done,
on a decode replica when disaggregated) sends the next waiting one, at the finish's instant but after
the boundary that finished it: that GPU admits it at its next boundary (at once if it went idle), and
boundaries of the same instant taken after it (GPU order) see it. Times a request's latency counts from
(queue delay, TTFT, end to end, the FCFS bin policy's age) are from its send, as vLLM's benchmark counts
them; the per-request ``arrival`` of the output is the send.

Speed. Between two events of a GPU (a completion, a preemption, an admission, a
controller update) its batch is fixed, so the iterations in between are one
*span*: their times are one closed-form sum of decode steps (context grows by
one token per sequence per iteration), their block growth a count over block
phases, and the next completion the top of a heap. Nothing is stepped token by
token. The engine's log has one row per span. The event loop is compiled with numba
(:mod:`core.continuous_kernel`, latency queries in :mod:`core.latency_kernel`): this module
prepares its inputs and turns its records into the engine's output. The first run after an install
compiles it (tens of seconds, :func:`warm_up`); numba keeps the result on disk for every later process.
:func:`compiling` tells, at no cost, whether a run here would compile it first; :func:`ensure_compiled`
compiles it apart from any run, saying so first (:data:`COMPILE_NOTICE`), to whoever
:func:`compile_watch` names.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batch_engine import EngineOutput
from .config import SimConfig
from .controllers import MemoryBound
from .latency import LatencyModel
from .memory import MemoryModel
from .queues import QueueStats, queue_layout
from .validity import beyond_horizon

POLL_S = 0.25  # how often a run with a progress callback reports
LOCK_FILE = "batchlab-compile.lock"  # in numba's cache folder (:func:`_compile_lock`)
COMPILE_NOTICE = "compiling the continuous engine: once after an install or an upgrade, usually 30-90 s"


def run_continuous_engine(cfg: SimConfig, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                          predicted: np.ndarray, bins: np.ndarray, latency: LatencyModel, eta: int,
                          progress: Callable[[float], None] | None = None,
                          priority: np.ndarray | None = None, prefix=None) -> EngineOutput:
    """Simulate the whole workload with continuous batching; return per-request times and the span log.
    ``priority``: each request's priority (smaller first; None: all 0), read by the priority policies;
    ``prefix``: the requests' prefix keys (:class:`workloads.workload.PrefixKeys`), read by prefix caching.

    The event loop is compiled (:mod:`core.continuous_kernel`; numba loads on the first continuous
    run). With ``progress``, it runs in a worker thread while this one reports the fraction done;
    an exception from ``progress`` stops the run and is raised here.
    """
    from .continuous_kernel import (
        LOG_FLOATS,
        LOG_INTS,
        TICKS,
        Pages,
        gpu_records,
        request_records,
        request_results,
        settings,
        simulate,
    )
    from .latency_kernel import pack, unpack
    from .metrics import mean_gap
    from .prefix_cache import K0, KCOV, REQUEST_FIELDS, UID, empty_ids, empty_tables, key_chains, new_names, new_pool

    n, k = len(arrival), cfg.bins
    order, off = queue_layout(bins, k)
    closed = cfg.max_concurrency is not None
    # closed loop: the kernel turns each arrival into its send time, in a copy of its own
    arrival = np.array(arrival, np.float64) if closed else _array(arrival, np.float64)
    mem = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps)
    if cfg.dynamic:
        stats = QueueStats(prompt[order], predicted[order], cfg.stats_window)
        sums = np.stack([stats.sp, stats.sp2, stats.so, stats.so2])
    else:
        sums = np.zeros((4, 1))
    packed = pack(latency, cfg.b_max if cfg.dynamic else cfg.batch_size)

    kb = prefix.block if prefix is not None else 0
    counts = prefix.counts() if prefix is not None else None
    keyed_out = bool(prefix is not None and np.any(counts * kb > prompt))
    s = settings(cfg, n, eta, mem.theta, kb, keyed_out)
    priority = np.zeros(n, np.int64) if priority is None else priority
    move_s = None
    if cfg.disaggregate is not None:   # a prefill replica's KV of a prompt moves at kv_transfer_gbps
        move_s = (np.asarray(prompt, np.float64) * MemoryModel.from_config(cfg).kv_bytes_per_token
                  / (cfg.kv_transfer_gbps * 1e9))[order]
    records = request_records(prompt[order], output[order], arrival[order], bins[order], priority[order], move_s)
    gpu_state = gpu_records(s)
    if s.paged:
        req = np.zeros((n, len(REQUEST_FIELDS)), np.int64)
        req[:, K0], req[:, KCOV], req[:, UID] = prefix.offsets[:-1][order], (counts * kb)[order], order
        pages = Pages(new_pool(s.gpus, s.K), new_names(s.gpus, s.K), empty_tables(n),
                      key_chains(_array(prefix.offsets, np.int64), _array(prefix.keys, np.int64)), empty_ids(), req)
    else:
        pages = None
    draws = router_draws(cfg, n)
    args = (s, arrival, _array(bins, np.int64), draws, records, gpu_state, _array(off, np.int64), sums, packed,
            pages)
    try:
        (floats, ints), tallies, wasted = _run(simulate, args, progress, n)
    except OverflowError:    # the kernel's clock ran out (continuous_kernel.tick)
        raise beyond_horizon(f"ran out of time serving requests that arrive until {arrival[-1]:.3g} s") from None
    unpack(packed, latency)

    gpu, start, first, finish, gap, pre, steps = request_results(records, order)
    start = _not_before(start, arrival, 1 / TICKS)
    first = _not_before(first, start, 1 / TICKS)
    finish = _not_before(finish, first, 1 / TICKS)
    gaps = np.asarray(output) - 1    # between a request's o tokens (none for a one-token request)
    tbt = mean_gap(finish, first, gaps)
    gap = np.where(gaps > 0, gap, np.nan)
    requests = {"gpu": gpu, "start": start, "first_token": first, "finish": finish, "tbt": tbt, "tbt_max": gap,
                "preemptions": pre, "decode_steps": steps}
    if closed:   # when each request was sent: its arrival as the server (and latency) sees it
        requests["arrival"] = arrival
    log = dict(zip(LOG_FLOATS, floats)) | dict(zip(LOG_INTS, ints))
    blocks = eta // cfg.block_size
    log["kv_util"] = log.pop("kv_blocks") / blocks   # blocks in use at each span's end
    log["kv_cached"] = log.pop("cached_blocks") / blocks   # ... and cached blocks no request holds
    preemptions, kv_peak, queried, found = tallies.tolist()
    counters = {"oom_events": 0, "evicted_requests": 0, "preemptions": preemptions, "wasted_gpu_s": float(wasted),
                "kv_peak_tokens": kv_peak, "kv_block_seconds": sum(gpu_state["kv_int"].tolist()),
                "kv_blocks": blocks, "busy_s": sum(gpu_state["busy"].tolist()),
                "iterations": int(log["iterations"].sum()), "running_iterations": int(gpu_state["n_int"].sum()),
                "prefix_queried_tokens": queried, "prefix_hit_tokens": found}
    return EngineOutput(requests=requests, log=log, counters=counters)


def router_draws(cfg: SimConfig, n: int) -> np.ndarray:
    """Two distinct random replicas (one if the pool has one) per arrival for the routers that draw (random
    takes the first, power_of_two both), from the simulation seed: an (n, 2) array; disaggregated, (n, 4):
    two of the prefill pool, then two of the decode pool for the n-th KV move. (0, 2) for the other routers."""
    if cfg.routing not in ("random", "power_of_two"):
        return np.zeros((0, 2), np.int64)
    rng = np.random.default_rng([cfg.seed, ROUTER_STREAM])
    pools = [(0, cfg.n_replicas)] if cfg.disaggregate is None else [(0, cfg.pd_split[0]), cfg.pd_split]
    cols = []
    for lo, size in pools:
        first = rng.integers(size, size=n)
        second = (first + 1 + rng.integers(max(size - 1, 1), size=n)) % size if size > 1 else first
        cols += [lo + first, lo + second]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.int64)


ROUTER_STREAM = 18   # the routers' random stream of the simulation seed (apart from bin confusion's)


def warm_up() -> None:
    """Compile the kernel, or load it from numba's cache on disk, with two tiny runs: without and with
    prefix caching (the kernel has one compiled form for each, every run uses one of them, so the next
    run starts at once)."""
    from batchlab.workloads.workload import PrefixKeys

    from .config import SimConfig
    from .latency import ParametricLatency
    from .memory import MemoryModel

    cfg = SimConfig(mode="continuous_dynamic", gpus=2)
    n = 16
    lengths = np.full(n, 64, dtype=np.int64)
    shared = PrefixKeys(16, np.arange(0, 2 * n + 1, 2), np.zeros(2 * n, dtype=np.int64))
    for prefix in (None, shared):
        run_continuous_engine(cfg, np.linspace(0.0, 1.0, n), lengths, lengths, lengths, np.zeros(n, dtype=np.int64),
                              ParametricLatency(), MemoryModel.from_config(cfg).eta, prefix=prefix)


@dataclass
class CompileWatch:
    """Who hears of a compile of the kernel (``notify``, :func:`ensure_compiled`) and the seconds spent
    compiling; ``announced``: the notice was given already (:func:`announce_if_uncompiled`)."""

    notify: Callable[[str], None] | None = None
    seconds: float = 0.0
    announced: bool = False


_watch: ContextVar[CompileWatch | None] = ContextVar("batchlab_compile_watch", default=None)


@contextlib.contextmanager
def compile_watch(notify: Callable[[str], None] | None = None) -> Iterator[CompileWatch]:
    """Within the block, :func:`ensure_compiled` called without ``notify`` (as ``core.simulate`` does before
    a continuous run) tells ``notify`` and adds its compile seconds to the watch it yields."""
    watch = CompileWatch(notify)
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


def compiling() -> bool:
    """Whether a continuous run in this process would compile the kernel first: it has no compiled form
    here and numba's cache on disk holds none this process can load (none yet, or one made from other
    source, by another numba or for another CPU)."""
    from .continuous_kernel import simulate

    return not simulate.signatures and not _cached(simulate)


def _cached(dispatcher) -> bool:
    """Whether numba's disk cache holds a compiled form of ``dispatcher`` that this process would load:
    an index entry for the current source stamp and numba version (``_load_index`` checks both) whose
    key matches this machine's code generator and the function's bytecode."""
    try:
        cache = dispatcher._cache
        codegen = dispatcher.targetctx.codegen()
        return any(cache._index_key(key[0], codegen) == key for key in cache._cache_file._load_index())
    except ModuleNotFoundError:   # an index written under the old top-level names (core.*), before
        drop_stale_indexes(dispatcher._cache.cache_path)   # batchlab.core: numba would fail on it
        return False
    except Exception:  # noqa: BLE001 - no cache (NullCache), an unreadable index, or numba's internals
        return False   # changed: say it compiles (at worst a notice for a load of a second)


def _compile_afresh_if_stale() -> None:
    """:func:`warm_up`; where numba's cache holds indexes that name modules gone (a checkout upgraded in
    place from the old top-level names), drop them and compile afresh."""
    try:
        warm_up()
    except ModuleNotFoundError:
        from .continuous_kernel import simulate

        if not drop_stale_indexes(simulate._cache.cache_path):
            raise
        warm_up()


KERNEL_MODULES = ("continuous_kernel", "latency_kernel")   # the modules whose functions numba caches


def drop_stale_indexes(folder: str) -> int:
    """Remove the kernels' cache files (index and data) from numba's cache ``folder``: an index that
    names modules this install no longer has makes numba fail instead of compiling. Returns how many
    files went."""
    gone = 0
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if name.split(".")[0] in KERNEL_MODULES and name.endswith((".nbi", ".nbc")):
            try:
                os.remove(os.path.join(folder, name))
                gone += 1
            except OSError:
                pass   # another process removed it, or the folder is read-only: numba then fails as before
    return gone


def never_compiled() -> bool:
    """True when no disk cache of the kernel exists where numba keeps it for these sources (next to
    them, or its user-wide folder when they are read-only): a fresh install. Decided from file names
    alone, without importing numba (about a second), so a command can say it compiles at once."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False          # numba's own layout there: left to :func:`compiling`
    pattern = "continuous_kernel.simulate-*.nbi"
    if any((Path(__file__).parent / "__pycache__").glob(pattern)):
        return False
    user_wide = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    return not (user_wide.is_dir() and any(user_wide.rglob(pattern)))


def announce_if_uncompiled(watch: CompileWatch) -> None:
    """Give ``watch`` the compile notice now if the kernel was never compiled here (:func:`never_compiled`);
    the compile itself then reports only when it is done."""
    if watch.notify is not None and not watch.announced and never_compiled():
        watch.notify(COMPILE_NOTICE)
        watch.announced = True


def compiled_line(seconds: float) -> str:
    return f"compiled the continuous engine in {seconds:.0f} s"


def ensure_compiled(notify: Callable[[str], None] | None = None) -> float:
    """Compile the kernel now if a run would (:func:`compiling`): ``notify(COMPILE_NOTICE)`` first, then
    :func:`warm_up` (one process of this machine at a time: another waits for it, then finds it compiled),
    then ``notify(compiled_line(seconds))``. ``notify`` defaults to the active
    :func:`compile_watch`'s, which also gets the seconds. Returns the seconds spent compiling (0.0: none
    was needed; a compiled form on disk is left to load with the next run, in about a second)."""
    watch = _watch.get()
    notify = notify if notify is not None else (watch.notify if watch is not None else None)
    if not compiling():
        return 0.0
    if notify is not None and not (watch is not None and watch.announced and notify is watch.notify):
        notify(COMPILE_NOTICE)
    t0 = time.perf_counter()
    with _compile_lock():
        if compiling():   # not compiled by another process while this one waited for the lock
            _compile_afresh_if_stale()
    seconds = time.perf_counter() - t0
    if watch is not None:
        watch.seconds += seconds
    if notify is not None:
        notify(compiled_line(seconds))
    return seconds


@contextlib.contextmanager
def _compile_lock() -> Iterator[None]:
    """Hold an exclusive lock on a file in numba's cache folder for the block (no lock where that file
    cannot be opened, or without ``fcntl``): processes started together compile the kernel once."""
    from .continuous_kernel import simulate

    try:
        import fcntl

        folder = simulate._cache.cache_path
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    except Exception:  # noqa: BLE001 - no cache folder to share (NullCache, read-only, another OS)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock


def _not_before(times: np.ndarray, floor: np.ndarray, tick_s: float) -> np.ndarray:
    """``times``, each moved up to ``floor`` where it precedes it by at most a clock tick (and float
    rounding): the two are simultaneous on the engine's clock, and the later event cannot come first."""
    tie = (times < floor) & (floor - times <= tick_s + 4 * np.spacing(floor))
    return np.where(tie, floor, times) if tie.any() else times


def _array(values, dtype) -> np.ndarray:
    """``values`` as a writable, C-ordered array of ``dtype`` (so every run has the kernel's one signature)."""
    return np.require(values, dtype=dtype, requirements=["C", "W"])


def _run(kernel, args: tuple, progress, n: int):
    """``kernel(*args, cell)``; with ``progress``, in a thread, reporting ``cell[0] / n`` meanwhile
    (``cell[1] = 1`` asks the kernel to stop)."""
    cell = np.zeros(2, dtype=np.int64)
    if progress is None:
        return kernel(*args, cell)
    box: dict = {}

    def work():
        try:
            box["out"] = kernel(*args, cell)
        except BaseException as exc:   # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=work, name="batchlab-continuous", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_S)
            progress(min(int(cell[0]) / max(n, 1), 1.0))
    except BaseException:
        cell[1] = 1
        worker.join()
        raise
    if "error" in box:
        raise box["error"]
    progress(1.0)
    return box["out"]
