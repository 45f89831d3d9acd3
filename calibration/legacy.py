"""The older whole-batch grid format, converted to the current schema.

Earlier tools wrote ``batch_size,max_seq_len,mean_latency_sec[,std_latency_sec,num_trials]``:
per row, the mean wall time of one ``generate()`` call for the whole batch, with
no separate prefill and decode. The prompt length is not recorded.

**The writer.** The calibration script that wrote these files generated, per
row, ``max_new_tokens = max_seq_len - max(32, max_seq_len // 4)`` tokens (about
75 % of ``max_seq_len``) after a prompt cut to 200 characters (roughly 45
tokens, whatever ``max_seq_len`` is). So ``max_seq_len`` is neither the number
of generated tokens nor the context reached. How a row's ``max_seq_len`` splits
into P prompt and G generated tokens is a :class:`LegacySplit`:

=============== ====================== ===========================================
split           prompt P               generated G
=============== ====================== ===========================================
``writer``      45 tokens              ``max_seq_len - max(32, max_seq_len // 4)``
                                       (the default: that script's files)
``total:P``     P tokens               ``max_seq_len - P`` (max_seq_len is the
                                       whole sequence)
``generated:P`` P tokens               ``max_seq_len`` (max_seq_len counts the
                                       new tokens only)
=============== ====================== ===========================================

**Conversion** of a row (mean time T). A ``generate()`` call of G new tokens is
G forward passes (the prefill yields the first token, then G - 1 decode steps),
and the prefill of a short prompt costs about one step, so:

* ``decode_step_s = T / G`` — the mean time per forward pass.
* ``prefill_s = T / G`` — an estimate (one forward pass), not a measurement; a
  lower bound for prompts much longer than P.
* ``context_len = P + G // 2`` — the middle of the generation: the decode steps
  run at contexts P .. P + G - 1, and a step time linear in context has its mean
  there.

Then ``prefill_s + (G - 1) * decode_step_s = T``: each converted cell reproduces
its measured call. Two rows of one batch size with the same (P, G) would be the
same cell and are an error; so is a row with G < 1. ``std_latency_sec`` and
``num_trials`` are summarised in the metadata (largest relative std, fewest
trials), not kept per cell. An empty ``mean_latency_sec`` marks a cell that was
not measured.

The grid's meta gets ``derived_from: legacy``, ``legacy_split``,
``legacy_sha256`` (the file's) and ``conversion``; its warnings say it was converted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import GRID_COLUMNS, MAX_CONTEXT_LEN, MAX_SECONDS, MIN_SECONDS, Column, GridError

MAX_CALL_SECONDS = 86_400.0  # one generate() call: at most a day
LEGACY_COLUMNS = {
    "batch_size": GRID_COLUMNS["batch_size"],
    "max_seq_len": Column("count", False, 1, MAX_CONTEXT_LEN, "tokens"),
    "mean_latency_sec": Column("real", True, MIN_SECONDS, MAX_CALL_SECONDS, "seconds"),
    "std_latency_sec": Column("real", True, 0.0, MAX_CALL_SECONDS, "seconds"),
    "num_trials": Column("count", True, 1, 1_000_000_000, "trials"),
}
LEGACY_REQUIRED = ("batch_size", "max_seq_len", "mean_latency_sec")
LEGACY_ONLY = frozenset(LEGACY_COLUMNS) - {"batch_size"}

WRITER_PROMPT_TOKENS = 45  # a 200-character prompt
SPLIT_HELP = ("how max_seq_len splits into prompt and generated tokens: 'writer' (the legacy calibration "
              "script: a ~45-token prompt, max_seq_len - max(32, max_seq_len // 4) generated), 'total:P' "
              "(P prompt tokens, the rest of max_seq_len generated) or 'generated:P' (P prompt tokens, then "
              "max_seq_len generated)")


@dataclass(frozen=True)
class LegacySplit:
    """How a legacy row's ``max_seq_len`` divides into ``prompt`` and generated tokens (module doc)."""

    kind: str = "writer"
    prompt: int = WRITER_PROMPT_TOKENS

    def generated(self, max_seq_len: int) -> int:
        if self.kind == "writer":
            return max_seq_len - max(32, max_seq_len // 4)
        if self.kind == "total":
            return max_seq_len - self.prompt
        return max_seq_len

    @property
    def spec(self) -> str:
        return "writer" if self.kind == "writer" else f"{self.kind}:{self.prompt}"

    def describe(self) -> str:
        generated = {"writer": "max_seq_len - max(32, max_seq_len // 4)", "total": f"max_seq_len - {self.prompt}",
                     "generated": "max_seq_len"}[self.kind]
        return f"split {self.spec}: prompt P = {self.prompt} tokens, generated G = {generated}"


WRITER = LegacySplit()
_SPLIT_RE = re.compile(r"(total|generated):(\d+)")


def parse_split(text: str | LegacySplit | None) -> LegacySplit:
    """A split from its spec (``writer``, ``total:P``, ``generated:P``); None means ``writer``."""
    if text is None or isinstance(text, LegacySplit):
        return text or WRITER
    spec = str(text).strip().lower()
    if spec == "writer":
        return WRITER
    m = _SPLIT_RE.fullmatch(spec)
    if m is None:
        raise GridError(f"legacy split {text!r} is not one of 'writer', 'total:P', 'generated:P' "
                        "(P: prompt tokens, a whole number)")
    prompt = int(m.group(2))
    if not 1 <= prompt <= MAX_CONTEXT_LEN:
        raise GridError(f"legacy split {text!r}: the prompt must be 1 to {MAX_CONTEXT_LEN:,} tokens")
    return LegacySplit(m.group(1), prompt)


def is_legacy_header(header: list) -> bool:
    """True when the header has any column that only the legacy format uses."""
    return any(col in LEGACY_ONLY for col in header)


def convert(header: list, cells: dict, lines: list, split: LegacySplit,
            file_sha256: str) -> tuple[pd.DataFrame, dict, list]:
    """Convert parsed legacy cells ({column: [value or None]}, checked against
    :data:`LEGACY_COLUMNS`; ``lines``: each row's line number) to
    (grid table in file order, meta additions, warnings)."""
    contexts, steps, seen = [], [], {}
    for b, seq, mean, line in zip(cells["batch_size"], cells["max_seq_len"], cells["mean_latency_sec"], lines):
        g = split.generated(seq)
        if g < 1:
            raise GridError(f"max_seq_len {seq} leaves no generated tokens under {split.describe()}",
                            line=line, column="max_seq_len")
        context = split.prompt + g // 2
        if context > MAX_CONTEXT_LEN:
            raise GridError(f"max_seq_len {seq} gives context_len {context:,} under {split.describe()}, "
                            f"above the largest allowed {MAX_CONTEXT_LEN:,} tokens", line=line, column="max_seq_len")
        if (b, context) in seen:
            first, first_seq = seen[(b, context)]
            raise GridError(f"max_seq_len {seq} is the same cell as max_seq_len {first_seq} at line {first} "
                            f"(batch_size {b}, context_len {context} under {split.describe()})",
                            line=line, column="max_seq_len")
        seen[(b, context)] = (line, seq)
        step = np.nan if mean is None else mean / g
        if mean is not None and not MIN_SECONDS <= step <= MAX_SECONDS:
            raise GridError(f"gives a decode step of {step:g} s ({mean:g} s / {g} generated tokens), outside "
                            f"{MIN_SECONDS:g} .. {MAX_SECONDS:g} s", line=line, column="mean_latency_sec")
        contexts.append(context)
        steps.append(step)
    step = np.asarray(steps, dtype=np.float64)
    table = pd.DataFrame({
        "batch_size": np.asarray(cells["batch_size"], dtype=np.int64),
        "context_len": np.asarray(contexts, dtype=np.int64),
        "prefill_s": step.copy(),
        "decode_step_s": step,
    })
    conversion = (f"{split.describe()}; decode_step_s = mean_latency_sec / G; prefill_s = decode_step_s "
                  "(estimate: one forward pass, a lower bound for long prompts); context_len = P + G // 2")
    meta = {"derived_from": "legacy", "legacy_columns": ",".join(header), "legacy_split": split.spec,
            "legacy_sha256": file_sha256, "conversion": conversion}
    rel_std = [s / m for s, m in zip(cells.get("std_latency_sec", []), cells["mean_latency_sec"])
               if s is not None and m is not None]
    if rel_std:
        meta["legacy_max_relative_std"] = f"{max(rel_std):.4g}"
    trials = [n for n in cells.get("num_trials", []) if n is not None]
    if trials:
        meta["legacy_min_trials"] = str(min(trials))
    warnings = ["converted from the legacy whole-generation format (batch_size, max_seq_len, "
                f"mean_latency_sec): {conversion}. prefill_s is not measured."]
    return table, meta, warnings
