"""Query-parameter round trips: settings, a stored run, a comparison, a sweep or a plan.

URLs the app understands (every result page writes one):

* ``/?run=<hash>&mode=<mode>&<settings>`` opens a stored run on the Run page;
* ``/compare?compare=<h1>,<h2>,...&modes=<m1>,<m2>,...&<settings>`` opens a comparison;
* ``/sweeps?sweep=<key>&spec=<definition>`` opens a sweep, a capacity comparison or the suite,
  ``/plan?plan=<key>&spec=<definition>`` a capacity plan;
* any page: settings that differ from the defaults, by field name
  (``?mode=static_fifo&gpus=8&d_sla_tbt=none``), the workload's ``seed`` as
  ``workload_seed``. Values are read and written as :mod:`core.settings_text` says (``none``
  is a disabled deadline or an auto setting); a value it refuses is reported and the default used.

A link carries enough to recompute every result it names, even on a store that has none of
them, and never opens another result under the same link:

* a run link has the run's settings, its mode always (so the default run's link is not a bare
  hash); a bare ``?run=<hash>`` (links before the mode was written) is the default settings'
  run only when the hash is theirs;
* a comparison link has one mode per run in ``modes`` (always, defaults included), every
  setting the runs share once, and a setting whose value differs between the runs repeated
  once per run, in run order (``gpus=4&gpus=8``);
* a sweep or plan link names the job by its content, the key of its plan
  (:func:`store.sweep_jobs.plan_key`: a hash of the plan and the simulator version, never a
  store's row number), and carries the plan itself in ``spec`` (compressed JSON, base64url,
  :func:`encode_plan`), which a store without that key can run again. An old row-number link
  (``?sweep=3``) is not opened: a row number names a row of one store, not a sweep.

Only an uploaded trace's bytes cannot travel: the link names the file. A link never names a
server file: a ``trace`` that is a path, or a ``latency`` of ``grid:PATH``, is reported and the
default used (:mod:`webapp.guard`); a sweep's or plan's uploaded trace travels as its file name.

Functions here are pure (no Streamlit calls) except :func:`applied_once` and :func:`mark_applied`.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

from batchlab.core.config import COMPARE_MODES, MODES, ConfigError, SimConfig, config_fields
from batchlab.core.settings_text import SettingError, parse_setting, setting_field, setting_text
from batchlab.workloads.burstgpt import bundled_traces
from batchlab.workloads.spec import SpecError, WorkloadSpec, spec_fields
from batchlab.workloads.workload import WorkloadError

from .guard import bundled_trace, latency_problem, link_trace_problem

RUN, COMPARE, MODES_KEY = "run", "compare", "modes"
SPEC = "spec"  # a sweep or plan link's definition of its job
SPEC_MAX_CHARS = 16_384  # a longer definition is refused unread
PLAN_MAX_BYTES = 1 << 20  # what a definition may inflate to
_KEY = re.compile(r"[0-9a-f]{16}")
SOURCES = ("synthetic", "bundled", "upload", "mooncake")
DEFAULT_COMPARE = COMPARE_MODES
_SIM_NAMES = {f.name for f in config_fields()}


def spec_param(name: str) -> str:
    """The query key of a WorkloadSpec field (``workload_`` prefix where SimConfig has the same name)."""
    return f"workload_{name}" if name in _SIM_NAMES else name


_SPEC_BY_PARAM = {spec_param(f.name): f for f in spec_fields()}
_SIM_BY_PARAM = {f.name: f for f in config_fields()}


# ------------------------------------------------------------------ values --
def refused(f: dataclasses.Field, value: Any) -> str | None:
    """Why a link cannot carry ``value`` for ``f`` (it names a file), else None."""
    if f.name == "trace":
        return link_trace_problem(value)
    if f.name == "latency":
        return latency_problem(value)
    return None


def _param_field(key: str) -> dataclasses.Field:
    """The field a query key names (its name, dashes allowed, or a spec's ``workload_`` key)."""
    return _SIM_BY_PARAM.get(key) or _SPEC_BY_PARAM.get(key) or setting_field(key)


def _is_sim(f: dataclasses.Field) -> bool:
    return _SIM_BY_PARAM.get(f.name) is f


def _link_value(f: dataclasses.Field, text: str) -> tuple[Any, str | None]:
    """(the value of ``f`` a link's ``text`` gives, None) or (None, the problem: the default is used)."""
    try:
        value = parse_setting(f.name, text)
    except SettingError as exc:
        return None, f"{exc}; the default is used"
    problem = refused(f, value)
    return (None, f"{problem}; the default is used") if problem else (value, None)


# ---------------------------------------------------------------- settings --
def default_settings() -> dict:
    """The Run form's defaults: SimConfig() and WorkloadSpec() on the synthetic workload."""
    return {"sim": SimConfig().to_dict() | {"fill": None, "router": None}, "spec": WorkloadSpec().to_dict(),
            "source": "synthetic", "modes": list(DEFAULT_COMPARE)}


def source_of(spec: Mapping) -> str:
    """The form's workload source for a spec: synthetic, bundled, upload (a BurstGPT CSV) or mooncake
    (an uploaded Mooncake trace: none is bundled)."""
    workload = spec.get("workload", "synthetic")
    if workload in ("synthetic", "mooncake"):
        return workload
    trace = str(spec.get("trace", ""))
    return "bundled" if trace.removesuffix(".csv") in bundled_traces() else "upload"


def settings_from_params(params: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Settings (``default_settings`` shape) from query parameters, and one problem per bad value."""
    settings = default_settings()
    problems: list[str] = []
    for key, raw in params.items():
        text = _first(raw)
        if key in (RUN, COMPARE):
            continue
        if key == MODES_KEY:
            modes = [m.strip() for m in text.split(",") if m.strip()]
            bad = [m for m in modes if m not in MODES]
            if bad:
                problems.append(f"modes: unknown mode(s) {', '.join(bad)}")
            settings["modes"] = [m for m in modes if m in MODES] or list(DEFAULT_COMPARE)
            continue
        try:
            f = _param_field(key)
        except SettingError as exc:
            problems.append(f"{exc}; ignored")
            continue
        target = settings["sim"] if _is_sim(f) else settings["spec"]
        value, problem = _link_value(f, text)
        if problem:
            problems.append(problem)
            continue
        target[f.name] = value
    settings["source"] = source_of(settings["spec"])
    return settings, problems


def settings_to_params(sim: SimConfig | Mapping, spec: WorkloadSpec | Mapping | None,
                       modes: list[str] | None = None) -> dict[str, str]:
    """Query parameters for the settings that differ from the defaults; with ``modes`` (Compare)
    ``modes`` is always written and ``mode`` never."""
    out: dict[str, str] = {}
    if modes is not None:
        out[MODES_KEY] = ",".join(modes)
    out |= _setting_params(sim, spec, with_mode=modes is None)
    return out


def _mode_fill(mode: Any) -> str | None:
    """The fill a mode has by default (None for a mode this version does not know)."""
    try:
        return SimConfig(mode=mode).fill
    except (ConfigError, TypeError):
        return None


def _setting_params(sim: SimConfig | Mapping, spec: WorkloadSpec | Mapping | None, with_mode: bool) -> dict:
    sim_d = sim.to_dict() if isinstance(sim, SimConfig) else dict(sim)
    mode = sim_d.get("mode", SimConfig().mode)
    mode_fill = _mode_fill(mode)
    out: dict[str, str] = {}
    for f in config_fields():
        if f.name == "mode" and not with_mode:
            continue
        default = None if f.name == "fill" else f.default
        v = sim_d.get(f.name, default)
        if f.name == "fill" and v == mode_fill:
            continue  # the mode's own default fill
        if v != default:
            out[f.name] = setting_text(v)
    if spec is None:
        return out
    spec_obj = spec if isinstance(spec, WorkloadSpec) else _spec_or_none(spec)
    spec_d = spec.to_dict() if isinstance(spec, WorkloadSpec) else dict(spec)
    for f in spec_fields():
        v = spec_d.get(f.name, f.default)
        if v == f.default or (spec_obj is not None and _same_workload(spec_obj, f.name, f.default)):
            continue
        out[spec_param(f.name)] = setting_text(v)
    return out


def _default_text(key: str) -> str:
    """The query text of a setting's default (what a run that omits ``key`` has)."""
    if key in _SIM_BY_PARAM:
        return setting_text(None if key == "fill" else _SIM_BY_PARAM[key].default)
    return setting_text(_SPEC_BY_PARAM[key].default)


def run_params(run_hash: str, settings: Mapping) -> dict[str, str]:
    """The link of one run: its hash and the settings that recompute it, its mode always (the default
    run's link would otherwise be its hash alone, which another store cannot recompute)."""
    mode = settings["sim"].get("mode", SimConfig().mode)
    return {RUN: run_hash, "mode": setting_text(mode)} | settings_to_params(settings["sim"], settings["spec"])


def comparison_params(hashes: list[str], members: list[Mapping]) -> dict[str, str | list[str]]:
    """The link of a comparison: hashes, one mode per run, shared settings once, differing ones
    once per run (a repeated key)."""
    per = [_setting_params(m["sim"], m["spec"], with_mode=False) for m in members]
    out: dict[str, str | list[str]] = {COMPARE: ",".join(hashes),
                                       MODES_KEY: ",".join(m["sim"]["mode"] for m in members)}
    for key in dict.fromkeys(k for p in per for k in p):
        values = [p.get(key, _default_text(key)) for p in per]
        out[key] = values[0] if len(set(values)) == 1 else values
    return out


def members_from_params(params: Mapping[str, Any]) -> tuple[list[dict] | None, list[str]]:
    """The settings of each run a comparison link names (None when the link carries no ``modes``,
    i.e. no settings), and one problem per value that cannot be used."""
    hashes = compare_param(params)
    if MODES_KEY not in params:
        return None, []
    base, _ = settings_from_params({k: _first(v) for k, v in params.items()})  # its problems: apply_url's
    problems: list[str] = []
    modes = [m.strip() for m in _first(params[MODES_KEY]).split(",") if m.strip()]
    n = len(hashes) or len(modes)
    if len(modes) != n or any(m not in MODES for m in modes):
        problems.append(f"modes: {len(modes)} mode(s) for {n} run(s); the link cannot recompute its runs")
        return None, problems
    members = []
    for mode in modes:
        m = json.loads(json.dumps(base))  # a deep copy of plain data
        m["sim"]["mode"] = mode
        members.append(m)
    for key, raw in params.items():
        values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if len(values) < 2 or key in (RUN, COMPARE, MODES_KEY):
            continue
        try:
            f = _param_field(key)
        except SettingError:
            continue  # reported by settings_from_params
        if len(values) != n:
            problems.append(f"{key}: {len(values)} values for {n} runs; the first is used for all")
            continue
        target = "sim" if _is_sim(f) else "spec"
        for m, text in zip(members, values):
            value, problem = _link_value(f, str(text))
            if problem:
                problems.append(problem)
                value = f.default
            m[target][f.name] = value
    for m in members:
        m["source"] = source_of(m["spec"])
        m["modes"] = list(modes)
    return members, problems


# ------------------------------------------------------------- sweeps, plans --
def encode_plan(plan: Mapping) -> str:
    """A stored job's plan as a link carries it: canonical JSON, zlib-compressed, base64url without padding."""
    blob = json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(zlib.compress(blob, 9)).decode().rstrip("=")


def decode_plan(text: Any) -> dict:
    """The plan :func:`encode_plan` wrote; ValueError says why ``text`` is not one (too long, not base64url,
    not compressed JSON, inflating past :data:`PLAN_MAX_BYTES`, not a mapping). Its values are checked
    by :func:`store.sweep_jobs.plan_from_link`, not here."""
    text = _first(text).strip()
    if len(text) > SPEC_MAX_CHARS:
        raise ValueError(f"its definition is longer than {SPEC_MAX_CHARS:,} characters")
    try:
        packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inflate = zlib.decompressobj()
        blob = inflate.decompress(packed, PLAN_MAX_BYTES)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("its definition is cut short or inflates past 1 MiB")
        plan = json.loads(blob)
    except (binascii.Error, zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("its definition is not one batchlab wrote (the link may be cut short)") from None
    if not isinstance(plan, dict):
        raise ValueError("its definition is not a sweep or a plan")
    return plan


def link_trace(trace: Any) -> str:
    """What a link says of a plan's trace: a bundled excerpt's name, else only the file's name (an upload
    kept on the server is a path, which a link never carries)."""
    text = str(trace)
    return text if bundled_trace(text) else text.replace("\\", "/").rsplit("/", 1)[-1]


def link_plan(plan: Mapping) -> dict:
    """``plan`` as its link carries it: every trace it names reduced by :func:`link_trace`."""
    out = json.loads(json.dumps(plan, default=str))  # a deep copy of plain data
    if isinstance(out.get("spec"), dict) and "trace" in out["spec"]:
        out["spec"]["trace"] = link_trace(out["spec"]["trace"])
    vary = out.get("vary")
    if isinstance(vary, dict) and isinstance(vary.get("trace"), list):
        vary["trace"] = [link_trace(t) for t in vary["trace"]]
    return out


def job_params(name: str, key: str, plan: Mapping) -> dict[str, str]:
    """The link of a stored sweep (``name`` = ``sweep``) or plan (``plan``): its key and its definition."""
    return {name: key, SPEC: encode_plan(link_plan(plan))}


def job_ref(raw: Any) -> str | int | None:
    """What a sweep or plan link names: a key (16 hex digits), an old link's row number (an int), or None."""
    text = _first(raw).strip().lower()
    if _KEY.fullmatch(text):
        return text
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


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
def _first(raw: Any) -> str:
    """The first value of a query parameter (a repeated key gives a list)."""
    if isinstance(raw, (list, tuple)):
        return str(raw[0]) if raw else ""
    return "" if raw is None else str(raw)


def read_params(query_params: Any) -> dict[str, str | list[str]]:
    """Query parameters as name -> value, or -> list of values for a repeated key."""
    out: dict[str, str | list[str]] = {}
    for key in query_params:
        values = query_params.get_all(key) if hasattr(query_params, "get_all") else query_params[key]
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        out[key] = values[0] if len(values) == 1 else values
    return out


def run_param(params: Mapping[str, Any]) -> str | None:
    return _first(params.get(RUN)).strip() or None


def compare_param(params: Mapping[str, Any]) -> list[str]:
    text = _first(params.get(COMPARE))
    return list(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))


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
