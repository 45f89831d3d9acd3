"""The trace formats batchlab reads, telling them apart by content, and reading any of them.

:func:`detect_format` looks at a file's first bytes, never its name:

* a first non-blank line that is a JSON object with ``timestamp``,
  ``input_length`` and ``output_length``: mooncake (JSON Lines);
* a JSON object holding ``input_lens`` and ``output_lens``: vllm-bench;
* otherwise a CSV header holding (case and spacing ignored)
  ``Timestamp, Request tokens, Response tokens``: burstgpt;
  ``TIMESTAMP, ContextTokens, GeneratedTokens``: azure;
  ``num_prefill_tokens, num_decode_tokens``: splitwise (``arrived_at`` optional);
  ``arrival, prompt, output``: csv (batchlab's plain layout).

Anything else is an error listing the formats and naming ``trace_columns``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .burstgpt import MAX_UPLOAD_BYTES, NEEDED, Source, _norm, load_burstgpt
from .fields import shown
from .mooncake import FIELDS as MOONCAKE_FIELDS
from .mooncake import HASH_BLOCK, load_mooncake
from .trace_csv import AZURE, PLAIN, SPLITWISE, VIDUR, Columns, load_columns, parse_columns
from .trace_window import TraceData
from .vllm_bench import LENGTHS, load_vllm_bench
from .workload import WorkloadError

FORMATS = {
    "burstgpt": "BurstGPT CSV (Timestamp, Request tokens, Response tokens)",
    "azure": "Azure LLM inference CSV (TIMESTAMP, ContextTokens, GeneratedTokens)",
    "splitwise": "Splitwise/Vidur CSV (arrived_at, num_prefill_tokens, num_decode_tokens)",
    "mooncake": "Mooncake JSON Lines (timestamp, input_length, output_length, hash_ids)",
    "vllm-bench": "vllm bench serve --save-detailed result JSON (input_lens, output_lens, start_times)",
    "csv": "batchlab's plain CSV (arrival, prompt, output[, priority]) or any CSV mapped by trace_columns",
}
HEAD_BYTES = 1 << 20   # what detection reads of a file
_CSV_LAYOUTS = (("burstgpt", NEEDED), ("azure", (AZURE.arrival, AZURE.prompt, AZURE.output)),
                ("splitwise", (SPLITWISE.prompt, SPLITWISE.output)),
                ("csv", (PLAIN.arrival, PLAIN.prompt, PLAIN.output)))


def _head(source: Source) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source).expanduser(), "rb") as fh:
            return fh.read(HEAD_BYTES)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:HEAD_BYTES])
    raise WorkloadError(f"trace: expected a path or bytes, got {type(source).__name__}")


def _unknown(what: str) -> WorkloadError:
    listed = "; ".join(f"{name}: {text}" for name, text in FORMATS.items())
    return WorkloadError(f"trace: cannot tell the trace's format ({what}); batchlab reads {listed}. For another "
                         "CSV name its columns with trace_columns, e.g. arrival=ts:ms,prompt=in,output=out")


def detect_format(source: Source) -> str:
    """The format of a trace (a path or an upload's bytes), from its content: a key of :data:`FORMATS`."""
    text = _head(source).decode("utf-8", "replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        raise _unknown("the file is empty")
    if stripped.startswith("{"):
        first = stripped.splitlines()[0]
        try:
            row = json.loads(first)
        except ValueError:
            row = None
        if isinstance(row, dict) and all(k in row for k in MOONCAKE_FIELDS[:3]):
            return "mooncake"
        if isinstance(row, dict) and all(k in row for k in LENGTHS):
            return "vllm-bench"
        if row is None and all(f'"{k}"' in text for k in LENGTHS):
            return "vllm-bench"   # a pretty-printed result (its keys on lines of their own)
        raise _unknown(f"a JSON object without {', '.join(MOONCAKE_FIELDS[:3])} (Mooncake) or "
                       f"{', '.join(LENGTHS)} (vllm bench)")
    line = next(ln for ln in text.splitlines() if ln.strip())
    header = {_norm(name) for name in next(csv.reader(io.StringIO(line)))}
    for name, needed in _CSV_LAYOUTS:
        if all(_norm(c) in header for c in needed):
            return name
    raise _unknown(f"its first line {shown(line.strip(), 80)} is no header batchlab knows")


def _splitwise(source: Source) -> Columns:
    """Splitwise's columns, or Vidur's without arrival times when the header has no arrived_at."""
    try:
        header = {_norm(n) for n in next(csv.reader(io.StringIO(_first_line(source))))}
    except StopIteration:
        header = set()
    return SPLITWISE if _norm(SPLITWISE.arrival) in header else VIDUR


def _first_line(source: Source) -> str:
    text = _head(source).decode("utf-8", "replace").lstrip("\ufeff")
    return next((ln for ln in text.splitlines() if ln.strip()), "")


def load_trace(fmt: str, source: Source, *, offset: int = 0, num_requests: int | None = None,
               keep_failed: bool = False, hash_block: int = HASH_BLOCK, columns: str | None = None) -> TraceData:
    """A window of a trace in format ``fmt`` (a key of :data:`FORMATS`); ``columns`` is trace_columns.

    A file the reader refuses that is in another format (BurstGPT's and Mooncake's readers and a
    column mapping aside, which keep their own errors) is an error naming the format it is in."""
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) > MAX_UPLOAD_BYTES:
        raise WorkloadError(f"trace: upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
    try:
        return _load(fmt, source, offset, num_requests, keep_failed, hash_block, columns)
    except WorkloadError as exc:
        if fmt in ("burstgpt", "mooncake") or columns:
            raise
        try:
            found = detect_format(source)
        except (WorkloadError, OSError):
            raise exc from None
        if found == fmt:
            raise
        raise WorkloadError(f"trace: the file is a {found} trace, not {fmt} ({FORMATS[fmt]}); read it with "
                            f"workload {found} or trace") from None


def _load(fmt: str, source: Source, offset: int, num_requests: int | None, keep_failed: bool, hash_block: int,
          columns: str | None) -> TraceData:
    window = {"offset": offset, "num_requests": num_requests, "keep_failed": keep_failed}
    if fmt == "burstgpt":
        return load_burstgpt(source, **window)
    if fmt == "mooncake":
        return load_mooncake(source, block=hash_block, **window)
    if fmt == "vllm-bench":
        return load_vllm_bench(source, **window)
    if fmt == "azure":
        return load_columns(source, AZURE, what="an Azure trace CSV", layout="azure", **window)
    if fmt == "splitwise":
        cols = _splitwise(source)
        layout = "splitwise" if cols.arrival else "vidur (no arrival column)"
        return load_columns(source, cols, what="a Splitwise/Vidur CSV", layout=layout, **window)
    if fmt == "csv":
        cols = parse_columns(columns) if columns else PLAIN
        return load_columns(source, cols, what="the trace_columns mapping" if columns else "a plain CSV",
                            layout=f"csv ({cols.text()})", **window)
    raise WorkloadError(f"workload: {shown(fmt)} is not a trace format (formats: {', '.join(FORMATS)})")
