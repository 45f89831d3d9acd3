"""Read the result JSON of ``vllm bench serve --save-result --save-detailed`` as a trace.

vLLM's benchmark (vllm/benchmarks/serve.py, vLLM 0.33) writes one JSON object;
with ``--save-detailed`` it keeps per-request lists, one entry per request sent,
in send order:

* ``input_lens``: prompt tokens;
* ``output_lens``: output tokens counted by the client (0 for a failed request);
* ``start_times``: when the request was sent (``time.perf_counter()`` seconds,
  so only differences mean anything; read relative to the earliest);
* ``errors``: the error text, empty for a request that succeeded.

A request whose error is not empty, or whose output is 0, is a failed row
(dropped unless ``keep_failed``). A file without ``start_times`` has no arrival
times, so its arrivals must be re-drawn (arrival=poisson or gamma). Other fields
are ignored. Errors name the field and the request's index (0-based).
"""
from __future__ import annotations

import io
import json
import math
import numbers
from pathlib import Path

import numpy as np

from .burstgpt import Source, _readable
from .fields import shown
from .limits import MAX_TIME_S, MAX_TIME_TEXT, MAX_TOKENS
from .trace_window import TraceData, check_window, cut_window
from .workload import WorkloadError

LENGTHS = ("input_lens", "output_lens")
SENT = "start_times"
ERRORS = "errors"


def _reject_constant(text: str):
    raise ValueError(f"{text} is not a finite number")


def _document(src: Path | io.BytesIO) -> dict:
    raw = src.read_bytes() if isinstance(src, Path) else src.getvalue()
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise WorkloadError(f"trace: not a vllm bench serve result (JSON): {getattr(exc, 'msg', exc)}"
                            + (f" on line {exc.lineno}" if hasattr(exc, "lineno") else "")) from None
    if not isinstance(doc, dict):
        raise WorkloadError(f"trace: a vllm bench serve result is a JSON object, got {type(doc).__name__}")
    for name in LENGTHS:
        if name not in doc:
            raise WorkloadError(f"{name}: field not found in the vllm bench serve result (save it with "
                                "--save-result --save-detailed, which keeps input_lens, output_lens, start_times)")
    return doc


def _list(doc: dict, name: str, n: int | None) -> list:
    value = doc[name]
    if not isinstance(value, list):
        raise WorkloadError(f"trace: field {name}: expected a list (one entry per request), got {shown(value, 40)}")
    if n is not None and len(value) != n:
        raise WorkloadError(f"trace: field {name} has {len(value)} entries but input_lens has {n}")
    return value


def _tokens(values: list, name: str) -> np.ndarray:
    for i, v in enumerate(values):
        if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                and v == math.floor(v) and 0 <= v <= MAX_TOKENS):
            raise WorkloadError(f"trace: field {name}, request {i}: {shown(v, 40)} is not a whole number of "
                                f"tokens between 0 and {MAX_TOKENS:,}")
    return np.array(values, dtype=np.int64)


def _times(values: list) -> np.ndarray:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise WorkloadError(f"trace: field {SENT}, request {i}: {shown(v, 40)} is not a finite number of seconds")
    t = np.array(values, dtype=np.float64)
    first, last = int(np.argmin(t)), int(np.argmax(t))
    if not t[last] - t[first] < MAX_TIME_S:
        raise WorkloadError(f"trace: field {SENT}, request {last}: {t[last] - t[first]:.3g} s after the earliest "
                            f"(request {first}); the engines represent less than {MAX_TIME_TEXT} of simulated time")
    return t


def _failed(doc: dict, n: int) -> np.ndarray:
    """Which requests have an error text (a missing ``errors`` field: none)."""
    if ERRORS not in doc:
        return np.zeros(n, dtype=bool)
    errors = _list(doc, ERRORS, n)
    for i, e in enumerate(errors):
        if e is not None and not isinstance(e, str):
            raise WorkloadError(f"trace: field {ERRORS}, request {i}: {shown(e, 40)} is not a string")
    return np.array([bool(e) for e in errors], dtype=bool)


def load_vllm_bench(source: Source, *, offset: int = 0, num_requests: int | None = None,
                    keep_failed: bool = False) -> TraceData:
    """Read ``num_requests`` requests from request ``offset`` (None: to the end) of a vllm bench result."""
    check_window(offset, num_requests)
    doc = _document(_readable(source))
    prompt = _tokens(_list(doc, "input_lens", None), "input_lens")
    n = len(prompt)
    if n == 0:
        raise WorkloadError("trace: the vllm bench serve result holds no requests (input_lens is empty)")
    output = _tokens(_list(doc, "output_lens", n), "output_lens")
    output[_failed(doc, n)] = 0
    timed = SENT in doc
    t = _times(_list(doc, SENT, n)) if timed else np.zeros(n)
    return cut_window(t, prompt, output, None, offset=offset, num_requests=num_requests, keep_failed=keep_failed,
                      layout="vllm-bench" if timed else "vllm-bench (no start_times)", output_name="output_lens",
                      timed=timed)
