"""Names for runs: labels that show what differs between compared runs, the workload a run
used, and which settings of compared runs differ (pure functions over run views).

A run view is the dict :func:`webapp.services.run_view` returns (``config``, ``workload``
identity, ``summary``, ``hash``).
"""
from __future__ import annotations

import json
from typing import Any

from batchlab.core.config import ConfigError, SimConfig

MAX_PARTS = 3
# how a differing setting reads in a label: "<text> <value>" unless a function is given
_SHORT = {
    "sim.gpus": lambda v: f"{v} GPU{'s' if v != 1 else ''}",
    "sim.k_bins": lambda v: f"{v} bins",
    "sim.batch_size": lambda v: f"B {v}",
    "sim.d_sla_ttft": lambda v: "TTFT off" if v is None else f"TTFT ≤ {v:g} s",
    "sim.d_sla_tbt": lambda v: "TBT off" if v is None else f"TBT ≤ {v * 1000:g} ms",
    "sim.d_sla_e2e": lambda v: "E2E off" if v is None else f"E2E ≤ {v:g} s",
    "sim.max_wait": lambda v: "no max wait" if v is None else f"max wait {v:g} s",
    "sim.latency": str,
    "sim.tp": lambda v: f"TP {v}",
    "sim.router": lambda v: "shared queue" if v == "shared_queue" else str(v),
    "sim.disaggregate": lambda v: "not disaggregated" if v is None else f"P:D {v}",
    "wl.num_requests": lambda v: "all rows" if v is None else f"{v:,} req",
    "wl.rate": lambda v: "rate auto" if v is None else f"rate {v:g}",
    "wl.trace": str,
    "wl.workload_seed": lambda v: f"workload seed {v}",
    "wl.rps_scaling": lambda v: f"time ×{v:g}",
}


def settings_of(view: dict) -> dict[str, Any]:
    """The settings that define a run, flat: ``sim.<name>`` (those that matter for its mode)
    and ``wl.<name>`` (its workload spec), plus the trace file's digest when there is one."""
    config = view.get("config") or {}
    try:
        cfg = SimConfig.from_dict(config)
        relevant = cfg.relevant_dict()
        if cfg.fill == SimConfig(mode=cfg.mode).fill:
            relevant["fill"] = "auto"  # the mode's own default: part of the mode, not a difference
        if cfg.continuous and cfg.n_replicas > 1:
            relevant["router"] = cfg.routing  # shared_queue too, which the run's identity leaves out
        relevant.setdefault("tp", cfg.tp)   # TP 1 too: runs of several TPs differ in it
    except (ConfigError, TypeError):
        relevant = dict(config)
    workload = view.get("workload") or {}
    out = {f"sim.{k}": v for k, v in relevant.items()}
    out |= {f"wl.{k}": v for k, v in (workload.get("spec") or {}).items()}
    if workload.get("trace_sha256"):
        out["wl.trace_sha256"] = workload["trace_sha256"]
    return out


def differing(views: list[dict]) -> list[str]:
    """Setting names (``sim.x`` / ``wl.y``) every view has, whose values are not all equal."""
    flat = [settings_of(v) for v in views]
    if len(flat) < 2:
        return []
    common = [k for k in flat[0] if all(k in f for f in flat[1:])]
    return [k for k in common if len({json.dumps(f[k], sort_keys=True, default=str) for f in flat}) > 1]


def describe(name: str, value: Any) -> str:
    """``rate 5``, ``8 GPUs``, ``TBT off``: one setting as a label part."""
    short = _SHORT.get(name)
    if short is not None:
        try:
            return short(value)
        except (TypeError, ValueError):
            pass
    text = name.split(".", 1)[1].replace("_", " ")
    return f"{text} {'auto' if value is None else value}"


def run_labels(views: list[dict]) -> list[str]:
    """Short unique labels: the mode, then what differs between the runs (``static_fifo · rate 2``
    vs ``static_fifo · rate 5``); a hash prefix only when nothing else tells two runs apart. Up to
    ``MAX_PARTS + 1`` settings are all named ("+1 more" would hide a setting in the room it takes);
    beyond that the first ``MAX_PARTS`` and how many more."""
    modes = [v["summary"]["mode"] for v in views]
    names = [k for k in differing(views) if k not in ("sim.mode", "wl.trace_sha256")]
    flat = [settings_of(v) for v in views]
    shown = names if len(names) <= MAX_PARTS + 1 else names[:MAX_PARTS]
    labels = []
    for mode, f in zip(modes, flat):
        parts = [describe(k, f[k]) for k in shown]
        if len(names) > len(shown):
            parts.append(f"+{len(names) - len(shown)} more")
        labels.append(" · ".join([mode, *parts]))
    if len(set(labels)) < len(labels):
        labels = [f"{lab} · {v['hash'][:6]}" for lab, v in zip(labels, views)]
    return labels


def workload_label(view: dict) -> str:
    """The workload a run used, as the workload identity describes it."""
    w = view.get("workload") or {}
    return w.get("label") or view.get("label") or "workload"


def workloads_differ(views: list[dict]) -> list[str]:
    """What differs between the workloads of ``views`` (``rate 2 / rate 5``...); empty if the same."""
    idents = {json.dumps((v.get("workload") or {}), sort_keys=True, default=str) for v in views}
    if len(idents) < 2:
        return []
    names = [k for k in differing(views) if k.startswith("wl.") and k != "wl.trace_sha256"]
    flat = [settings_of(v) for v in views]
    out = [" / ".join(dict.fromkeys(describe(k, f[k]) for f in flat)) for k in names]
    return out or ["the trace data"]


def deadlines(views: list[dict], metric: str) -> list[float]:
    """The distinct SLA deadlines (s) on ``metric`` (``e2e``, ``ttft``, ``tbt``) of the runs shown."""
    key = {"e2e": "d_sla_e2e", "ttft": "d_sla_ttft", "tbt": "d_sla_tbt"}.get(metric)
    if key is None:
        return []
    values = [(v.get("config") or {}).get(key) for v in views]
    return sorted({float(d) for d in values if d is not None})
