"""The older whole-batch grid format, converted to the current schema.

Earlier tools wrote ``batch_size,max_seq_len,mean_latency_sec[,std_latency_sec,num_trials]``:
the mean wall time of generating ``max_seq_len`` tokens for a whole batch, with
no separate prefill and decode. The prompt length is not recorded. Conversion
(treating the generation as decode-dominated):

* ``context_len   = max_seq_len``
* ``decode_step_s = mean_latency_sec / max_seq_len`` — the mean time per
  generated token over the whole generation. Step time grows with context, so
  this overstates the step at short contexts and understates it at
  ``max_seq_len``.
* ``prefill_s     = decode_step_s`` — an estimate, not a measurement: one
  forward pass of the batch. It is a lower bound for long prompts (a real
  prefill of many tokens is compute-bound and slower). With it,
  ``prefill_s + (max_seq_len - 1) * decode_step_s = mean_latency_sec``, so the
  converted grid reproduces each measured whole-generation time.
* ``std_latency_sec`` and ``num_trials`` are summarised in the metadata
  (largest relative std, fewest trials) and not kept per cell.
* An empty ``mean_latency_sec`` marks a cell that was not measured.

The grid's meta gets ``derived_from: legacy`` and ``conversion: ...``, and its
warnings say that it was converted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LEGACY_SPEC = {
    "batch_size": ("count", False),
    "max_seq_len": ("count", False),
    "mean_latency_sec": ("positive", True),
    "std_latency_sec": ("nonnegative", True),
    "num_trials": ("count", True),
}
LEGACY_REQUIRED = ("batch_size", "max_seq_len", "mean_latency_sec")
LEGACY_ONLY = frozenset(LEGACY_SPEC) - {"batch_size"}
CONVERSION = ("context_len = max_seq_len; decode_step_s = mean_latency_sec / max_seq_len; "
              "prefill_s = decode_step_s (estimate: one forward pass, a lower bound for long prompts)")


def is_legacy_header(header: list) -> bool:
    """True when the header has any column that only the legacy format uses."""
    return any(col in LEGACY_ONLY for col in header)


def convert(header: list, cells: dict) -> tuple[pd.DataFrame, dict, list]:
    """Convert parsed legacy cells ({column: [value or None]}, checked against
    :data:`LEGACY_SPEC`) to (grid table in file order, meta additions, warnings)."""
    seq = np.asarray(cells["max_seq_len"], dtype=np.int64)
    mean = np.array([np.nan if v is None else v for v in cells["mean_latency_sec"]], dtype=np.float64)
    step = mean / seq
    table = pd.DataFrame({
        "batch_size": np.asarray(cells["batch_size"], dtype=np.int64),
        "context_len": seq,
        "prefill_s": step.copy(),
        "decode_step_s": step,
    })
    meta = {"derived_from": "legacy", "legacy_columns": ",".join(header), "conversion": CONVERSION}
    rel_std = [s / m for s, m in zip(cells.get("std_latency_sec", []), cells["mean_latency_sec"])
               if s is not None and m is not None]
    if rel_std:
        meta["legacy_max_relative_std"] = f"{max(rel_std):.4g}"
    trials = [n for n in cells.get("num_trials", []) if n is not None]
    if trials:
        meta["legacy_min_trials"] = str(min(trials))
    warnings = ["converted from the legacy whole-generation format (batch_size, max_seq_len, "
                f"mean_latency_sec): {CONVERSION}. prefill_s is not measured."]
    return table, meta, warnings
