"""Load a Mooncake trace (JSON Lines) into columnar arrays with prefix keys.

Mooncake's traces (``mooncake_trace.jsonl`` and its siblings, published with
Qin et al., "Mooncake: A KVCache-centric Disaggregated Architecture for LLM
Serving", FAST '25; https://github.com/kvcache-ai/Mooncake) hold one request
per line, a JSON object::

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48, ...]}

``timestamp`` is in milliseconds (integer or float); ``hash_ids`` name the
blocks of ``block`` (512) prompt tokens: two requests with the same ids on
blocks 0..j share those tokens. The ids of whole blocks become the workload's
:class:`~workloads.workload.PrefixKeys`; a last id naming a partly filled block
(a request has at most ceil(input_length / block) ids) is left out, since it
vouches for the prompt's tokens in that block only, not for what follows them.
Other fields are ignored.

Rules, as for BurstGPT (:mod:`workloads.burstgpt`):
1. Blank lines are skipped. Every other line must be a JSON object holding the
   four fields: a finite timestamp, whole token counts (input_length >= 1,
   output_length >= 0, at most MAX_TOKENS) and a list of integers (int64) as
   hash_ids; the timestamps must span less than MAX_TIME_S. Errors name the line
   (the first is line 1) and the field, quoting the bad value cut short.
2. Rows are put in time order with a stable sort if the file is not already
   sorted; ``resorted`` says so.
3. The window is ``num_requests`` rows from row ``offset`` (0-based, failed rows
   counted).
4. Failed rows (``output_length == 0``) in the window are dropped unless
   ``keep_failed``; then their output stays 0.
5. Times become seconds, shifted so the first kept request arrives at 0.

Uploads (bytes or a file object) are limited to MAX_UPLOAD_BYTES; a local path
is read whatever its size.
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np

from .burstgpt import Source, _readable, bundled_traces
from .fields import shown
from .limits import MAX_TIME_S, MAX_TIME_TEXT, MAX_TOKENS
from .trace_window import TraceData, check_window, cut_window
from .workload import PrefixKeys, WorkloadError

FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
HASH_BLOCK = 512   # tokens per hash id in Mooncake's traces
MAX_BLOCK = 1_000_000
_INT64 = (-2**63, 2**63 - 1)


def resolve_mooncake(trace: str) -> Path:
    """The path of a Mooncake trace (none is bundled: a bundled BurstGPT name is an error saying so)."""
    name = str(trace)
    if name.removesuffix(".csv") in bundled_traces():
        raise WorkloadError(f"trace: workload mooncake needs the path of a Mooncake JSONL trace, or an "
                            f"upload; {shown(name)} is a bundled BurstGPT excerpt (no Mooncake trace is bundled)")
    path = Path(name).expanduser()
    if not path.is_file():
        raise WorkloadError(f"trace: no such Mooncake trace file: {shown(name)}")
    return path


def _reject_constant(text: str):
    raise ValueError(f"{text} is not a finite number")


def _row(raw: bytes, line: int) -> dict:
    """One line's JSON object; an unreadable line or a missing field is an error naming the line."""
    try:
        row = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        text = raw.decode("utf-8", "replace").strip()
        raise WorkloadError(f"trace: line {line}: not a JSON object ({shown(text, 40)}: "
                            f"{getattr(exc, 'msg', exc)})") from None
    if not isinstance(row, dict):
        raise WorkloadError(f"trace: line {line}: expected a JSON object with {', '.join(FIELDS)}, got "
                            f"{shown(row, 40)}")
    for name in FIELDS:
        if name not in row:
            raise WorkloadError(f"trace: line {line}: the field {name} is missing (a Mooncake trace line "
                                f"holds {', '.join(FIELDS)})")
    return row


def _tokens(value, line: int, name: str, low: int) -> int:
    """A whole token count in [low, MAX_TOKENS] (an integral float such as 12.0 too)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and value == math.floor(value) and low <= value <= MAX_TOKENS)
    if not ok:
        raise WorkloadError(f"trace: line {line}, field {name}: {shown(value, 40)} is not a whole number of "
                            f"tokens between {low} and {MAX_TOKENS:,}")
    return int(value)


def _timestamp(value, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise WorkloadError(f"trace: line {line}, field timestamp: {shown(value, 40)} is not a finite number "
                            "of milliseconds")
    return float(value)


def _hash_ids(value, line: int, prompt: int, block: int) -> list:
    """The int64 hash ids of the prompt's whole blocks (at most ceil(prompt / block) ids are accepted)."""
    if not isinstance(value, list):
        raise WorkloadError(f"trace: line {line}, field hash_ids: {shown(value, 40)} is not a list of integers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not _INT64[0] <= v <= _INT64[1]:
            raise WorkloadError(f"trace: line {line}, field hash_ids: {shown(v, 40)} is not an integer "
                                "(64-bit)")
    most = -(-prompt // block)
    if len(value) > most:
        raise WorkloadError(f"trace: line {line}, field hash_ids: {len(value)} ids, but input_length "
                            f"{prompt} fills at most {most} block{'s' if most > 1 else ''} of {block} tokens")
    return value[:prompt // block]   # the ids of whole blocks


def _read(src, block: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray, list, list[int]]:
    """Every non-blank row: line numbers, timestamps (ms), prompts, outputs, hash ids (flat), id counts."""
    lines, times, prompts, outputs, ids, counts = [], [], [], [], [], []
    with (open(src, "rb") if isinstance(src, Path) else src) as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            row = _row(raw, line)
            t = _timestamp(row["timestamp"], line)
            prompt = _tokens(row["input_length"], line, "input_length", 1)
            output = _tokens(row["output_length"], line, "output_length", 0)
            hashes = _hash_ids(row["hash_ids"], line, prompt, block)
            lines.append(line)
            times.append(t)
            prompts.append(prompt)
            outputs.append(output)
            ids.extend(hashes)
            counts.append(len(hashes))
    if not lines:
        raise WorkloadError("trace: the file holds no requests (it is empty or every line is blank)")
    return (lines, np.array(times, dtype=np.float64) / 1000.0, np.array(prompts, dtype=np.int64),
            np.array(outputs, dtype=np.int64), ids, counts)


def _check_span(t: np.ndarray, lines: list[int]) -> None:
    first, last = int(np.argmin(t)), int(np.argmax(t))
    with np.errstate(over="ignore"):
        span = t[last] - t[first]
    if not span < MAX_TIME_S:
        raise WorkloadError(f"trace: line {lines[last]}, field timestamp: {span:.3g} s after the earliest "
                            f"timestamp (line {lines[first]}); the engines represent less than "
                            f"{MAX_TIME_TEXT} of simulated time")


def load_mooncake(source: Source, *, offset: int = 0, num_requests: int | None = None,
                  keep_failed: bool = False, block: int = HASH_BLOCK) -> TraceData:
    """Read ``num_requests`` rows from row ``offset`` (None: to the end) of a Mooncake JSONL trace;
    ``block`` is the tokens each hash id names."""
    check_window(offset, num_requests)
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= MAX_BLOCK:
        raise WorkloadError(f"hash_block: must be a whole number of tokens between 1 and {MAX_BLOCK:,}, "
                            f"got {shown(block)}")
    lines, t, prompt, output, ids, counts = _read(_readable(source), block)
    _check_span(t, lines)
    offsets = np.zeros(len(t) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    keys = PrefixKeys(block, offsets, np.array(ids, dtype=np.int64))

    return cut_window(t, prompt, output, None, offset=offset, num_requests=num_requests, keep_failed=keep_failed,
                      layout="mooncake", output_name="output_length", prefix=keys)
