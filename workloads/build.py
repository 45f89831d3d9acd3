"""Build a :class:`Workload` from a :class:`WorkloadSpec`, memoized on disk.

The memo key is the spec's relevant settings plus, for a trace, the sha256 of
the file's bytes, so an edited file is never served stale. The cached value is
the plain arrays; the Workload is rebuilt (and re-validated) on every call.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .burstgpt import MAX_UPLOAD_BYTES, TraceData, bundled_traces, file_sha256, load_burstgpt, resolve_trace
from .cache import memoize
from .limits import check_span
from .predictors import parse_predictor, predict
from .spec import SpecError, WorkloadSpec
from .synthetic import (
    BURSTGPT_OUTPUT,
    BURSTGPT_PROMPT,
    OUTPUT_MAX,
    PROMPT_MAX,
    arrival_times,
    parse_length_spec,
    parse_priority_mix,
    sample_lengths,
    sample_priorities,
    streams,
)
from .workload import Workload, WorkloadError

GENERATOR = "batchlab-workloads/2"  # bump when the same spec would build different arrays (2: 16K/4K clips)
# bump when a spec that built arrays may now be refused or build more (2: workloads.limits; 3: a trace's
# optional Priority column)
NAMESPACE = "workload-v3"
_sha_memo: dict[tuple[str, int, int], str] = {}


def build_workload(spec: WorkloadSpec) -> Workload:
    """The workload ``spec`` describes (synthetic or a BurstGPT trace window)."""
    if not isinstance(spec, WorkloadSpec):
        raise TypeError(f"build_workload needs a WorkloadSpec, got {type(spec).__name__}")
    if spec.workload == "synthetic":
        parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "generator": GENERATOR}, lambda: _synthetic(spec))
    else:
        path = resolve_trace(spec.trace)
        sha = _path_sha256(path)
        parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "trace_sha256": sha, "generator": GENERATOR},
                        lambda: _from_trace(spec, path, sha))
    return Workload(**parts)


def load_trace_bytes(data: bytes, name: str = "upload.csv", spec: WorkloadSpec | None = None,
                     **options) -> Workload:
    """A workload from an uploaded BurstGPT CSV; ``options`` are WorkloadSpec fields (window etc.)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WorkloadError(f"trace: expected the upload's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_UPLOAD_BYTES:
        raise WorkloadError(f"trace: upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
    base = spec if spec is not None else WorkloadSpec()
    spec = base.replace(workload="burstgpt", trace=str(name) or "upload.csv", **options)
    sha = hashlib.sha256(data).hexdigest()
    parts = memoize(NAMESPACE, {"spec": spec.relevant_dict(), "trace_sha256": sha, "generator": GENERATOR},
                    lambda: _from_trace(spec, data, sha))
    return Workload(**parts)


# ------------------------------------------------------------------ helpers
def _path_sha256(path: Path) -> str:
    """File sha256, remembered in-process while size and mtime stay the same."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_memo:
        _sha_memo[key] = file_sha256(path)
    return _sha_memo[key]


def _parts(arrival, prompt, output, predicted, confusion_p, identity, priority=None) -> dict:
    parts = {"arrival": np.asarray(arrival, dtype=np.float64), "prompt": np.asarray(prompt, dtype=np.int64),
             "output": np.asarray(output, dtype=np.int64), "predicted": predicted,
             "identity": identity, "confusion_p": float(confusion_p)}
    if priority is not None:
        parts["priority"] = priority
    return parts


def _synthetic(spec: WorkloadSpec) -> dict:
    r = spec.resolved()
    rng = streams(r.workload_seed)
    n = r.num_requests
    arrival = arrival_times(r.arrival, n, r.rate, rng["arrival"], r.gamma_shape)
    prompt = sample_lengths(parse_length_spec(r.prompt_lengths, "prompt_lengths", PROMPT_MAX, BURSTGPT_PROMPT),
                            n, rng["prompt"], PROMPT_MAX)
    output = sample_lengths(parse_length_spec(r.output_lengths, "output_lengths", OUTPUT_MAX, BURSTGPT_OUTPUT),
                            n, rng["output"], OUTPUT_MAX)
    predicted, p = predict(parse_predictor(r.predictor), output, rng["predictor"])
    priority = (sample_priorities(parse_priority_mix(r.priority_mix), n, rng["priority"])
                if r.priority_mix is not None else None)
    shape = f"gamma(shape {r.gamma_shape:g})" if r.arrival == "gamma" else r.arrival
    mix = f", priorities {r.priority_mix}" if r.priority_mix is not None else ""
    label = (f"synthetic {n:,} req, {shape} at {r.rate:g} req/s, prompt {r.prompt_lengths}, "
             f"output {r.output_lengths}, {r.predictor}{mix}, seed {r.workload_seed}")
    identity = {"kind": "synthetic", "generator": GENERATOR, "spec": spec.relevant_dict(),
                "trace_sha256": None, "label": label}
    return _parts(arrival, prompt, output, predicted, p, identity, priority)


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
    rate, field = r.rate, "rate"
    if rate is None:
        if n < 2 or span <= 0:
            raise SpecError("rate", "the trace window spans 0 s, so it has no mean rate to re-draw "
                            "arrivals at; set rate")
        rate, field = (n - 1) / span * r.rps_scaling, "rps_scaling"
    shape = f"gamma(shape {r.gamma_shape:g})" if r.arrival == "gamma" else r.arrival
    return (arrival_times(r.arrival, n, rate, rng, r.gamma_shape, field),
            f"{shape} arrivals at {rate:.4g} req/s")


def _from_trace(spec: WorkloadSpec, source, sha: str) -> dict:
    r = spec.resolved()
    data = load_burstgpt(source, offset=r.offset, num_requests=r.num_requests, keep_failed=r.keep_failed)
    rng = streams(r.workload_seed)
    arrival, timing = _trace_arrivals(r, data, rng["arrival"])
    predicted, p = predict(parse_predictor(r.predictor), data.output, rng["predictor"])
    name = r.trace if r.trace in bundled_traces() else os.path.basename(r.trace) or r.trace
    last = data.offset + data.window_rows - 1
    failed = (f"{data.failed} failed {'kept' if r.keep_failed else 'dropped'}" if data.failed
              else "no failed rows")
    label = (f"{name} rows {data.offset}-{last} ({len(arrival):,} req, {failed}), {timing}, "
             f"{r.predictor}" + (", re-sorted by time" if data.resorted else ""))
    identity = {"kind": "burstgpt", "generator": GENERATOR, "spec": spec.relevant_dict(),
                "trace_sha256": sha, "label": label, "trace_rows": data.total_rows,
                "window_rows": data.window_rows, "failed_dropped": data.failed_dropped,
                "failed_kept": data.failed_kept, "resorted": data.resorted, "layout": data.layout}
    return _parts(arrival, data.prompt, data.output, predicted, p, identity, data.priority)
