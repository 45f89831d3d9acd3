"""Plain-text and JSON renderings of run summaries (for the CLI and logs)."""
from __future__ import annotations

import json
import math


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


def pct(v) -> str:
    return "off" if v is None else f"{100 * v:.1f} %"


def fixed(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def attainment(v) -> str:
    return "no deadline set" if v is None else pct(v)


def secs(v: float) -> str:
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def format_summary(s: dict, workload_label: str, source: str) -> str:
    lines = [
        f"{s['mode']}: {s['gpus']} GPU(s), {s['k_bins']} bin(s) | {workload_label} | {source}",
        f"  latency model    {s.get('latency_model', 'parametric')}",
        f"  requests         {s['completed']:,} of {s['num_requests']:,} in {s['makespan_s']:,.1f} s"
        + (f" ({s['rejected_requests']:,} rejected: more KV than one GPU holds)" if s.get("rejected_requests") else ""),
        f"  throughput       {s['throughput_rps']:.3f} req/s, {s['throughput_tps']:,.1f} output tok/s",
        f"  latency (e2e)    mean {secs(s['latency_mean_s'])}, p50 {secs(s['latency_p50_s'])}, "
        f"p95 {secs(s['latency_p95_s'])}, p99 {secs(s['latency_p99_s'])}",
        f"  TTFT             mean {secs(s['ttft_mean_s'])}, p99 {secs(s['ttft_p99_s'])}; "
        f"queueing mean {secs(s['queue_delay_mean_s'])}",
        f"  TBT              mean {secs(s['tbt_mean_s'])}, p99 {secs(s['tbt_p99_s'])}; largest gap p99 "
        f"{secs(s['tbt_max_p99_s'])} (deadline on the {s['tbt_sla']})",
        f"  SLA attainment   {attainment(s['sla_attainment'])} (violations: TTFT "
        f"{pct(s['sla_violation_rate_ttft'])}, TBT {pct(s['sla_violation_rate_tbt'])}, "
        f"E2E {pct(s['sla_violation_rate_e2e'])})",
        f"  GPU utilisation  {pct(s['gpu_utilization'])} over the whole horizon",
        batch_line(s),
        f"  KV memory        mean {pct(s['kv_utilization_mean'])} in use, peak {s['kv_peak_tokens']:,} of "
        f"{s['eta_tokens']:,} tokens per GPU; " + memory_events(s),
    ]
    if "sla_branch_counts" in s:
        c = s["sla_branch_counts"]
        lines.append(f"  controllers      mean b_mem {s['b_mem_mean']:.1f}, mean b_SLA {s['b_sla_mean']:.1f}; "
                     f"Algorithm 2 branches over {c['over']}, under {c['under']}, within {c['within']}")
    if len(s["bins"]) > 1:
        lines.append("  bin  predicted len     requests  mean b  latency mean   p99      SLA")
        for b in s["bins"]:
            if not b["requests"]:
                lines.append(f"  {b['bin']:>3}  {b['pred_lo']:>6.0f}-{b['pred_hi']:<8.0f}  {0:>9}")
                continue
            lines.append(f"  {b['bin']:>3}  {b['pred_lo']:>6.0f}-{b['pred_hi']:<8.0f}  {b['requests']:>9,}"
                         f"  {fixed(b['mean_batch_size']):>6}  {secs(b['latency_mean_s']):>10}  "
                         f"{secs(b['latency_p99_s']):>8}  {attainment(b['sla_attainment']):>7}")
    notes = s.get("latency_notes") or {}
    if notes.get("extrapolated_queries"):
        lines.append(f"  note: {notes['extrapolated_queries']:,} latency queries were extrapolated "
                     "beyond the calibration grid")
    return "\n".join(lines)


def batch_line(s: dict) -> str:
    if s.get("engine") == "continuous":
        return (f"  running batch    {s['iterations']:,} iterations, mean {s['mean_batch_size']:.1f} running, "
                f"max {s['batch_size_max']}")
    return f"  batches          {s['num_batches']:,}, mean size {s['mean_batch_size']:.1f}, max {s['batch_size_max']}"


def memory_events(s: dict) -> str:
    if s.get("engine") == "continuous":
        return f"{s['preemptions']:,} preemptions, {secs(s['wasted_gpu_s'])} GPU time recomputed"
    return (f"{s['oom_events']:,} out-of-memory batches evicted {s['evicted_requests']:,} requests, "
            f"{secs(s['wasted_gpu_s'])} GPU time wasted")


def format_compare_table(rows: list[dict]) -> str:
    metrics = [
        ("throughput (req/s)", "throughput_rps", "{:.3f}"),
        ("throughput (tok/s)", "throughput_tps", "{:,.1f}"),
        ("latency mean (s)", "latency_mean_s", "{:.2f}"),
        ("latency p99 (s)", "latency_p99_s", "{:.2f}"),
        ("TTFT p99 (s)", "ttft_p99_s", "{:.2f}"),
        ("TBT mean (ms)", "tbt_mean_s", "ms"),
        ("SLA attainment", "sla_attainment", "pct"),
        ("TTFT violations", "sla_violation_rate_ttft", "pct"),
        ("TBT violations", "sla_violation_rate_tbt", "pct"),
        ("E2E violations", "sla_violation_rate_e2e", "pct"),
        ("GPU utilisation", "gpu_utilization", "pct"),
        ("mean batch size", "mean_batch_size", "{:.1f}"),
        ("preemptions", "preemptions", "{:,}"),
        ("OOM evictions", "evicted_requests", "{:,}"),
        ("KV in use (mean)", "kv_utilization_mean", "pct"),
        ("source", "source", "{}"),
        ("run id", "run_id", "{}"),
    ]
    width = max(18, *(len(r["mode"]) for r in rows)) + 2
    out = ["metric".ljust(20) + "".join(r["mode"].rjust(width) for r in rows)]
    for label, key, fmt in metrics:
        cells = []
        for r in rows:
            v = r.get(key)
            if fmt == "pct":
                cells.append(pct(v))
            elif v is None:
                cells.append("-")
            elif fmt == "ms":
                cells.append(f"{v * 1000:.1f}")
            else:
                cells.append(fmt.format(v))
        out.append(label.ljust(20) + "".join(c.rjust(width) for c in cells))
    return "\n".join(out)
