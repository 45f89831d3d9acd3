"""Plain-text and JSON renderings of run summaries (for the CLI and logs); values, labels and
units come from :mod:`core.metric_catalog`."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .metric_catalog import BIN_METRICS, format_value, shown_in
from .units import DASH


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _clean(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(obj) -> str:
    """Indented JSON; NaN and infinities become null, numpy values plain numbers."""
    return json.dumps(_clean(obj), default=_json_default, indent=2)


def _flat(record: dict, prefix: str = "") -> dict:
    """A mapping with nested mappings spread into ``outer.inner`` columns; lists stay one cell (JSON)."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)) or hasattr(value, "tolist") and getattr(value, "ndim", 0):
            out[name] = json.dumps(_clean(list(value)), default=_json_default)
        else:
            out[name] = value.item() if hasattr(value, "item") else value
    return out


def to_csv(obj) -> str:
    """CSV of a record (one row) or a list of records (one row each): the columns are the union of
    their keys in order of appearance, nested mappings spread into ``outer.inner`` columns, lists
    written as JSON in one cell, missing values and NaN empty."""
    import csv
    import io

    records = [obj] if isinstance(obj, dict) else list(obj)
    for r in records:
        if not isinstance(r, dict):
            raise TypeError(f"to_csv needs a mapping or a list of mappings, got a {type(r).__name__} in it")
    rows = [_flat(r) for r in records]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None or isinstance(v, float) and math.isnan(v) else v
                         for k, v in row.items()})
    return buf.getvalue()


def _v(s: dict, key: str) -> str:
    """A summary value as the catalog writes it (its unit included)."""
    return format_value(key, s.get(key), s)


def cluster_text(s: dict) -> str:
    """"8 GPU(s)", or with replicas of several GPUs or a router: "8 GPU(s) = 4 replicas x tp 2, router X"."""
    text = f"{s['gpus']} GPU(s)"
    if s.get("replicas") is None or (s.get("tp", 1) == 1 and s["replicas"] == 1):
        return text
    if s.get("tp", 1) > 1:
        text += f" = {s['replicas']} replica(s) x tp {s['tp']}"
    return text + f", router {s['router']}" if s["replicas"] > 1 else text


def hardware_text(s: dict) -> str:
    """"llama-3.1-8b on h100, " when the run names a model and a GPU (either alone: its name), else ""."""
    model, gpu = s.get("model"), s.get("gpu")
    if model and ("/" in model or "\\" in model or model.endswith(".json")):   # a local config: its folder
        path = Path(model)
        model = path.parent.name if path.name == "config.json" else path.name
    text = f"{model} on {gpu}" if model and gpu else model or gpu
    return f"{text}, " if text else ""


def format_summary(s: dict, workload_label: str, source: str) -> str:
    lines = [
        f"{s['mode']}: {hardware_text(s)}{cluster_text(s)}, {s['k_bins']} bin(s) | {workload_label}"
        + (f", closed loop of {s['max_concurrency']:,} clients" if s.get("max_concurrency") else "") + f" | {source}",
        f"  latency model    {s.get('latency_model', 'parametric')}",
        f"  requests         {s['completed']:,} of {s['num_requests']:,} in {_v(s, 'makespan_s')}"
        + (f" ({s['rejected_requests']:,} rejected: more KV than one GPU holds)" if s.get("rejected_requests") else ""),
        f"  throughput       {_v(s, 'throughput_rps')}; output {_v(s, 'throughput_tps')}",
        f"  latency (e2e)    mean {_v(s, 'latency_mean_s')}, p50 {_v(s, 'latency_p50_s')}, "
        f"p95 {_v(s, 'latency_p95_s')}, p99 {_v(s, 'latency_p99_s')}",
        f"  TTFT             mean {_v(s, 'ttft_mean_s')}, p99 {_v(s, 'ttft_p99_s')}; "
        f"queueing mean {_v(s, 'queue_delay_mean_s')}",
        f"  TBT              mean {_v(s, 'tbt_mean_s')}, p99 {_v(s, 'tbt_p99_s')}; largest gap p99 "
        f"{_v(s, 'tbt_max_p99_s')} (deadline on the {s['tbt_sla']})",
        f"  SLA attainment   {_v(s, 'sla_attainment')} (violations: TTFT "
        f"{_v(s, 'sla_violation_rate_ttft')}, TBT {_v(s, 'sla_violation_rate_tbt')}, "
        f"E2E {_v(s, 'sla_violation_rate_e2e')})",
        f"  GPU utilisation  {_v(s, 'gpu_utilization')} over the whole horizon",
        batch_line(s),
        f"  KV memory        mean {_v(s, 'kv_utilization_mean')} in use, peak {s['kv_peak_tokens']:,} of "
        f"{_v(s, 'eta_tokens')} per replica; " + memory_events(s),
    ]
    if (s.get("replicas") or 1) > 1:
        lines.append(f"  replicas         load imbalance {_v(s, 'load_imbalance')} (busiest replica's busy time "
                     "over the mean)")
    if s.get("prefix_hit_rate") is not None:
        lines.append(f"  prefix cache     {_v(s, 'prefix_hit_rate')} of prompt tokens looked up were cached; "
                     f"{_v(s, 'prefill_tokens_saved')} of prefill saved")
    if "sla_branch_counts" in s:
        c = s["sla_branch_counts"]
        lines.append(f"  controllers      mean b_mem {_v(s, 'b_mem_mean')}, mean b_SLA {_v(s, 'b_sla_mean')}; "
                     f"Algorithm 2 branches over {c['over']}, under {c['under']}, within {c['within']}")
    if len(s["bins"]) > 1:
        lines += ["  " + line for line in bins_text(s).splitlines()]
    notes = s.get("latency_notes") or {}
    if notes.get("extrapolated_queries"):
        lines.append(f"  note: {notes['extrapolated_queries']:,} latency queries were extrapolated "
                     f"beyond the {'roofline' if notes.get('roofline') else 'calibration'} grid")
    return "\n".join(lines)


def bins_text(s: dict) -> str:
    """The per-bin table of a run: bin, predicted output range, the catalog's per-bin ``text`` metrics."""
    shown = shown_in("text", BIN_METRICS)
    head = ["bin", "predicted len", *(m.label for m in shown)]
    rows = [[str(b["bin"]), f"{b['pred_lo']:.0f}-{b['pred_hi']:.0f}",
             *(m.format(b[m.key], s) if m.key in b else DASH for m in shown)] for b in s["bins"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


def batch_line(s: dict) -> str:
    if s.get("engine") == "continuous":
        return (f"  running batch    {_v(s, 'iterations')}, mean {_v(s, 'mean_batch_size')} running, "
                f"max {_v(s, 'batch_size_max')}")
    return (f"  batches          {_v(s, 'num_batches')}, mean size {_v(s, 'mean_batch_size')}, "
            f"max {_v(s, 'batch_size_max')}")


def memory_events(s: dict) -> str:
    if s.get("engine") == "continuous":
        return f"{_v(s, 'preemptions')} preemptions, {_v(s, 'wasted_gpu_s')} GPU time recomputed"
    return (f"{_v(s, 'oom_events')} out-of-memory batches evicted {_v(s, 'evicted_requests')}, "
            f"{_v(s, 'wasted_gpu_s')} GPU time wasted")


def format_compare_table(rows: list[dict]) -> str:
    """The catalog's ``compare`` metrics (rows, by label) of several runs (columns, by mode), then
    where each run came from."""
    metrics = shown_in("compare")
    label_width = max(len(m.label) for m in metrics) + 2
    table = [(m.label, [m.format(r.get(m.key), r) for r in rows]) for m in metrics]
    table += [("source", [str(r.get("source") or "-") for r in rows]),
              ("run id", ["-" if r.get("run_id") is None else str(r["run_id"]) for r in rows])]
    width = max(18, *(len(r["mode"]) for r in rows), *(len(c) for _, cells in table for c in cells)) + 2
    out = ["metric".ljust(label_width) + "".join(r["mode"].rjust(width) for r in rows)]
    out += [label.ljust(label_width) + "".join(c.rjust(width) for c in cells) for label, cells in table]
    return "\n".join(out)
