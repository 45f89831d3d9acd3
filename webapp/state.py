"""Query-parameter round trips: settings, a stored run, a comparison.

URLs the app understands (every result page writes one):

* ``/?run=<hash>`` opens a stored run on the Run page;
* ``/compare?compare=<hash>,<hash>,...`` opens a comparison of stored runs;
* any page: settings that differ from the defaults, by field name
  (``?mode=static_fifo&gpus=8&d_sla_tbt=none``), the workload's ``seed`` as
  ``workload_seed``; ``modes=a,b`` on Compare. ``none`` is a disabled deadline
  or an auto setting. They fill the form, so a URL reproduces a run even when
  the store no longer has it.

Functions here are pure (no Streamlit calls) except :func:`applied_once`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from core.config import MODES, SimConfig, config_fields
from workloads.burstgpt import bundled_traces
from workloads.spec import SpecError, WorkloadSpec, spec_fields
from workloads.workload import WorkloadError

RUN, COMPARE, MODES_KEY = "run", "compare", "modes"
SOURCES = ("synthetic", "bundled", "upload")
DEFAULT_COMPARE = ("static_fifo", "dynamic_no_bins", "multi_bin_dynamic")
_SIM_NAMES = {f.name for f in config_fields()}


def spec_param(name: str) -> str:
    """The query key of a WorkloadSpec field (``workload_`` prefix where SimConfig has the same name)."""
    return f"workload_{name}" if name in _SIM_NAMES else name


_SPEC_BY_PARAM = {spec_param(f.name): f for f in spec_fields()}
_SIM_BY_PARAM = {f.name: f for f in config_fields()}


# ------------------------------------------------------------------ values --
def encode(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def decode(f: dataclasses.Field, text: str) -> Any:
    """Parse query text for ``f`` by its annotated type; ValueError names what was expected."""
    kind = str(f.type)
    optional = kind.endswith("| None")
    base = kind.replace(" | None", "")
    text = text.strip()
    if optional and text.lower() in ("none", "auto", "off", ""):
        return None
    if base == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if base == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if base == "bool":
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    return text


# ---------------------------------------------------------------- settings --
def default_settings() -> dict:
    """The Run form's defaults: SimConfig() and WorkloadSpec() on the synthetic workload."""
    return {"sim": SimConfig().to_dict() | {"fill": None}, "spec": WorkloadSpec().to_dict(),
            "source": "synthetic", "modes": list(DEFAULT_COMPARE)}


def source_of(spec: Mapping) -> str:
    if spec.get("workload", "synthetic") == "synthetic":
        return "synthetic"
    trace = str(spec.get("trace", ""))
    return "bundled" if trace.removesuffix(".csv") in bundled_traces() else "upload"


def settings_from_params(params: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Settings (``default_settings`` shape) from query parameters, and one problem per bad value."""
    settings = default_settings()
    problems: list[str] = []
    for key, raw in params.items():
        text = raw[-1] if isinstance(raw, list) else str(raw)
        if key in (RUN, COMPARE):
            continue
        if key == MODES_KEY:
            modes = [m.strip() for m in text.split(",") if m.strip()]
            bad = [m for m in modes if m not in MODES]
            if bad:
                problems.append(f"modes: unknown mode(s) {', '.join(bad)}")
            settings["modes"] = [m for m in modes if m in MODES] or list(DEFAULT_COMPARE)
            continue
        if key in _SIM_BY_PARAM:
            f, target = _SIM_BY_PARAM[key], settings["sim"]
        elif key in _SPEC_BY_PARAM:
            f, target = _SPEC_BY_PARAM[key], settings["spec"]
        else:
            problems.append(f"{key}: unknown setting, ignored")
            continue
        try:
            target[f.name] = decode(f, text)
        except ValueError as exc:
            problems.append(f"{key}: {exc}; the default is used")
    settings["source"] = source_of(settings["spec"])
    return settings, problems


def settings_to_params(sim: SimConfig | Mapping, spec: WorkloadSpec | Mapping | None,
                       modes: list[str] | None = None) -> dict[str, str]:
    """Query parameters for the settings that differ from the defaults."""
    sim_d = sim.to_dict() if isinstance(sim, SimConfig) else dict(sim)
    out: dict[str, str] = {}
    if modes is not None and list(modes) != list(DEFAULT_COMPARE):
        out[MODES_KEY] = ",".join(modes)
    for f in config_fields():
        if modes is not None and f.name == "mode":
            continue
        default = None if f.name == "fill" else f.default
        v = sim_d.get(f.name, default)
        if f.name == "fill" and isinstance(sim, SimConfig) and v == SimConfig(mode=sim.mode).fill:
            continue  # the mode's own default fill
        if v != default:
            out[f.name] = encode(v)
    if spec is None:
        return out
    spec_obj = spec if isinstance(spec, WorkloadSpec) else _spec_or_none(spec)
    spec_d = spec.to_dict() if isinstance(spec, WorkloadSpec) else dict(spec)
    for f in spec_fields():
        v = spec_d.get(f.name, f.default)
        if v == f.default or (spec_obj is not None and _same_workload(spec_obj, f.name, f.default)):
            continue
        out[spec_param(f.name)] = encode(v)
    return out


def _spec_or_none(d: Mapping) -> WorkloadSpec | None:
    try:
        return WorkloadSpec.from_dict(dict(d))
    except (WorkloadError, TypeError):
        return None


def _same_workload(spec: WorkloadSpec, name: str, default: Any) -> bool:
    """True when resetting ``name`` to its default builds the same workload."""
    try:
        return spec.replace(**{name: default}).relevant_dict() == spec.relevant_dict()
    except (SpecError, WorkloadError, TypeError):
        return False


def settings_from_run(config: SimConfig, workload_identity: Mapping | None) -> dict:
    """Form settings that reproduce a stored run (its workload spec if the identity has one)."""
    settings = default_settings()
    settings["sim"] = config.to_dict()
    if config.fill == SimConfig(mode=config.mode).fill:
        settings["sim"]["fill"] = None  # the mode's own default: keep it "auto"
    spec = dict((workload_identity or {}).get("spec") or {})
    known = {f.name for f in spec_fields()}
    settings["spec"].update({k: v for k, v in spec.items() if k in known})
    settings["source"] = source_of(settings["spec"])
    return settings


# ------------------------------------------------------------------ hashes --
def run_param(params: Mapping[str, Any]) -> str | None:
    raw = params.get(RUN)
    text = (raw[-1] if isinstance(raw, list) else raw) or ""
    return text.strip() or None


def compare_param(params: Mapping[str, Any]) -> list[str]:
    raw = params.get(COMPARE)
    text = (raw[-1] if isinstance(raw, list) else raw) or ""
    return list(dict.fromkeys(h.strip() for h in str(text).split(",") if h.strip()))


def signature(params: Mapping[str, Any]) -> str:
    return json.dumps(sorted((k, v if isinstance(v, str) else list(v)) for k, v in params.items()))


def applied_once(page: str, params: Mapping[str, Any]) -> bool:
    """True the first time this page sees these query parameters in this session."""
    import streamlit as st

    key = f"_applied_params.{page}"
    sig = signature(params)
    if st.session_state.get(key) == sig:
        return False
    st.session_state[key] = sig
    return True


def mark_applied(page: str, params: Mapping[str, Any]) -> None:
    """Record parameters this page wrote itself, so the next rerun does not re-apply them."""
    import streamlit as st

    st.session_state[f"_applied_params.{page}"] = signature(params)
