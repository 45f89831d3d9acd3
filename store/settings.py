"""The settings that tell stored runs apart, read from a run's config and workload identity.

Listings show, next to mode, GPUs and bins, what else most often differs between
runs: the arrival process and rate, the SLA deadlines and the latency model.

``arrival_rate`` is the requested mean rate in req/s; ``None`` means the trace's
own time scale, possibly sped up by ``rps_scaling``. A deadline of ``None`` is
switched off. Keys missing from an older or newer run's JSON read as ``None``.
"""
from __future__ import annotations

SETTINGS_COLUMNS = ("arrival", "arrival_rate", "rps_scaling", "d_sla_ttft", "d_sla_tbt", "d_sla_e2e", "latency")


def run_settings(config: dict | None, workload: dict | None) -> dict:
    """The :data:`SETTINGS_COLUMNS` of one run (``config``: its SimConfig dict; ``workload``: its identity)."""
    config = config if isinstance(config, dict) else {}
    spec = (workload or {}).get("spec") if isinstance(workload, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    return {"arrival": spec.get("arrival"), "arrival_rate": spec.get("rate"), "rps_scaling": spec.get("rps_scaling"),
            "d_sla_ttft": config.get("d_sla_ttft"), "d_sla_tbt": config.get("d_sla_tbt"),
            "d_sla_e2e": config.get("d_sla_e2e"), "latency": config.get("latency")}


def non_default_settings(config: dict, defaults: dict) -> dict:
    """The settings of ``config`` whose value differs from ``defaults`` (settings unknown there included)."""
    return {k: v for k, v in config.items() if k not in defaults or defaults[k] != v}
