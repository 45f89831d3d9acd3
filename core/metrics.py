"""Metrics of a run (docs/semantics.md#metrics), computed with numpy over whole arrays; one definition for both engines.

Per request: queueing delay (arrival -> first admission), TTFT (arrival -> first
token, the end of its prefill; queueing included), TBT (its mean gap between
tokens; ``tbt_max`` its largest) and end-to-end latency (arrival -> last token).
A request of ``o`` tokens has ``o - 1`` gaps: one of a single token (or none) has
no TBT, NaN in both engines' ``tbt`` and ``tbt_max``, and is left out of every
TBT mean, percentile and violation rate (it cannot miss the TBT deadline).
A request violates the SLA when it misses any enabled deadline; the TBT deadline
applies to the per-request mean, or with ``tbt_sla=max`` to the largest gap. A
rejected request (never served, NaN times) misses every enabled deadline.
Utilisation is busy GPU time over GPUs x the whole horizon (first arrival ->
last completion), never over the last busy moment.

The engine's log has one row per batch (batch-level) or per span of iterations
(continuous); both carry ``start``, ``duration``, ``gpu``, ``size``,
``kv_tokens`` and the controller trace (``b_mem``, ``b_sla``, ``b_cap``,
``branch``). Continuous rows also carry ``iterations``, the weight of their
``size`` in averages over iterations.
"""
from __future__ import annotations

import numpy as np

from .config import SimConfig
from .controllers import BRANCH_HOLD, BRANCH_NAMES

PCTS = (50, 95, 99)
SERIES_POINTS = 200


def request_times(batch_id: np.ndarray, log: dict, arrival: np.ndarray,
                  output: np.ndarray) -> dict[str, np.ndarray]:
    """Per-request times of the batch-level engine from each request's completing batch."""
    return derive_request_arrays(batch_id, batch_id, log, arrival, output)


def derive_request_arrays(batch_id: np.ndarray, row: np.ndarray, log: dict,
                          arrival: np.ndarray, output: np.ndarray) -> dict[str, np.ndarray]:
    """Per-request times from each request's batch: ``row`` indexes ``log`` (usually = batch_id).

    Every member's first token ends the batch's prefill and all finish at its end. Its gaps
    between tokens are its batch's decode steps: ``tbt`` is the batch's mean decode-step time
    and ``tbt_max`` its longest step, for a request of two or more tokens (NaN otherwise: a
    batch whose members all emit one token runs no decode step).
    """
    served = row >= 0            # a rejected request (batch -1) has no times
    if not served.all():
        times = derive_request_arrays(batch_id[served], row[served], log, arrival[served], output[served])
        return expand_rejected(times, served)
    start = log["start"][row]
    first_token = start + log["prefill"][row]
    decode = log["decode"][row]
    gaps = output > 1            # its batch then ran at least o - 1 >= 1 decode steps
    return with_delays({
        "batch": batch_id,
        "gpu": log["gpu"][row],
        "start": start,
        "first_token": first_token,
        "finish": first_token + decode,
        "tbt": np.where(gaps, decode / np.maximum(log["steps"][row], 1), np.nan),
        "tbt_max": np.where(gaps, log["step_max"][row], np.nan),
    }, arrival)


def mean_gap(finish: np.ndarray, first_token: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Mean time between tokens of requests with ``gaps`` gaps (``o - 1`` for ``o`` tokens) from
    first to last token; NaN where there is no gap (a one-token or rejected request)."""
    with np.errstate(invalid="ignore"):
        return np.where(gaps > 0, (finish - first_token) / np.maximum(gaps, 1), np.nan)


def with_delays(times: dict, arrival: np.ndarray) -> dict[str, np.ndarray]:
    """Add queue_delay, ttft and e2e (seconds since arrival) to per-request times."""
    times["queue_delay"] = times["start"] - arrival
    times["ttft"] = times["first_token"] - arrival
    times["e2e"] = times["finish"] - arrival
    return times


def expand_rejected(times: dict, served: np.ndarray) -> dict[str, np.ndarray]:
    """Per-request arrays for all requests from those of the served ones: a rejected request has
    no times (NaN), no GPU or batch (-1) and no preemptions (0)."""
    n = len(served)
    out = {}
    for key, values in times.items():
        fill = np.nan if values.dtype.kind == "f" else (0 if key in ("preemptions", "decode_steps") else -1)
        full = np.full(n, fill, dtype=values.dtype)
        full[served] = values
        out[key] = full
    return out


def tbt_for_sla(cfg: SimConfig, req: dict) -> np.ndarray:
    return req["tbt_max"] if cfg.tbt_sla == "max" else req["tbt"]


def violations(cfg: SimConfig, req: dict) -> dict[str, np.ndarray | None]:
    """Boolean violation array per enabled deadline (None when disabled)."""
    return deadline_violations(req, cfg.tbt_sla, cfg.d_sla_ttft, cfg.d_sla_tbt, cfg.d_sla_e2e)


def deadline_violations(req: dict, tbt_sla: str, ttft: float | None, tbt: float | None,
                        e2e: float | None) -> dict[str, np.ndarray | None]:
    """:func:`violations` under the given deadlines (a request class's, core.request_classes)."""
    rejected = np.isnan(req["finish"])

    def miss(values: np.ndarray, deadline: float | None):   # a rejected request (NaN) misses every deadline
        return None if deadline is None else ~(values <= deadline)

    tbt_miss = None
    if tbt is not None:   # a served request without a gap (NaN) cannot miss it
        tbt_miss = ((req["tbt_max"] if tbt_sla == "max" else req["tbt"]) > tbt) | rejected
    return {"ttft": miss(req["ttft"], ttft), "tbt": tbt_miss, "e2e": miss(req["e2e"], e2e)}


def has_tbt(req: dict) -> np.ndarray:
    """The requests the TBT deadline applies to: those with a gap between tokens, and the rejected."""
    return ~np.isnan(req["tbt"]) | np.isnan(req["finish"])


def _nan_stat(values: np.ndarray, stat) -> float | None:
    """``stat`` of the non-NaN values (requests with a TBT); None when there are none."""
    values = values[~np.isnan(values)]
    return float(stat(values)) if len(values) else None


def _attainment(viol: dict, n: int, mask: np.ndarray | None = None) -> float | None:
    """Share of requests meeting every enabled deadline; None when no deadline is set."""
    if all(v is None for v in viol.values()):
        return None
    return float(1.0 - _any_violation(viol, n, mask).mean())


def _any_violation(viol: dict, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    anyv = np.zeros(n, dtype=bool) if mask is None else np.zeros(int(mask.sum()), dtype=bool)
    for v in viol.values():
        if v is not None:
            anyv |= v if mask is None else v[mask]
    return anyv


def _rate(v: np.ndarray | None, mask: np.ndarray | None = None) -> float | None:
    if v is None:
        return None
    v = v if mask is None else v[mask]
    return float(v.mean()) if len(v) else None


def _weights(log: dict) -> np.ndarray:
    """How much each log row counts in averages of batch size: 1 per batch, or its iterations."""
    return log["iterations"] if "iterations" in log else np.ones(len(log["start"]), dtype=np.int64)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    o = np.argsort(values, kind="stable")
    c = np.cumsum(weights[o])
    return float(values[o][np.searchsorted(c, 0.5 * c[-1])])


def summarize(cfg: SimConfig, req: dict, log: dict, edges: np.ndarray, eta: int, counters: dict) -> dict:
    """The run's summary: one flat JSON-able dict plus ``bins``, a list of per-bin dicts."""
    n = len(req["arrival"])
    done = np.isfinite(req["finish"])        # rejected requests (never served) have no times
    served = {k: req[k][done] for k in ("e2e", "ttft", "queue_delay", "tbt", "tbt_max", "output")}
    t0 = float(req["arrival"].min())
    horizon = float(served_max(req["finish"]) - t0)
    e2e, ttft, qd = served["e2e"], served["ttft"], served["queue_delay"]
    lat_p = np.percentile(e2e, PCTS)
    ttft_p = np.percentile(ttft, PCTS)
    viol = violations(cfg, req)
    gapped = has_tbt(req)
    completed = int(done.sum())
    sizes = log["size"]
    w = _weights(log)
    busy = float(log["duration"].sum())
    s = {
        "mode": cfg.mode,
        "gpus": cfg.gpus,
        "replicas": cfg.n_replicas,
        "tp": cfg.tp,
        "router": cfg.routing,
        "k_bins": cfg.bins,
        "num_requests": n,
        "completed": completed,
        "rejected_requests": n - completed,
        "makespan_s": horizon,
        "throughput_rps": completed / horizon if horizon > 0 else float("inf"),
        "throughput_tps": float(served["output"].sum()) / horizon if horizon > 0 else float("inf"),
        "latency_mean_s": float(e2e.mean()),
        "latency_p50_s": float(lat_p[0]),
        "latency_p95_s": float(lat_p[1]),
        "latency_p99_s": float(lat_p[2]),
        "ttft_mean_s": float(ttft.mean()),
        "ttft_p50_s": float(ttft_p[0]),
        "ttft_p95_s": float(ttft_p[1]),
        "ttft_p99_s": float(ttft_p[2]),
        "tbt_mean_s": _nan_stat(served["tbt"], np.mean),
        "tbt_p99_s": _nan_stat(served["tbt"], lambda v: np.percentile(v, 99)),
        "tbt_max_p99_s": _nan_stat(served["tbt_max"], lambda v: np.percentile(v, 99)),
        "tbt_sla": cfg.tbt_sla,
        "queue_delay_mean_s": float(qd.mean()),
        "queue_delay_p99_s": float(np.percentile(qd, 99)),
        "sla_attainment": _attainment(viol, n),
        "sla_violation_rate_ttft": _rate(viol["ttft"]),
        "sla_violation_rate_tbt": _rate(viol["tbt"], gapped),
        "sla_violation_rate_e2e": _rate(viol["e2e"]),
        "gpu_utilization": busy / (cfg.n_replicas * horizon) if horizon > 0 else 0.0,
        "load_imbalance": load_imbalance(log, cfg.n_replicas),
        "engine": "continuous" if cfg.continuous else "batch",
        "num_batches": None if cfg.continuous else int(len(sizes)),
        "iterations": int(w.sum()) if cfg.continuous else None,
        "mean_batch_size": float((sizes * w).sum() / w.sum()),
        "batch_size_p50": _weighted_median(sizes, w),
        "batch_size_max": int(sizes.max()),
        "preemptions": int(counters.get("preemptions", 0)),
        "oom_events": int(counters.get("oom_events", 0)),
        "evicted_requests": int(counters.get("evicted_requests", 0)),
        "wasted_gpu_s": float(counters.get("wasted_gpu_s", 0.0)),
        "kv_utilization_mean": kv_utilization_mean(log, counters, eta, cfg.n_replicas, horizon),
        "kv_peak_tokens": int(counters["kv_peak_tokens"]) if "kv_peak_tokens" in counters
        else int(log["kv_tokens"].max()),
        "eta_tokens": int(eta),
        **prefix_cache_summary(counters),
    }
    if cfg.dynamic:
        branch = log["branch"]
        s["b_mem_mean"] = float(log["b_mem"].mean())
        s["b_sla_mean"] = float(log["b_sla"].mean())
        s["b_mem_binding_share"] = float((log["b_mem"] < log["b_sla"]).mean())
        s["sla_branch_counts"] = {name: int((branch == code).sum()) for code, name in BRANCH_NAMES.items()
                                  if code != BRANCH_HOLD}
    s["bins"] = per_bin(cfg, req, log, edges, viol, gapped)
    return s


def served_max(values: np.ndarray) -> float:
    """The largest finite value (every run serves at least one request)."""
    return float(np.nanmax(values))


def prefix_cache_summary(counters: dict) -> dict:
    """The prefix cache's share of prompt tokens looked up that it held (None: nothing looked up, as without
    prefix keys or caching), and the prefill tokens its hits saved."""
    queried, hit = counters.get("prefix_queried_tokens", 0), counters.get("prefix_hit_tokens", 0)
    return {"prefix_hit_rate": hit / queried if queried else None, "prefill_tokens_saved": int(hit)}


def load_imbalance(log: dict, replicas: int) -> float:
    """The busiest replica's busy time over the mean replica's (1.0: even; ``replicas`` when one did all)."""
    busy = np.bincount(np.asarray(log["gpu"], dtype=np.int64), weights=log["duration"], minlength=replicas)
    mean = busy.sum() / replicas
    return float(busy.max() / mean) if mean > 0 else 1.0


def kv_utilization_mean(log: dict, counters: dict, eta: int, gpus: int, horizon: float) -> float:
    """Time-average over the horizon of the KV cache in use, as a share of every GPU's capacity."""
    if horizon <= 0:
        return 0.0
    if "kv_block_seconds" in counters:   # continuous: blocks in use, integrated exactly per span
        return counters["kv_block_seconds"] / (counters["kv_blocks"] * gpus * horizon)
    # batch-level: a padded batch holds size x P after prefill, growing by size per decode step
    held = log["size"] * (log["max_prompt"] * (log["prefill"] + log["decode"]) + 0.5 * log["steps"] * log["decode"])
    return float(held.sum()) / (eta * gpus * horizon)


def per_bin(cfg: SimConfig, req: dict, log: dict, edges: np.ndarray, viol: dict,
            gapped: np.ndarray) -> list[dict]:
    out = []
    batch_level = "bin" in log
    for b in range(cfg.bins):
        m = req["bin"] == b
        cnt = int(m.sum())
        bm = log["bin"] == b if batch_level else None
        row = {"bin": b, "pred_lo": float(edges[b]), "pred_hi": float(edges[b + 1]), "requests": cnt,
               "batches": int(bm.sum()) if batch_level else None}
        served = m & np.isfinite(req["finish"])
        if served.any():
            e2e = req["e2e"][served]
            row.update({
                "mean_batch_size": float(log["size"][bm].mean()) if batch_level and bm.any() else None,
                "mean_output": float(req["output"][m].mean()),
                "mean_predicted": float(req["predicted"][m].mean()),
                "latency_mean_s": float(e2e.mean()),
                "latency_p99_s": float(np.percentile(e2e, 99)),
                "ttft_mean_s": float(req["ttft"][served].mean()),
                "tbt_mean_s": _nan_stat(req["tbt"][served], np.mean),
                "rejected": int(cnt - served.sum()),
                "preemptions": int(req["preemptions"][m].sum()),
                "sla_attainment": _attainment(viol, len(m), m),
                "sla_violation_rate_ttft": _rate(viol["ttft"], m),
                "sla_violation_rate_tbt": _rate(viol["tbt"], m & gapped),
                "sla_violation_rate_e2e": _rate(viol["e2e"], m),
            })
        out.append(row)
    return out


# ---------------------------------------------------------------- series ----
def latency_cdf(req: dict, points: int = SERIES_POINTS):
    """Quantiles of e2e, TTFT, queue delay, TBT and largest gap: columns metric, quantile, seconds.

    The TBT quantiles are over the requests that have one; none without any."""
    import pandas as pd

    qs = np.linspace(0.0, 1.0, points + 1)
    frames = []
    done = np.isfinite(req["finish"])
    for metric in ("e2e", "ttft", "queue_delay", "tbt", "tbt_max"):
        values = req[metric][done]
        values = values[~np.isnan(values)]
        if len(values):
            frames.append(pd.DataFrame({"metric": metric, "quantile": qs, "seconds": np.quantile(values, qs)}))
    return pd.concat(frames, ignore_index=True)


def batch_timeline(log: dict, max_points: int = 5000):
    """Controller trace (time, bin, size, b_mem, b_sla, b_cap, branch, step time), evenly thinned.

    Continuous rows without a controller update ("hold") are left out when updates exist.
    """
    import pandas as pd

    n = len(log["start"])
    keep = np.arange(n)
    if "iterations" in log:
        upd = np.flatnonzero(log["branch"] != BRANCH_HOLD)
        keep = upd if len(upd) else keep
    if len(keep) > max_points:
        keep = keep[np.linspace(0, len(keep) - 1, max_points).astype(np.int64)]
    if "steps" in log:
        step = np.where(log["steps"][keep] > 0, log["decode"][keep] / np.maximum(log["steps"][keep], 1), 0.0)
    else:
        step = log["duration"][keep] / np.maximum(log["iterations"][keep], 1)
    return pd.DataFrame({
        "time_s": log["start"][keep], "bin": log["bin"][keep] if "bin" in log else np.full(len(keep), -1),
        "gpu": log["gpu"][keep], "size": log["size"][keep], "b_mem": log["b_mem"][keep],
        "b_sla": log["b_sla"][keep], "b_cap": log["b_cap"][keep],
        "branch": pd.Series(log["branch"][keep]).map(BRANCH_NAMES).astype(str).to_numpy(),
        "step_time_s": step,
    })


def _window_sum(start: np.ndarray, end: np.ndarray, value: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum over rows of value x (time the row overlaps each window), exactly, by prefix sums.

    Overlap up to time e of a row [s, f) is clip(e - s, 0, f - s); summed over rows it is
    sum_{s<e} v (e - s) - sum_{f<e} v (e - f), evaluated at every window edge.
    """
    def cumulative(times: np.ndarray) -> np.ndarray:
        o = np.argsort(times, kind="stable")
        t, v = times[o], value[o]
        cv = np.concatenate(([0.0], np.cumsum(v)))
        cvt = np.concatenate(([0.0], np.cumsum(v * t)))
        i = np.searchsorted(t, edges, side="left")
        return edges * cv[i] - cvt[i]

    return np.diff(cumulative(start) - cumulative(end))


def gpu_utilization_series(log: dict, gpus: int, horizon: float, t0: float = 0.0,
                           points: int = SERIES_POINTS):
    """Fraction of GPUs busy in each of ``points`` equal time windows over the horizon."""
    import pandas as pd

    edges = np.linspace(t0, t0 + horizon, points + 1)
    start = log["start"]
    busy = _window_sum(start, start + log["duration"], np.ones(len(start)), edges)
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(width > 0, busy / (width * gpus), 0.0)
    return pd.DataFrame({"time_s": (edges[:-1] + edges[1:]) / 2, "utilization": util})


def occupancy_series(log: dict, gpus: int, eta: int, horizon: float, t0: float = 0.0,
                     points: int = SERIES_POINTS):
    """Per window: KV cache in use (share of all GPUs' capacity), running requests per GPU and, for
    continuous runs, the share held by cached prefix blocks no request holds (``kv_cached``).

    Each row counts with the time it overlaps the window; its KV is the row's ``kv_tokens``
    (a batch's padded peak, a span's tokens at its end), an upper bound within the row; its cached
    share is the span's at its end.
    """
    import pandas as pd

    edges = np.linspace(t0, t0 + horizon, points + 1)
    start = log["start"]
    end = start + log["duration"]
    width = np.diff(edges) * gpus
    kv = _window_sum(start, end, log["kv_tokens"].astype(np.float64), edges)
    size = _window_sum(start, end, log["size"].astype(np.float64), edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = {"time_s": (edges[:-1] + edges[1:]) / 2,
                   "kv_utilization": np.where(width > 0, kv / (width * eta), 0.0),
                   "running": np.where(width > 0, size / width, 0.0)}
        if "kv_cached" in log:
            cached = _window_sum(start, end, log["kv_cached"].astype(np.float64), edges)
            columns["kv_cached"] = np.where(width > 0, cached / width, 0.0)
        return pd.DataFrame(columns)


def batch_size_histogram(log: dict):
    """How often each batch (or running-batch) size occurred: batches, or iterations."""
    import pandas as pd

    sizes, inverse = np.unique(log["size"], return_inverse=True)
    counts = np.bincount(inverse, weights=_weights(log)).astype(np.int64)
    return pd.DataFrame({"size": sizes, "batches": counts})
