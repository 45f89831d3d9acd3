"""Build a :class:`Workload` from a :class:`WorkloadSpec`, memoized on disk.

The memo key is the spec's relevant settings plus, for a trace, the sha256 of
the file's bytes, so an edited file is never served stale. The cached value is
the plain arrays (prefix keys as a dict of block, offsets and keys, only when the
workload has them: a spec that makes them has settings no older key holds); the
Workload is rebuilt (and re-validated) on every call.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .burstgpt import MAX_UPLOAD_BYTES, TraceData, bundled_traces, file_sha256, resolve_trace
from .cache import memoize
from .fields import shown
from .limits import check_span
from .mooncake import resolve_mooncake
from .predictors import parse_predictor, predict
from .spec import SpecError, WorkloadSpec
from .synthetic import (
    BURSTGPT_OUTPUT,
    BURSTGPT_PROMPT,
    OUTPUT_MAX,
    PROMPT_MAX,
    arrival_times,
    conversation_starts,
    draw_conversations,
    parse_length_spec,
    parse_priority_mix,
    parse_ramp_up,
    prefix_keys,
    sample_lengths,
    sample_priorities,
    streams,
    zipf_choice,
)
from .trace_formats import detect_format, load_trace
from .workload import PrefixKeys, Workload, WorkloadError

GENERATOR = "batchlab-workloads/2"  # bump when the same spec would build different arrays (2: 16K/4K clips)
# bump when a spec that built arrays may now be refused or build more (2: workloads.limits; 3: a trace's
# optional Priority column)
NAMESPACE = "workload-v3"
_sha_memo: dict[tuple[str, int, int], str] = {}


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload ``spec`` describes (synthetic, or a window of a trace in any format it reads)."""
    if not isinstance(spec, WorkloadSpec):
        raise TypeError(f"build_workload needs a WorkloadSpec, got {type(spec).__name__}")
    if spec.workload == "synthetic":
        parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "generator": GENERATOR}, lambda: _synthetic(spec))
    else:
        path = _trace_file(spec.workload, spec.trace)
        spec = concrete_format(spec, path)
        sha = _path_sha256(path)
        parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "trace_sha256": sha, "generator": GENERATOR},
                        lambda: _from_trace(spec, path, sha))
    return _workload(parts)


def concrete_format(spec: WorkloadSpec, source) -> WorkloadSpec:
    """``spec`` with workload ``trace`` replaced by the format it reads: csv when trace_columns maps the
    columns, else the format detected from ``source``'s content (so a detected trace has the identity of
    the same file named by its format)."""
    if spec.workload != "trace":
        return spec
    return spec.replace(workload="csv" if spec.trace_columns else detect_format(source))


def load_trace_bytes(data: bytes, name: str = "upload.csv", spec: WorkloadSpec | None = None,
                     **options) -> Workload:
    """A workload from an uploaded trace; ``options`` are WorkloadSpec fields (window etc.).

    The upload's format is detected from its content when the workload (``options``, else ``spec``)
    is burstgpt or trace (the web's general upload source; synthetic: none given); another trace
    workload (the web's Mooncake uploader: mooncake) reads it in its own format. ``name`` is only a
    label: nothing is read from a path.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WorkloadError(f"trace: expected the upload's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_UPLOAD_BYTES:
        raise WorkloadError(f"trace: upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
    base = spec if spec is not None else WorkloadSpec()
    name = str(name) or "upload.csv"
    kind = options.pop("workload", base.workload)
    if kind in ("burstgpt", "trace", "synthetic"):
        kind = "trace"
    spec = concrete_format(base.replace(workload=kind, trace=name, **options), data)
    sha = hashlib.sha256(data).hexdigest()
    parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "trace_sha256": sha, "generator": GENERATOR},
                    lambda: _from_trace(spec, data, sha))
    return _workload(parts)


# ------------------------------------------------------------------ helpers
def _trace_file(workload: str, trace: str) -> Path:
    """The file a trace workload reads: burstgpt (and trace, detected) may name a bundled excerpt;
    mooncake and the other formats need a path (none is bundled)."""
    if workload == "mooncake":
        return resolve_mooncake(trace)
    if workload not in ("burstgpt", "trace") and str(trace).removesuffix(".csv") in bundled_traces():
        raise WorkloadError(f"trace: workload {workload} needs the path of a trace file, or an upload; "
                            f"{shown(str(trace))} is a bundled BurstGPT excerpt")
    return resolve_trace(trace)


def _path_sha256(path: Path) -> str:
    """File sha256, remembered in-process while size and mtime stay the same."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_memo:
        _sha_memo[key] = file_sha256(path)
    return _sha_memo[key]


def _parts(arrival, prompt, output, predicted, confusion_p, identity, priority=None,
           prefix: PrefixKeys | None = None) -> dict:
    """What the cache stores: plain arrays (the prefix keys as a dict of them)."""
    parts = {"arrival": np.asarray(arrival, dtype=np.float64), "prompt": np.asarray(prompt, dtype=np.int64),
             "output": np.asarray(output, dtype=np.int64), "predicted": predicted,
             "identity": identity, "confusion_p": float(confusion_p)}
    if priority is not None:
        parts["priority"] = priority
    if prefix is not None:
        parts["prefix"] = {"block": prefix.block, "offsets": prefix.offsets, "keys": prefix.keys}
    return parts


def _workload(parts: dict) -> Workload:
    """The Workload of cached parts (the prefix keys rebuilt, and so re-validated)."""
    if "prefix" in parts:
        parts = {**parts, "prefix": PrefixKeys(**parts["prefix"])}
    return Workload(**parts)


def _synthetic(spec: WorkloadSpec) -> dict:
    r = spec.resolved()
    rng = streams(r.workload_seed)
    n = r.num_requests
    prompt_spec = parse_length_spec(r.prompt_lengths, "prompt_lengths", PROMPT_MAX, BURSTGPT_PROMPT)
    output_spec = parse_length_spec(r.output_lengths, "output_lengths", OUTPUT_MAX, BURSTGPT_OUTPUT)
    if r.conversation_turns is None:
        arrival = arrival_times(r.arrival, n, r.rate, rng["arrival"], r.gamma_shape, ramp=_ramp(r))
        prompt = sample_lengths(prompt_spec, n, rng["prompt"], PROMPT_MAX)
        output = sample_lengths(output_spec, n, rng["output"], OUTPUT_MAX)
        system = _system_prompts(r, n, rng["system"])
        if system is not None:
            prompt = np.minimum(prompt + r.system_prompt_tokens, PROMPT_MAX)
        prefix = prefix_keys(prompt + output, system, r.system_prompt_tokens, None) if system is not None else None
    else:
        arrival, prompt, output, prefix = _conversations(r, prompt_spec, output_spec, rng)
    predicted, p = predict(parse_predictor(r.predictor), output, rng["predictor"])
    priority = (sample_priorities(parse_priority_mix(r.priority_mix), n, rng["priority"])
                if r.priority_mix is not None else None)
    identity = {"kind": "synthetic", "generator": GENERATOR, "spec": spec.relevant_dict(),
                "trace_sha256": None, "label": _synthetic_label(r)}
    return _parts(arrival, prompt, output, predicted, p, identity, priority, prefix)


def _system_prompts(r: WorkloadSpec, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """Which system prompt (0-based) each of ``count`` requests or conversations starts with; None: off."""
    if r.system_prompts is None:
        return None
    return zipf_choice(r.system_prompts, r.system_zipf, count, rng)


def _conversations(r: WorkloadSpec, prompt_spec, output_spec, rng) -> tuple:
    """Arrivals, prompts, outputs and prefix keys of ``r.num_requests`` conversation turns."""
    head = r.system_prompt_tokens if r.system_prompts is not None else 0
    talk = draw_conversations(
        r.num_requests, r.conversation_turns, r.think_time,
        conversation_starts(r.arrival, r.rate, rng["arrival"], r.gamma_shape),
        lambda k: sample_lengths(prompt_spec, k, rng["prompt"], PROMPT_MAX),
        lambda k: sample_lengths(output_spec, k, rng["output"], OUTPUT_MAX),
        rng["conversation"], head)
    check_span(float(talk.arrival[-1]), "think_time",
               f"conversations of {r.conversation_turns} turns {r.think_time:g} s apart at {r.rate:g} per second")
    started = int(talk.conversation.max()) + 1
    system = _system_prompts(r, started, rng["system"])
    system = system[talk.conversation] if system is not None else None
    prefix = prefix_keys(talk.prompt + talk.output, system, r.system_prompt_tokens, talk.conversation)
    return talk.arrival, talk.prompt, talk.output, prefix


def _ramp(r: WorkloadSpec):
    """The spec's ramp-up profile, or None."""
    return parse_ramp_up(r.ramp_up) if r.ramp_up is not None else None


def _synthetic_label(r: WorkloadSpec) -> str:
    shape = f"gamma(shape {r.gamma_shape:g})" if r.arrival == "gamma" else r.arrival
    mix = f", priorities {r.priority_mix}" if r.priority_mix is not None else ""
    shared = ""
    if r.system_prompts is not None:
        shared += (f", {r.system_prompts} system prompt(s) of {r.system_prompt_tokens} tokens "
                   f"(zipf {r.system_zipf:g})")
    if r.conversation_turns is not None:
        shared += f", conversations of {r.conversation_turns} turns (think {r.think_time:g} s)"
    unit = "conversations/s" if r.conversation_turns is not None else "req/s"
    rate = f"on a {_ramp(r).text()}" if r.ramp_up is not None else f"at {r.rate:g} {unit}"
    return (f"synthetic {r.num_requests:,} req, {shape} {rate}, prompt {r.prompt_lengths}, "
            f"output {r.output_lengths}, {r.predictor}{mix}{shared}, seed {r.workload_seed}")


def _trace_arrivals(r: WorkloadSpec, data: TraceData, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Arrival times for a trace window and a few words on how they were made."""
    t, n = data.arrival, len(data.arrival)
    span = float(t[-1])
    if r.arrival == "trace":
        if r.rate is not None:
            if n < 2 or span <= 0:
                raise SpecError("rate", f"cannot rescale a window of {n} request(s) spanning 0 s")
            check_span((n - 1) / r.rate, "rate", f"the window's {n:,} requests at {r.rate:g} req/s")
            return t * ((n - 1) / (r.rate * span)), f"timestamps rescaled to {r.rate:g} req/s"
        if r.rps_scaling != 1.0:
            check_span(span / r.rps_scaling, "rps_scaling",
                       f"the window spans {span:.3g} s, which compressed {r.rps_scaling:g}x")
            return t / r.rps_scaling, f"timestamps compressed {r.rps_scaling:g}x"
        return t, "real timestamps"
    shape = f"gamma(shape {r.gamma_shape:g})" if r.arrival == "gamma" else r.arrival
    if r.ramp_up is not None:
        ramp = _ramp(r)
        return arrival_times(r.arrival, n, 1.0, rng, r.gamma_shape, ramp=ramp), f"{shape} arrivals on a {ramp.text()}"
    rate, field = r.rate, "rate"
    if rate is None:
        if n < 2 or span <= 0:
            raise SpecError("rate", "the trace window spans 0 s, so it has no mean rate to re-draw "
                            "arrivals at; set rate")
        rate, field = (n - 1) / span * r.rps_scaling, "rps_scaling"
    return (arrival_times(r.arrival, n, rate, rng, r.gamma_shape, field),
            f"{shape} arrivals at {rate:.4g} req/s")


def _from_trace(spec: WorkloadSpec, source, sha: str) -> dict:
    r = spec.resolved()
    data = load_trace(r.workload, source, offset=r.offset, num_requests=r.num_requests, keep_failed=r.keep_failed,
                      hash_block=r.hash_block, columns=r.trace_columns)
    if not data.timed:
        _need_redrawn(r, data)
    rng = streams(r.workload_seed)
    arrival, timing = _trace_arrivals(r, data, rng["arrival"])
    predicted, p = predict(parse_predictor(r.predictor), data.output, rng["predictor"])
    name = r.trace if r.trace in bundled_traces() else os.path.basename(r.trace) or r.trace
    last = data.offset + data.window_rows - 1
    failed = (f"{data.failed} failed {'kept' if r.keep_failed else 'dropped'}" if data.failed
              else "no failed rows")
    # burstgpt and mooncake labels as before the other formats came (the label is part of a run's identity)
    kind = "" if r.workload in ("burstgpt", "mooncake") else f"{r.workload} trace "
    label = (f"{kind}{name} rows {data.offset}-{last} ({len(arrival):,} req, {failed}), {timing}, "
             f"{r.predictor}" + (", re-sorted by time" if data.resorted else ""))
    identity = {"kind": r.workload, "generator": GENERATOR, "spec": spec.relevant_dict(),
                "trace_sha256": sha, "label": label, "trace_rows": data.total_rows,
                "window_rows": data.window_rows, "failed_dropped": data.failed_dropped,
                "failed_kept": data.failed_kept, "resorted": data.resorted, "layout": data.layout}
    return _parts(arrival, data.prompt, data.output, predicted, p, identity, data.priority, data.prefix)


def _need_redrawn(r: WorkloadSpec, data: TraceData) -> None:
    """A trace without arrival times (``data.layout`` says which) needs re-drawn arrivals at a given rate."""
    if r.arrival == "trace":
        raise SpecError("arrival", f"the {data.layout} trace has no arrival times to replay; set arrival=poisson "
                        "or gamma and a rate to draw them")
    if r.rate is None:
        raise SpecError("rate", f"the {data.layout} trace has no arrival times to take a mean rate from; set "
                        "the rate to draw arrivals at")
