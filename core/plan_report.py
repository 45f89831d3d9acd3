"""Renderings of a capacity plan: candidate labels, the one-sentence answer, the recommended run as a
``batchlab run`` command line and as a TOML config, and the CLI's text report.

Everything here works on plain data (a ``PlanResult.to_dict()``), so the CLI and
the web page render stored plans the same way.
"""
from __future__ import annotations

import json
import shlex

from batchlab.workloads.spec import SpecError, WorkloadSpec, spec_fields
from batchlab.workloads.workload import WorkloadError

from .config import SimConfig, config_fields
from .slo_report import judgement_phrase

KNOB_NAMES = {"k_bins": "K", "b_max": "B_max", "batch_size": "B"}
# written whenever they matter, defaults included (router: where a run has several replicas)
ALWAYS = ("mode", "gpus", "tp", "router", "disaggregate", "k_bins", "b_max", "batch_size")


def label_of(mode: str, settings: dict, cluster: dict | None = None) -> str:
    """``multi_bin_dynamic, K = 4, B_max = 64``; with ``cluster`` (tp, router, pd_ratio: the choices that set
    candidates apart) ``continuous_dynamic, B_max = 64, TP = 2, random, P:D 1:3``."""
    knobs = [f"{KNOB_NAMES[k]} = {settings[k]}" for k in ("k_bins", "b_max", "batch_size") if k in settings]
    c = cluster or {}
    if "tp" in c:
        knobs.append(f"TP = {c['tp']}")
    if "router" in c:
        knobs.append(str(c["router"]))
    if "pd_ratio" in c:
        knobs.append("not disaggregated" if c["pd_ratio"] is None else f"P:D {c['pd_ratio']}")
    return ", ".join([mode, *knobs])


def cluster_phrase(row: dict) -> str:
    """How a plan's configuration spreads over its GPUs, naming the router: ``as 4 replicas behind the
    least_outstanding router``, ``as 4 replicas sharing one queue (no deployment routes so: the ideal
    bound)``, ``as 1 prefill + 3 decode replicas of TP 2 behind least_outstanding routers``; empty for a row
    without them (older plans)."""
    if row.get("replicas") is None or row.get("router") is None:
        return ""
    r, tp, router = row["replicas"], row.get("tp") or 1, row["router"]
    size = f" of TP {tp}" if tp > 1 else ""
    if row.get("disaggregate"):
        p, d = row["disaggregate"].split(":")
        return f"as {p} prefill + {d} decode replicas{size} behind {router} routers"
    if r == 1:
        return f"as one replica{size} (no routing)"
    if router == "shared_queue":
        return f"as {r} replicas{size} sharing one queue (no deployment routes so: the ideal bound)"
    return f"as {r} replicas{size} behind the {router} router"


def gpus_text(n: int) -> str:
    return f"{n} GPU" + ("" if n == 1 else "s")


def pct(x: float | None, target: float | None = None) -> str:
    """A percentage to 0.1, with more digits where 0.1 would make it read as the target."""
    if x is None:
        return "-"
    for digits in (1, 2, 3, 4):
        text = f"{100 * x:.{digits}f}"
        if target is None or x == target or text != f"{100 * target:.{digits}f}":
            return f"{text} %"
    return f"{100 * x:.4f} %"


def rate_text(rate: float) -> str:
    return f"{rate:.3g} req/s"


# ------------------------------------------------------------- settings --
def changed_settings(config: SimConfig, spec: WorkloadSpec) -> tuple[dict, dict]:
    """The settings a run needs besides the defaults: (simulation, workload), in field order.

    The planned knobs (mode, gpus, tp, the router of several replicas, disaggregate and the mode's
    K, B_max or B) are always written; other settings when they differ from the default and can
    change the run.
    """
    relevant = config.relevant_dict()
    sim = {}
    for f in config_fields():
        v = getattr(config, f.name)
        if f.name == "fill":
            if f.name in relevant and v != SimConfig(mode=config.mode).fill:
                sim[f.name] = v
        elif f.name == "router":   # shared_queue is left out of the run's identity, not out of its command
            if config.continuous and config.n_replicas > 1:
                sim[f.name] = v
        elif f.name in relevant and (f.name in ALWAYS or v != f.default):
            sim[f.name] = v
    wl = {}
    base = spec.relevant_dict()
    for f in spec_fields():
        v = getattr(spec, f.name)
        if v == f.default:
            continue
        try:
            same = spec.replace(**{f.name: f.default}).relevant_dict() == base
        except (SpecError, WorkloadError):
            same = False
        if not same or (f.name == "rate" and v is not None):
            wl[f.name] = v
    return sim, wl


def _flag_value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def run_command(config: SimConfig, spec: WorkloadSpec) -> str:
    """The ``batchlab run`` command line that simulates exactly this run."""
    sim, wl = changed_settings(config, spec)
    parts = ["batchlab", "run"]
    for name, v in {**sim, **wl}.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + flag[2:])
        else:
            parts += [flag, shlex.quote(_flag_value(v))]
    return " ".join(parts)


def _toml_value(v) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def toml_config(config: SimConfig, spec: WorkloadSpec) -> str:
    """The same run as a TOML file for ``batchlab run --config FILE``."""
    sim, wl = changed_settings(config, spec)
    lines = ["# batchlab run --config THIS_FILE", "[sim]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sim.items()]
    if wl:
        lines += ["", "[workload]"] + [f"{k} = {_toml_value(v)}" for k, v in wl.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- answer --
def gpu_label(name: str) -> str:
    """A catalogue GPU as the plan names it: ``H100``, ``A100-80GB``, ``MI300X``."""
    return name.upper()


def money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.995 else f"${x:.3g}"


def type_text(row: dict) -> str:
    """One GPU type's outcome: ``4 x H100 at $49.16/h`` or why it has none."""
    name = gpu_label(row["gpu"])
    if row["status"] == "ok":
        return f"{row['gpus']} x {name} at {money(row['cost_per_hour'])}/h"
    if row["status"] == "unreachable":
        return f"{name} misses the target within the GPUs allowed"
    if row["status"] == "does not fit":
        return f"{name} cannot hold the weights with any TP candidate"
    return f"{name} failed ({row.get('error') or 'every run failed'})"


def cost_sentence(d: dict) -> str:
    """The plan across GPU types in one sentence: the cheapest type meeting the target, the others' costs."""
    rows = d["gpu_types"]
    best = next((r for r in rows if r.get("cheapest")), None)
    others = "; ".join(type_text(r) for r in rows if r is not best)
    if best is None:
        return (f"No GPU type meets {pct(d['target'])} within SLA at {rate_text(d['rate_rps'])} with up to "
                f"{gpus_text(d['max_gpus'])}: {others}.")
    per_m = best["cost_per_million_requests"]
    head = f"Cheapest: {type_text(best)} ({money(per_m)} per million requests)"
    return head + (f" (vs {others})" if others else "") + ": " + _one_plan_sentence(d)


def plan_sentence(d: dict) -> str:
    """The answer in one sentence (``d``: a ``PlanResult.to_dict()``; across GPU types, the cheapest first)."""
    if d.get("gpu_types") is not None:
        return cost_sentence(d)
    return _one_plan_sentence(d)


def _one_plan_sentence(d: dict) -> str:
    rate = rate_text(d["rate_rps"])
    target = d["target"]
    rec = d.get("recommended")
    if d["status"] == "failed" or rec is None:
        return f"No configuration could be simulated: {d.get('error') or 'every run failed'}."
    att = pct(rec["attainment"], target)
    judged = judgement_phrase(rec.get("config") or {})   # the classes (and SLOs) every answer met
    where = cluster_phrase(rec)
    what = rec["configuration"] if not where else f"{label_of(rec['mode'], rec.get('settings') or {})}, {where}"
    if d["status"] == "unreachable":
        return (f"No configuration reaches {pct(target)} within SLA{judged} at {rate} with up to "
                f"{gpus_text(d['max_gpus'])}; "
                f"the best, {what} on {gpus_text(rec['gpus'])}, reaches {att}.")
    text = f"{gpus_text(d['gpus'])} with {what}: {att} within SLA{judged} at {rate}"
    if d["rule"] == "lower" and rec.get("ci_low") is not None:
        text += f" ({100 * d['confidence']:g} % confidence interval from {pct(rec['ci_low'], target)})"
    below = d.get("below")
    if below:
        verb = "reaches" if below["gpus"] == 1 else "reach"
        text += f"; {gpus_text(below['gpus'])} {verb} at best {pct(below['attainment'], target)}"
    return text + "."


def rule_text(d: dict) -> str:
    n = d["replications"]
    if d["rule"] == "lower":
        return (f"the lower end of the {100 * d['confidence']:g} % confidence interval over {n} seeds "
                f">= {pct(d['target'])}")
    return f"mean attainment over {n} seed{'s' if n > 1 else ''} >= {pct(d['target'])}"


def counts_text(d: dict) -> str:
    c = d["counts"]
    pilot = (f" after a pilot on {c['pilot_requests']:,} requests ({c['pilot_cells']} cells, "
             f"guess {gpus_text(c['pilot_guess']) if c['pilot_guess'] else 'none'})" if c.get("pilot_requests") else "")
    return (f"searched {c['candidates']} candidates x GPUs 1-{d['max_gpus']} ({c['grid_cells']} cells): "
            f"{c['cells']} cells evaluated{pilot}; {c['runs']} runs ({c['simulated']} simulated, {c['reused']} reused "
            f"from the store or this plan), {c['capacity_probes']} of them capacity probes; {d['seconds']:.1f} s"
            + (" (" + ", ".join(f"{k} {v:.1f} s" for k, v in d["phase_seconds"].items()) + ")"
               if d.get("phase_seconds") else ""))


def shown_column(values) -> bool:
    """Whether a plan table shows a cluster column (a pandas Series): tp where some TP is not 1,
    disaggregate where some candidate is disaggregated; every other column always."""
    if values.name == "tp":
        return bool((values.fillna(1) != 1).any())
    if values.name == "disaggregate":
        return bool(values.notna().any())
    return True


def plan_rows(d: dict) -> list[dict]:
    """The plan as table rows (its CSV): one per GPU type with ``--gpus-from``, else the candidates
    ranked at the answer, each with the plan's status, target and rate."""
    if d.get("gpu_types") is not None:
        return [dict(r) for r in d["gpu_types"]]
    head = {"status": d["status"], "target": d["target"], "rate_rps": d["rate_rps"], "planned_gpus": d.get("gpus")}
    return [dict(head, **{k: v for k, v in r.items() if k not in head}) for r in d["ranking"]] or [head]


def format_plan(d: dict) -> str:
    """The CLI's text report of a plan."""
    import pandas as pd

    from .sweep_report import format_frame

    out = [d["sentence"], ""]
    if d.get("gpu_types") is not None:
        out += [f"GPU types (USD per GPU-hour; per million requests at {rate_text(d['rate_rps'])}):",
                format_frame(pd.DataFrame(d["gpu_types"]),
                             ["gpu", "status", "gpus", "configuration", "attainment", "price_per_hour",
                              "cost_per_hour", "cost_per_million_requests", "cheapest"]), ""]
        out += ["Prices: " + "; ".join(f"{gpu_label(r['gpu'])} {money(r['price_per_hour'])} ({r['price_source']})"
                                       for r in d["gpu_types"]), ""]
        if d.get("cheapest"):
            out += [f"The plan of {gpu_label(d['cheapest'])}:", ""]
    rec = d.get("recommended")
    if rec is not None:
        out += ["Recommended run:", "  " + rec["command"], "", "As a config file:"]
        out += ["  " + line if line else "" for line in rec["toml"].splitlines()] + [""]
    if d["ranking"]:
        out.append(f"Candidates at {gpus_text(d['ranked_at'])} ({rule_text(d)}):")
        rank = pd.DataFrame(d["ranking"])
        cols = ["rank", "configuration", "gpus", "replicas", "tp", "router", "disaggregate", "meets", "attainment",
                "ci_low", "ci_high", "latency_p99_s", "throughput_rps"]
        cols = [c for c in cols if c not in rank or shown_column(rank[c])]
        if d["replications"] == 1:
            cols = [c for c in cols if c not in ("ci_low", "ci_high")]
        out += [format_frame(rank, cols), ""]
    if d["capacities"]:
        tol = d["capacities"][0]["tolerance"]
        out.append(f"Evidence: capacity at {gpus_text(d['ranked_at'])} (highest rate with attainment >= "
                   f"{pct(d['target'])}; tolerance {100 * tol:g} %" +
                   (f", {100 * d['confidence']:g} % CI over {d['replications']} seeds" if d["replications"] > 1
                    else "") + f"; planned rate {rate_text(d['rate_rps'])}):")
        caps = pd.DataFrame([{"configuration": c["label"].get("configuration", c["mode"]),
                              "capacity_rps": c["capacity_rps"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                              "status": c["status"]} for c in d["capacities"]])
        out += [format_frame(caps), ""]
    for name, err in (d.get("errors") or {}).items():
        out.append(f"left out: {name}: {err}")
    out.append(counts_text(d))
    return "\n".join(out)
