"""``simulate(config, workload) -> RunResult``: the Python entry point of the simulator."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from batchlab.workloads.workload import Workload

from . import metrics
from .batch_engine import run_batch_engine
from .bins import assign_bins, cached_edges
from .config import ConfigError, SimConfig
from .continuous_engine import ensure_compiled, run_continuous_engine
from .identity import SIM_VERSION, run_identity
from .latency import LatencyModel, build_latency_model
from .memory import MemoryModel
from .request_classes import check_covered, parse_classes, request_priorities
from .result import RunResult
from .slo_report import assess
from .validity import check_result, check_workload


def servable(config: SimConfig, workload: Workload, eta: int) -> np.ndarray:
    """Which requests one GPU can ever serve; a server rejects the others when they arrive.

    A request needs its prompt plus all its output but the last token in KV memory (the
    last token is never fed back; in whole blocks for the continuous modes, whose
    watermark binds only while some request runs: an idle GPU admits anything that fits).
    A rejected request is never served: it counts against every enabled deadline.
    """
    need = kv_need(workload)
    if not config.continuous:
        return need <= eta
    return -(-need // config.block_size) <= eta // config.block_size


def kv_need(workload: Workload) -> np.ndarray:
    """The KV tokens each request holds at its end: its prompt and ``o - 1`` tokens of its ``o``."""
    return workload.prompt + np.maximum(workload.output - 1, 0)


def check_settings(config: SimConfig, workload: Workload, served: np.ndarray, eta: int) -> None:
    """Refuse settings under which nothing could be simulated (one line naming the setting)."""
    if not served.any():
        need = int(kv_need(workload).min())
        raise ConfigError("gpu_mem_gb", f"no request fits on one GPU: the smallest needs {need} KV tokens "
                                        f"but the GPU holds {eta} (raise gpu_mem_gb or lower weights_gb)")
    if not config.continuous and config.kv_reserve == "max_new_tokens":
        longer = np.flatnonzero(workload.output > config.max_new_tokens)
        if len(longer):
            i = int(longer[0])
            raise ConfigError("max_new_tokens", f"{len(longer)} request(s) generate more: request {i} "
                                                f"generates {int(workload.output[i])} tokens, above "
                                                f"{config.max_new_tokens}")


def simulate(config: SimConfig, workload: Workload, grid=None,
             progress: Callable[[float], None] | None = None,
             latency: LatencyModel | None = None) -> RunResult:
    """Run ``workload`` under ``config``; deterministic for a given seed.

    ``simulate`` picks the engine from the mode: run-to-completion batches
    (:mod:`core.batch_engine`) or continuous batching (:mod:`core.continuous_engine`).
    A workload the engines cannot represent is refused before the run, and a result
    that cannot be (:func:`core.validity.check_result`) is never returned. A continuous run that
    finds the engine not compiled yet compiles it first (:func:`core.continuous_engine.ensure_compiled`,
    telling its active watch); ``meta["wall_s"]`` leaves that compile out.
    """
    wall = time.perf_counter()
    check_workload(workload)
    latency = latency or build_latency_model(config, grid)
    eta = MemoryModel.from_config(config).eta
    served = servable(config, workload, eta)
    check_settings(config, workload, served, eta)
    if config.classes:   # every priority in the workload needs a class: refused before the run, not after
        check_covered(parse_classes(config.classes), request_priorities(workload.priority, len(workload)))
    compile_s = ensure_compiled() if config.continuous else 0.0  # apart from the run: not in its wall_s
    k = config.bins
    if k > 1:
        edges = cached_edges(workload, k)
        rng = np.random.default_rng([config.seed, 0xB1])
        bins = assign_bins(workload.predicted, edges, workload.confusion_p, rng)
    else:
        edges = np.array([workload.predicted.min(), workload.predicted.max()], dtype=np.float64)
        bins = np.zeros(len(workload), dtype=np.int64)

    every = bool(served.all())
    pick = (lambda a: a) if every else (lambda a: a[served])
    arrival = pick(workload.arrival)
    engine = run_continuous_engine if config.continuous else run_batch_engine
    given = {}
    if config.continuous and workload.priority is not None:
        given["priority"] = pick(workload.priority)
    if config.continuous and workload.prefix is not None:
        given["prefix"] = workload.prefix if every else workload.prefix.take(np.flatnonzero(served))
    out = engine(config, arrival, pick(workload.prompt), pick(workload.output), pick(workload.predicted),
                 pick(bins), latency, eta, progress, **given)
    log = out.log
    sent = None
    if config.continuous:
        times = dict(out.requests)
        sent = times.pop("arrival", None)   # closed loop: when each request was sent (core.continuous_engine)
        times = metrics.with_delays(times, arrival if sent is None else sent)
    else:
        complete_batch_log(log, latency)
        times = metrics.request_times(out.requests["batch"], log, arrival, pick(workload.output))
        times["preemptions"] = out.requests["preemptions"]
    req = {"arrival": workload.arrival, "prompt": workload.prompt, "output": workload.output,
           "predicted": workload.predicted, "bin": bins}
    if sent is not None:   # a rejected request is refused when it arrives: it takes no client
        req["arrival"] = np.array(workload.arrival, dtype=np.float64)
        req["arrival"][served] = sent
    req.update(times if every else metrics.expand_rejected(times, served))
    summary = metrics.summarize(config, req, log, edges, eta, out.counters)
    check_result(req, log, summary)
    summary.update(assess(config, req, workload.priority))   # percentile SLOs, request classes (if any)
    h = run_identity(config, workload, latency)
    summary["config_hash"] = h
    meta = {"run_hash": h, "sim_version": SIM_VERSION, "workload": workload.identity,
            "latency": latency.identity, "latency_notes": latency.run_notes(),
            "wall_s": time.perf_counter() - wall - compile_s}
    summary["latency_notes"] = meta["latency_notes"]
    summary["latency_model"] = latency_label(latency.identity)
    return RunResult(config, req, log, edges, summary, meta)


def complete_batch_log(log: dict, latency: LatencyModel) -> None:
    """Add the columns every engine's log has (duration, kv_tokens) and each batch's longest step."""
    log["duration"] = log["prefill"] + log["decode"]
    log["kv_tokens"] = log["size"] * (log["max_prompt"] + log["steps"])
    ran = log["steps"] > 0
    first = latency.decode_step_times(log["size"], log["max_prompt"].astype(np.float64))
    last = latency.decode_step_times(log["size"], (log["max_prompt"] + log["steps"] - 1).astype(np.float64))
    log["step_max"] = np.where(ran, np.maximum(first, last), 0.0)


def latency_label(identity: dict) -> str:
    """A short name of the latency model, for run headers."""
    if identity.get("kind") == "grid":
        return f"grid {identity.get('name')}"
    if identity.get("kind") == "roofline":
        from .roofline import estimate_text

        return estimate_text(identity.get("model"), identity.get("gpu"), identity.get("tp"))
    return (f"parametric (decode {identity['decode_base'] * 1e3:g} ms + {identity['decode_per_seq'] * 1e3:g} ms/seq"
            f" + {identity['decode_per_ctx_token'] * 1e6:g} us/ctx-token; prefill "
            f"{identity['prefill_base'] * 1e3:g} ms + {identity['prefill_per_token'] * 1e6:g} us/token)")
