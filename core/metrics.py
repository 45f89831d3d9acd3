"""Metrics of a run (DESIGN section 5), computed with numpy over whole arrays.

Per request: queueing delay (arrival -> batch start), TTFT (arrival -> end of
prefill, queueing included), TBT (mean decode-step time of its batch) and
end-to-end latency (arrival -> batch end). A request violates the SLA when it
misses any enabled deadline. Utilisation is busy GPU time over GPUs x the whole
horizon (first arrival -> last completion), never over the last busy moment.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import SimConfig
from .controllers import BRANCH_NAMES

PCTS = (50, 95, 99)


def request_arrays(order: np.ndarray, batches: dict, arrival: np.ndarray) -> dict[str, np.ndarray]:
    """Map the per-batch log onto requests (original order) without a Python loop."""
    n = len(arrival)
    by_pos = np.argsort(batches["pos"], kind="stable")  # batches partition [0, n) of queue positions
    bid = np.empty(n, dtype=np.int64)
    bid[order] = np.repeat(by_pos, batches["size"][by_pos])
    return derive_request_arrays(bid, bid, batches, arrival)


def derive_request_arrays(batch_id: np.ndarray, row: np.ndarray, batches: dict,
                          arrival: np.ndarray) -> dict[str, np.ndarray]:
    """Per-request times from each request's batch: ``row`` indexes ``batches`` (usually = batch_id)."""
    start = batches["start"][row]
    first_token = start + batches["prefill"][row]
    decode = batches["decode"][row]
    finish = first_token + decode
    out = batches["max_output"][row]
    return {
        "batch": batch_id,
        "gpu": batches["gpu"][row],
        "start": start,
        "first_token": first_token,
        "finish": finish,
        "queue_delay": start - arrival,
        "ttft": first_token - arrival,
        "tbt": np.where(out > 0, decode / np.maximum(out, 1), 0.0),
        "e2e": finish - arrival,
    }


def violations(cfg: SimConfig, req: dict) -> dict[str, np.ndarray | None]:
    """Boolean violation array per enabled deadline (None when disabled)."""
    def miss(values: np.ndarray, deadline: float | None):
        return None if deadline is None else values > deadline

    return {"ttft": miss(req["ttft"], cfg.d_sla_ttft),
            "tbt": miss(req["tbt"], cfg.d_sla_tbt),
            "e2e": miss(req["e2e"], cfg.d_sla_e2e)}


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


def _busy_fraction(batches: dict, gpus: int, horizon: float) -> float:
    busy = float((batches["prefill"] + batches["decode"]).sum())
    return busy / (gpus * horizon) if horizon > 0 else 0.0


def summarize(cfg: SimConfig, req: dict, batches: dict, edges: np.ndarray, eta: int) -> dict:
    """The run's summary: one flat JSON-able dict plus ``bins``, a list of per-bin dicts."""
    n = len(req["arrival"])
    horizon = float(req["finish"].max() - req["arrival"].min())
    e2e, ttft, tbt, qd = req["e2e"], req["ttft"], req["tbt"], req["queue_delay"]
    lat_p = np.percentile(e2e, PCTS)
    ttft_p = np.percentile(ttft, PCTS)
    viol = violations(cfg, req)
    sizes = batches["size"]
    branch = batches["branch"]
    s = {
        "mode": cfg.mode,
        "gpus": cfg.gpus,
        "k_bins": cfg.bins,
        "num_requests": n,
        "completed": int(np.isfinite(req["finish"]).sum()),
        "makespan_s": horizon,
        "throughput_rps": n / horizon if horizon > 0 else float("inf"),
        "throughput_tps": float(req["output"].sum()) / horizon if horizon > 0 else float("inf"),
        "latency_mean_s": float(e2e.mean()),
        "latency_p50_s": float(lat_p[0]),
        "latency_p95_s": float(lat_p[1]),
        "latency_p99_s": float(lat_p[2]),
        "ttft_mean_s": float(ttft.mean()),
        "ttft_p50_s": float(ttft_p[0]),
        "ttft_p95_s": float(ttft_p[1]),
        "ttft_p99_s": float(ttft_p[2]),
        "tbt_mean_s": float(tbt.mean()),
        "tbt_p99_s": float(np.percentile(tbt, 99)),
        "queue_delay_mean_s": float(qd.mean()),
        "queue_delay_p99_s": float(np.percentile(qd, 99)),
        "sla_attainment": _attainment(viol, n),
        "sla_violation_rate_ttft": _rate(viol["ttft"]),
        "sla_violation_rate_tbt": _rate(viol["tbt"]),
        "sla_violation_rate_e2e": _rate(viol["e2e"]),
        "gpu_utilization": _busy_fraction(batches, cfg.gpus, horizon),
        "num_batches": int(len(sizes)),
        "mean_batch_size": float(sizes.mean()),
        "batch_size_p50": float(np.percentile(sizes, 50)),
        "batch_size_max": int(sizes.max()),
        "mem_truncated_batches": int((batches["mem_truncated"] > 0).sum()),
        "eta_tokens": int(eta),
        "peak_batch_kv_tokens": int((sizes * (batches["max_prompt"] + batches["max_output"])).max()),
    }
    if cfg.dynamic:
        s["b_mem_mean"] = float(batches["b_mem"].mean())
        s["b_sla_mean"] = float(batches["b_sla"].mean())
        s["sla_branch_counts"] = {name: int((branch == code).sum()) for code, name in BRANCH_NAMES.items()}
    s["bins"] = per_bin(cfg, req, batches, edges, viol)
    return s


def per_bin(cfg: SimConfig, req: dict, batches: dict, edges: np.ndarray, viol: dict) -> list[dict]:
    out = []
    for b in range(cfg.bins):
        m = req["bin"] == b
        cnt = int(m.sum())
        bm = batches["bin"] == b
        row = {"bin": b, "pred_lo": float(edges[b]), "pred_hi": float(edges[b + 1]), "requests": cnt,
               "batches": int(bm.sum())}
        if cnt:
            e2e = req["e2e"][m]
            row.update({
                "mean_batch_size": float(batches["size"][bm].mean()),
                "mean_output": float(req["output"][m].mean()),
                "mean_predicted": float(req["predicted"][m].mean()),
                "latency_mean_s": float(e2e.mean()),
                "latency_p99_s": float(np.percentile(e2e, 99)),
                "ttft_mean_s": float(req["ttft"][m].mean()),
                "tbt_mean_s": float(req["tbt"][m].mean()),
                "sla_attainment": _attainment(viol, len(m), m),
                "sla_violation_rate_ttft": _rate(viol["ttft"], m),
                "sla_violation_rate_tbt": _rate(viol["tbt"], m),
                "sla_violation_rate_e2e": _rate(viol["e2e"], m),
            })
        out.append(row)
    return out


# ---------------------------------------------------------------- series ----
def latency_cdf(req: dict, points: int = 200) -> pd.DataFrame:
    """Quantiles of e2e, TTFT, queue delay and TBT: columns metric, quantile, seconds."""
    qs = np.linspace(0.0, 1.0, points + 1)
    frames = []
    for metric in ("e2e", "ttft", "queue_delay", "tbt"):
        frames.append(pd.DataFrame({"metric": metric, "quantile": qs,
                                    "seconds": np.quantile(req[metric], qs)}))
    return pd.concat(frames, ignore_index=True)


def batch_timeline(batches: dict, max_points: int = 5000) -> pd.DataFrame:
    """Per-batch controller trace (time, bin, size, b_mem, b_sla, b_cap, branch), evenly thinned."""
    n = len(batches["start"])
    idx = np.arange(n) if n <= max_points else np.linspace(0, n - 1, max_points).astype(np.int64)
    return pd.DataFrame({
        "time_s": batches["start"][idx], "bin": batches["bin"][idx], "gpu": batches["gpu"][idx],
        "size": batches["size"][idx], "b_mem": batches["b_mem"][idx], "b_sla": batches["b_sla"][idx],
        "b_cap": batches["b_cap"][idx],
        "branch": pd.Series(batches["branch"][idx]).map(BRANCH_NAMES).astype(str).to_numpy(),
        "step_time_s": np.where(batches["max_output"][idx] > 0,
                                batches["decode"][idx] / np.maximum(batches["max_output"][idx], 1), 0.0),
    })


def gpu_utilization_series(batches: dict, gpus: int, horizon: float, t0: float = 0.0,
                           points: int = 200) -> pd.DataFrame:
    """Fraction of GPUs busy in each of ``points`` equal time windows over the horizon.

    Busy time up to e summed over batches = sum_{start<e} (e - start) - sum_{end<e} (e - end),
    evaluated at every window edge with sorted starts/ends and prefix sums.
    """
    edges = np.linspace(t0, t0 + horizon, points + 1)
    starts = np.sort(batches["start"])
    ends = np.sort(batches["start"] + batches["prefill"] + batches["decode"])

    def cumulative(sorted_t: np.ndarray) -> np.ndarray:
        c = np.concatenate(([0.0], np.cumsum(sorted_t)))
        i = np.searchsorted(sorted_t, edges, side="left")
        return i * edges - c[i]

    busy = cumulative(starts) - cumulative(ends)
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(width > 0, np.diff(busy) / (width * gpus), 0.0)
    return pd.DataFrame({"time_s": (edges[:-1] + edges[1:]) / 2, "utilization": util})


def batch_size_histogram(batches: dict) -> pd.DataFrame:
    sizes, counts = np.unique(batches["size"], return_counts=True)
    return pd.DataFrame({"size": sizes, "batches": counts})
