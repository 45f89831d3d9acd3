"""Form widgets generated from dataclass field metadata (help, unit, group, choices).

Each field becomes one widget keyed ``<prefix><name>`` in session state. An optional
number (``float | None``: a deadline, max wait, request count, arrival rate) is one number
box whose empty state is the ``None`` meaning, said by its placeholder ("off", "no limit",
"auto: 10,000 requests", "auto: the trace's own rate"): a typed number always takes
effect, and nothing on the form shows a number that will not be used.
Defaults are written into session state before the widgets exist
(:func:`seed`), so the same keys serve fresh sessions, URLs and stored runs.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

import streamlit as st

from batchlab.core.config import MODE_HELP, MODES, ConfigError, SimConfig, config_fields
from batchlab.core.hardware import bundled_models, gpu_catalogue
from batchlab.core.settings_text import parse_lines
from batchlab.workloads.burstgpt import bundled_traces
from batchlab.workloads.spec import SHARING, SYNTHETIC_RATE, SYNTHETIC_REQUESTS, WorkloadSpec, spec_fields

SIM, WL = "sim.", "wl."
MODES_KEY = "cmp.modes"
LABELS = {
    "mode": "Scheduler mode", "k_bins": "Bins K", "batch_size": "Batch size cap B", "b_min": "B_min",
    "b_max": "B_max", "fill": "Batch fill", "max_wait": "Max wait", "bin_policy": "Bin policy",
    "gpus": "GPUs", "replicas": "Replicas", "tp": "Tensor parallelism (GPUs per replica)", "router": "Router",
    "disaggregate": "Prefill:decode replicas (P:D)", "kv_transfer_gbps": "KV transfer bandwidth",
    "interconnect_gbps": "TP interconnect bandwidth", "hidden_size": "Hidden size",
    "scale_grid_tp": "Scale a grid's TP", "seed": "Simulation seed", "d_sla_ttft": "TTFT deadline",
    "d_sla_tbt": "TBT deadline",
    "d_sla_e2e": "End-to-end deadline", "sla_eps": "Tolerance ε_D", "sla_alpha": "Interval width α",
    "sla_delta": "Step δ", "sla_window": "Averaging window", "gpu_mem_gb": "GPU memory",
    "weights_gb": "Model weights", "mem_reserve_frac": "Activation reserve", "kv_layers": "Layers",
    "kv_heads": "KV heads", "head_dim": "Head dimension", "kv_dtype_bytes": "KV element size",
    "mem_margin": "Safety margin", "mem_factor": "Memory factor", "mem_eps": "Overflow probability ε_M",
    "stats_window": "Statistics window", "latency": "Latency model", "prefill_base": "Prefill per batch",
    "prefill_per_token": "Prefill per prompt token", "decode_base": "Decode step t0",
    "decode_per_seq": "Decode per sequence t1", "decode_per_ctx_token": "Decode per context token t2",
    "tbt_sla": "TBT deadline applies to", "kv_reserve": "KV reservation (batch-level)",
    "max_new_tokens": "Max new tokens", "block_size": "KV block size", "kv_watermark": "KV watermark",
    "max_num_batched_tokens": "Tokens per iteration", "sla_control": "Algorithm 2 on",
    "memory_control": "Algorithm 1 (memory bound) on", "enable_prefix_caching": "Prefix caching on",
    # workload
    "trace": "Trace excerpt", "workload_seed": "Workload seed", "num_requests": "Requests", "offset": "Window offset",
    "keep_failed": "Keep failed rows",
    "arrival": "Arrivals", "rate": "Arrival rate", "gamma_shape": "Gamma shape", "rps_scaling": "Time compression",
    "real_timestamps": "Real timestamps", "prompt_lengths": "Prompt lengths", "output_lengths": "Output lengths",
    "predictor": "Output-length predictor", "priority_mix": "Priority classes",
    "hash_block": "Tokens per hash id", "system_prompts": "Shared system prompts",
    "system_prompt_tokens": "System prompt length", "system_zipf": "System prompt popularity skew",
    "conversation_turns": "Conversation turns", "think_time": "Think time between turns",
}
# units for numbers whose metadata leaves the unit empty
EXTRA_UNITS = {"gpus": "GPUs", "k_bins": "bins", "mem_reserve_frac": "fraction", "mem_factor": "fraction",
               "mem_eps": "probability", "kv_layers": "layers", "kv_heads": "heads", "head_dim": "elements",
               "kv_watermark": "fraction", "hidden_size": "elements"}
# what an empty optional number means: short for the box's placeholder, in full for its help
EMPTY_MEANS = {
    "d_sla_ttft": ("off", "the deadline is off"), "d_sla_tbt": ("off", "the deadline is off"),
    "d_sla_e2e": ("off", "the deadline is off"), "max_wait": ("no limit", "no limit"),
    ("num_requests", "synthetic"): (f"auto: {SYNTHETIC_REQUESTS:,}", f"auto, {SYNTHETIC_REQUESTS:,} requests"),
    ("num_requests", "trace"): ("auto: all rows", "auto, every row of the trace from the offset"),
    ("rate", "synthetic"): (f"auto: {SYNTHETIC_RATE:g}", f"auto, {SYNTHETIC_RATE:g} req/s"),
    ("rate", "trace"): ("auto: trace", "auto, the trace's own rate"),
    "priority_mix": ("all 0", "every request at priority 0"),
    "system_prompts": ("off", "no shared system prompts"),
    "conversation_turns": ("off", "single requests, no conversations"),
    "max_num_batched_tokens": ("vLLM default", "vLLM 0.33's default for the GPU's memory: 2,048 below 70 GiB, "
                               "8,192 from 70 GiB, 16,384 from 160 GiB"),
    "replicas": ("GPUs / TP", "GPUs / TP replicas: the GPUs box decides"),
    "disaggregate": ("off", "every replica does both prefill and decode"),
}
CHOICE_AUTO = {"fill": "auto", "router": "auto (least_outstanding; batch modes: shared queue)",
               "model": "none (the memory settings as set)", "gpu": "none (the memory settings as set)",
               ("arrival", "synthetic"): "auto (gamma)", ("arrival", "trace"): "auto (trace)"}
# form help that says more than the field's own help
EXTRA_HELP = {
    "batch_size": "The most requests in one batch (static_fifo, multi_bin_fixed). It is a cap: with greedy "
                  "fill a free GPU takes whatever is waiting, up to B, so at light load batches stay small "
                  "(static FIFO with B = 16 at 1 req/s on the default workload averages about 1.7 requests). "
                  "For full batches of B "
                  "choose Batch fill = full, optionally with a Max wait.",
}
SOURCE_LABELS = {"synthetic": "Synthetic (BurstGPT-like)", "bundled": "Bundled BurstGPT excerpt",
                 "upload": "Upload a trace file", "mooncake": "Upload a Mooncake trace"}
# the workload each source reads (the uploads' traces are files the user sent, never a server path)
SOURCE_WORKLOADS = {"synthetic": "synthetic", "bundled": "burstgpt", "upload": "burstgpt", "mooncake": "mooncake"}
UPLOAD_SOURCES = ("upload", "mooncake")
SLA_CONTROLLER = ("sla_eps", "sla_alpha", "sla_delta", "sla_window")
# percentile SLOs and request classes judge a run without changing it: the command line reports them
# (run, capacity, plan; the Sweeps and Plan pages' settings boxes take them too), the Run form does not
JUDGEMENT = ("slo", "classes")
TRACE_ONLY = ("trace", "offset", "keep_failed", "rps_scaling", "real_timestamps")
SHARING_FIELDS = tuple(SHARING)  # synthetic prefix sharing: system prompts, conversations
SYNTHETIC_ONLY = ("prompt_lengths", "output_lengths", "priority_mix", *SHARING_FIELDS)
MOONCAKE_ONLY = ("hash_block",)
SWITCHES = ("system_prompts", "conversation_turns")  # the sharing fields that turn sharing on


# ------------------------------------------------------------------ fields --
def _by_source(table: dict, name: str, source: str, default=None):
    kind = "synthetic" if source == "synthetic" else "trace"
    return table.get((name, kind)) or table.get(name) or default


def empty_means(name: str, source: str = "synthetic", long: bool = False) -> str:
    """What an empty optional number box means: its placeholder, or (``long``) its help."""
    short, full = _by_source(EMPTY_MEANS, name, source, ("auto", "auto"))
    return full if long else short


def sim_fields(group: str | None = None, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    return [f for f in config_fields() if (group is None or f.metadata.get("group") == group)
            and f.name not in exclude]


def workload_fields(source: str, sharing: bool | None = None) -> list[dataclasses.Field]:
    """The WorkloadSpec fields that matter for a workload source (``workload`` itself is the source):
    the trace window for a trace, lengths and prefix sharing for synthetic, hash_block for Mooncake.
    ``sharing``: only the synthetic prefix-sharing fields (True) or all but them (False)."""
    hide = {"workload", "trace_columns"}   # the web's uploads are told apart by content
    if source == "synthetic":
        hide |= {*TRACE_ONLY, *MOONCAKE_ONLY}
    else:
        hide |= set(SYNTHETIC_ONLY)
        if source in UPLOAD_SOURCES:
            hide.add("trace")
        if SOURCE_WORKLOADS.get(source) != "mooncake":
            hide |= set(MOONCAKE_ONLY)
    fields = [f for f in spec_fields() if f.name not in hide]
    if sharing is None:
        return fields
    return [f for f in fields if (f.name in SHARING_FIELDS) == sharing]


def unit(f: dataclasses.Field) -> str:
    return f.metadata.get("unit") or EXTRA_UNITS.get(f.name, "")


def label(f: dataclasses.Field) -> str:
    """``Nice name (unit)``."""
    text = LABELS.get(f.name, f.name.replace("_", " ").capitalize())
    u = unit(f)
    named = u and re.search(rf"\b{re.escape(u)}\b", text, re.IGNORECASE)  # "Requests", "GPUs": no "(unit)"
    return f"{text} ({u})" if u and not named else text


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    t = str(f.type)
    return t.replace(" | None", ""), t.endswith("| None")


def _step(default: float) -> float:
    if not default:
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


# ------------------------------------------------------------ session state --
# the web picks a model and a GPU from the bundled catalogues (a path is the command line's alone)
HARDWARE_PICKERS = {"model": list(bundled_models()), "gpu": list(gpu_catalogue())}
AUTO = "auto"  # selectbox stand-in for None (a None selection would read as "nothing chosen")


def state_entries(f: dataclasses.Field, value: Any, key: str) -> dict[str, Any]:
    """The session-state entries that make ``f``'s widget show ``value``."""
    base, optional = _kind(f)
    if base in ("int", "float"):
        if value is None:
            return {key: None}  # an empty box: off / auto / no limit
        return {key: int(value) if base == "int" else float(value)}
    if optional and value is None:
        return {key: "" if base == "str" and not f.metadata.get("choices") else AUTO}   # an empty text box
    return {key: value}


def seed(fields: Iterable[dataclasses.Field], values: dict, prefix: str, overwrite: bool = False) -> None:
    """Put ``values`` (field name -> value; missing: the field default) into the widgets' state."""
    for f in fields:
        v = values.get(f.name, f.default)
        for k, item in state_entries(f, v, prefix + f.name).items():
            if overwrite or k not in st.session_state:
                st.session_state[k] = item


def seed_settings(settings: dict, overwrite: bool = False) -> None:
    """Seed every form widget from a settings dict (see ``state.default_settings``)."""
    seed(config_fields(), settings["sim"], SIM, overwrite)
    seed(spec_fields(), settings["spec"], WL, overwrite)
    for k, v in ((MODES_KEY, list(settings["modes"])), ("source", settings["source"])):
        if overwrite or k not in st.session_state:
            st.session_state[k] = v


# ----------------------------------------------------------------- widgets --
def render_field(f: dataclasses.Field, key: str, options: list | None = None, source: str = "synthetic") -> Any:
    """One widget for ``f`` (state must be seeded); returns the field's value."""
    base, optional = _kind(f)
    help_text = EXTRA_HELP.get(f.name) or f.metadata.get("help", "")
    text = label(f)
    choices = options if options is not None else f.metadata.get("choices")
    if base == "bool" and optional:
        choices = [AUTO, True, False]
    if choices:
        opts = [AUTO if c is None else c for c in choices]
        if optional and AUTO not in opts:
            opts = [AUTO, *opts]
        current = st.session_state.get(key)
        if f.name == "latency" and isinstance(current, str) and current and current not in opts:
            opts.append(current)  # e.g. a grid named in a URL: keep it, the run reports if it is missing
        elif current not in opts:
            st.session_state[key] = opts[0]
        auto = _by_source(CHOICE_AUTO, f.name, source, "auto")
        value = st.selectbox(text, opts, key=key, help=help_text,
                             format_func=lambda v: auto if v == AUTO else
                             ("yes" if v is True else "no" if v is False else str(v)))
        return None if value == AUTO else value
    if base == "bool":
        return st.checkbox(text, key=key, help=help_text)
    if base in ("int", "float"):
        number_kw: dict = {"step": 1, "format": "%d"} if base == "int" else {
            "step": _step(f.default if f.default is not None else 1.0), "format": "%g"}
        if not optional:
            return st.number_input(text, key=key, help=help_text, **number_kw)
        # value=None: the box may be emptied (the state seeded by seed() decides what it shows)
        return st.number_input(text, key=key, value=None, placeholder=empty_means(f.name, source),
                               help=f"{help_text} Empty box: {empty_means(f.name, source, long=True)}.",
                               **number_kw)
    if optional:   # an empty box: what the field's none means
        value = st.text_input(text, key=key, placeholder=empty_means(f.name, source),
                              help=f"{help_text} Empty box: {empty_means(f.name, source, long=True)}.")
        return value.strip() or None
    return st.text_input(text, key=key, help=help_text)


def render_fields(fields: Iterable[dataclasses.Field], prefix: str, options: dict[str, list] | None = None,
                  source: str = "synthetic") -> dict[str, Any]:
    """Widgets for ``fields`` in a row that wraps (two per row in a wide group, one on a narrow
    screen, so labels and placeholders stay readable); returns name -> value."""
    options = options or {}
    values: dict[str, Any] = {}
    with st.container(horizontal=True, gap="small"):
        for f in fields:
            values[f.name] = render_field(f, prefix + f.name, options.get(f.name), source)
    return values


def mode_help(modes: Iterable[str] = MODES) -> str:
    """Markdown: what each scheduler mode does, two sentences each."""
    return "\n".join(f"- **{m}**: {MODE_HELP.get(m, '')}" for m in modes)


def source_picker() -> str:
    """Where the workload comes from: synthetic, a bundled excerpt, an uploaded BurstGPT CSV or an
    uploaded Mooncake JSONL trace."""
    if st.session_state.get("source") not in SOURCE_LABELS:
        st.session_state["source"] = "synthetic"
    return st.radio("Workload source", list(SOURCE_LABELS), key="source", horizontal=True,
                    format_func=SOURCE_LABELS.get,
                    help="Synthetic requests with BurstGPT-like lengths (optionally sharing system prompts or "
                         "in multi-turn conversations), a BurstGPT excerpt shipped with batchlab, your own "
                         "BurstGPT CSV (6- or 8-column layout), or a Mooncake JSONL trace, whose hash_ids say "
                         "which prompt blocks requests share (for prefix caching).")


@dataclasses.dataclass
class FormValues:
    """What a settings form returned."""

    submitted: bool
    sim: dict
    spec: dict
    modes: list[str]


def settings_form(form_key: str, source: str, latency_options: list[str], submit_label: str,
                  compare: bool = False) -> FormValues:
    """The full settings form: scheduler, cluster and SLA, workload; latency, memory and
    SLA-controller details in expanders. ``compare`` picks several modes instead of one."""
    sim: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    modes: list[str] = []
    with st.form(form_key, border=True):
        if compare:  # the whole width: four chips fit a 900 px window, all seven a 1400 px one
            modes = st.multiselect("Scheduler modes", list(MODES), key=MODES_KEY,
                                   help="Each mode runs on the same workload with the settings below.")
        c1, c2, c3 = st.columns(3, gap="large")
        with c1:
            st.markdown("##### Scheduler")
            if not compare:
                sim["mode"] = render_field(_field("mode"), SIM + "mode")
            with st.expander("What each mode does", icon=":material/help:"):
                st.markdown(mode_help())
            sim |= render_fields(sim_fields("scheduler", exclude=("mode",)), SIM)
        with c2:
            st.markdown("##### Cluster")
            sim |= render_fields(sim_fields("cluster"), SIM)
            st.markdown("##### SLA deadlines")
            sim |= render_fields(sim_fields("sla", exclude=SLA_CONTROLLER + JUDGEMENT), SIM)
            st.caption("Empty a deadline's box to switch it off.")
        with c3:
            st.markdown("##### Workload")
            spec |= render_fields(workload_fields(source, sharing=False), WL,
                                  options={"trace": list(bundled_traces()),
                                           "arrival": _arrivals(source)}, source=source)
            if source == "synthetic":
                sharing = any(st.session_state.get(WL + n) is not None for n in SWITCHES)
                with st.expander("Shared prefixes (prefix caching)", icon=":material/share:", expanded=sharing):
                    spec |= render_fields(workload_fields(source, sharing=True), WL, source=source)
                    st.caption("Requests that share a system prompt, or the turns of a conversation, share KV "
                               "blocks; the continuous modes' prefix caching (Memory model) skips their prefill.")
        e1, e2, e3 = st.columns(3, gap="large")
        with e1.expander("Latency model"):
            sim |= render_fields(sim_fields("latency"), SIM, options={"latency": latency_options})
        with e2.expander("Memory model (Algorithm 1)"):
            sim |= render_fields(sim_fields("memory"), SIM, options=HARDWARE_PICKERS)
        with e3.expander("SLA controller (Algorithm 2)"):
            sim |= render_fields([_field(n) for n in SLA_CONTROLLER], SIM)
        submitted = st.form_submit_button(submit_label, type="primary", icon=":material/play_arrow:")
    if compare:
        sim["mode"] = modes[0] if modes else SimConfig().mode
    spec["workload"] = SOURCE_WORKLOADS.get(source, "synthetic")
    return FormValues(submitted, sim, spec, modes)


ROOFLINE_HELP = ("Estimate iteration times from the model's operators on the GPU (latency = roofline, "
                 "docs/hardware.md) instead of the parametric model: needs both a model and a GPU.")


def hardware_pickers(prefix: str, roofline: bool = True) -> dict[str, str]:
    """For the forms whose settings are typed ``NAME=VALUE`` lines (Sweeps, Plan): a model and a GPU picked
    from the bundled catalogues (:data:`HARDWARE_PICKERS`, never a path; none: the memory settings as set),
    and (``roofline``) a box for the roofline latency. Widgets keyed ``<prefix>model``, ``<prefix>gpu``,
    ``<prefix>roofline``. Returns the settings they stand for (name -> value, only those chosen): give them
    to :func:`with_picked`."""
    picked: dict[str, str] = {}
    with st.container(horizontal=True, gap="small", vertical_alignment="bottom"):
        for name, options in HARDWARE_PICKERS.items():
            value = render_field(_field(name), prefix + name, options)
            if value is not None:
                picked[name] = value
        if roofline and st.checkbox("Roofline latency", key=prefix + "roofline", help=ROOFLINE_HELP):
            picked["latency"] = "roofline"
    return picked


def with_picked(picked: dict[str, str], lines: Iterable[str]) -> list[str]:
    """Settings lines a user typed with the pickers' settings (:func:`hardware_pickers`) put first, exactly as
    if typed there. A setting both picked and typed with another value is a ConfigError naming it (a
    later line would silently win); the same value typed again is accepted, as the core accepts a
    derived setting given its own value."""
    lines = list(lines)
    typed = parse_lines(lines)
    for name, value in picked.items():
        other = typed.get(name, value)
        if str(other).strip().lower() != str(value).lower():
            raise ConfigError(name, f"is set by the picker ({value}); got {'none' if other is None else other} "
                                    f"too in the settings: pick {name} or type it, not both")
    return [f"{name}={value}" for name, value in picked.items()] + lines


def _arrivals(source: str) -> list:
    """The arrival choices of a source (``trace``: a trace's own timestamps)."""
    return [AUTO, "poisson", "gamma"] if source == "synthetic" else [AUTO, "trace", "poisson", "gamma"]


def _field(name: str) -> dataclasses.Field:
    return next(f for f in config_fields() if f.name == name)


def build(sim: dict, spec: dict) -> tuple[SimConfig, WorkloadSpec]:
    """Validate form values: raises ConfigError / SpecError naming the field."""
    return SimConfig(**sim), WorkloadSpec(**spec)
