"""A run judged by its percentile SLOs and request classes: the summary keys, and their text.

The judgement depends on settings that do not change what is simulated (``slo``, ``classes``: they are
left out of the run hash, core.identity), so it is never part of a stored summary: :func:`assess` computes
it from the per-request arrays whenever a summary is handed out (a fresh run, or one served from the
store) and :func:`strip` removes it before a summary is stored. Keys (present only when the settings are
given):

``slos``            one row per percentile SLO (core.slo.evaluate_slos);
``slos_met``        every percentile SLO holds;
``classes``         one row per request class (core.request_classes.class_rows);
``slo_attainment``  what capacity and plan search on: the smallest class attainment (every class must meet
                    the target), or the run's attainment without classes (1 with no deadline), and 0 when a
                    percentile SLO fails.
"""
from __future__ import annotations

import numpy as np

from . import units
from .config import SimConfig
from .metrics import _attainment, deadline_violations
from .request_classes import check_covered, class_rows, parse_classes, request_priorities
from .slo import duration_text, evaluate_slos, parse_slos

KEYS = ("slos", "slos_met", "classes", "slo_attainment")


def judged(config: SimConfig) -> bool:
    """Whether ``config`` has percentile SLOs or request classes to judge a run by."""
    return bool(config.slo or config.classes)


def target_attainment(summary: dict) -> float | None:
    """The attainment a capacity search or plan compares with its target: ``slo_attainment`` when the run was
    judged by SLOs or classes, else the run's ``sla_attainment``."""
    return summary["slo_attainment"] if "slo_attainment" in summary else summary.get("sla_attainment")


def judgement_phrase(config: dict) -> str:
    """What a plan's sentence adds for a config (as a dict) with classes or SLOs: `` for every class
    (interactive, batch), with ttft:p99:2s met``; empty without them."""
    from .request_classes import parse_classes

    text = ""
    if classes := parse_classes(config.get("classes")):
        text += f" for every class ({', '.join(c.name for c in classes)})"
    if config.get("slo"):
        slos = parse_slos(config["slo"])
        text += f", with {', '.join(s.text for s in slos)} met"
    return text


def strip(summary: dict) -> dict:
    """``summary`` without the judgement (what the store keeps)."""
    return {k: v for k, v in summary.items() if k not in KEYS}


def assess(config: SimConfig, req: dict, priority: np.ndarray | None) -> dict:
    """The judgement's summary keys for per-request arrays ``req`` and the requests' priorities (None: all 0);
    {} when ``config`` has neither SLOs nor classes."""
    if not judged(config):
        return {}
    out: dict = {}
    slos = parse_slos(config.slo)
    if slos:
        out["slos"] = evaluate_slos(slos, req)
        out["slos_met"] = all(r["met"] for r in out["slos"])
    classes = parse_classes(config.classes)
    run = {"ttft": config.d_sla_ttft, "tbt": config.d_sla_tbt, "e2e": config.d_sla_e2e}
    if classes:
        prio = request_priorities(priority, len(req["finish"]))
        check_covered(classes, prio)
        out["classes"] = class_rows(classes, req, prio, run,
                                    lambda **d: deadline_violations(req, config.tbt_sla, **d))
        levels = [c["attainment"] for c in out["classes"] if c["attainment"] is not None]
        score = min(levels) if levels else 1.0
    else:
        overall = _attainment(deadline_violations(req, config.tbt_sla, **run), len(req["finish"]))
        score = 1.0 if overall is None else overall
    out["slo_attainment"] = 0.0 if out.get("slos_met") is False else score
    return out


def with_assessment(config: SimConfig, summary: dict, requests, priority: np.ndarray | None) -> dict:
    """``summary`` judged under ``config`` (a stale judgement replaced); ``requests`` is the per-request
    arrays or a callable returning them (read only when there is something to judge). Arrays of a
    sampled stored run (an ``index`` column) are judged on the sample."""
    out = strip(summary)
    if not judged(config):
        return out
    req = requests() if callable(requests) else requests
    if priority is not None and "index" in req:
        priority = np.asarray(priority)[req["index"]]
    return out | assess(config, req, priority)


# ------------------------------------------------------------------ text --
def _seconds(v) -> str:
    return units.seconds(v)


def assessment_text(summary: dict) -> str:
    """Lines for ``batchlab run``: each SLO met or missed with its margin, and each class's share,
    attainment and percentiles; empty without a judgement."""
    lines = []
    for r in summary.get("slos") or []:
        verdict = "met" if r["met"] else "MISSED"
        if r["measured_s"] is None:
            lines.append(f"  SLO {r['slo']:<22} {verdict}: no request has {r['metric']}")
            continue
        margin = r["margin_s"]
        sign = "+" if margin > 0 else "-" if margin < 0 else "±"
        lines.append(f"  SLO {r['slo']:<22} {verdict}: p{r['percentile']:g} {_seconds(r['measured_s'])} "
                     f"(limit {duration_text(r['limit_s'])}, margin {sign}{_seconds(abs(margin))})")
    for c in summary.get("classes") or []:
        deadlines = ", ".join(f"{k} {'off' if c[f'd_{k}_s'] is None else _seconds(c[f'd_{k}_s'])}"
                              for k in ("ttft", "tbt", "e2e"))
        lines.append(f"  class {c['name']} (priority {c['priority']}): {c['requests']:,} requests "
                     f"({units.pct(c['share'])}), attainment {units.pct(c['attainment'], 'no deadline')} "
                     f"[{deadlines}]")
        lines.append(f"    TTFT p50/p90/p99 {'/'.join(_seconds(c[f'ttft_p{p}_s']) for p in (50, 90, 99))}  "
                     f"TPOT p50/p90/p99 {'/'.join(_seconds(c[f'tpot_p{p}_s']) for p in (50, 90, 99))}  "
                     f"E2E p99 {_seconds(c['e2e_p99_s'])}"
                     + (f"  rejected {c['rejected']:,}" if c["rejected"] else ""))
    if not lines:
        return ""
    head = "SLOs and request classes"
    if "slo_attainment" in summary:
        head += f" (what capacity and plan compare with --target: {units.pct(summary['slo_attainment'])})"
    return "\n".join([head + ":", *lines])
