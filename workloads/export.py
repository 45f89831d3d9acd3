"""Write a built workload as a trace file in one of the formats batchlab reads (see docs/traces.md).

Reading the file back (:mod:`workloads.trace_formats`) gives the same arrivals
relative to the first (to the format's resolution: exact for the CSV formats
and vllm-bench, which write floats in full; 1e-7 s for azure's date-times; a
float's rounding of milliseconds for mooncake), prompts and outputs, and where
the format has them the priorities (burstgpt's and csv's Priority column) and
the prompt's whole-block prefix keys (mooncake's hash_ids, read back with
``hash_block`` = the workload's block). Requests with output 0 (failed rows
kept) read back as failed rows, dropped unless keep_failed.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import TextIO

import numpy as np

from .workload import Workload, WorkloadError

EXPORT_FORMATS = ("burstgpt", "azure", "splitwise", "mooncake", "vllm-bench", "csv")
AZURE_EPOCH = np.datetime64("2024-01-01T00:00:00", "s")   # the date-time azure exports start at
AZURE_TICKS = 10**7   # 100 ns: the 7 fractional digits of Azure's timestamps


def _floats(values: np.ndarray) -> list[str]:
    """Floats as the shortest text that reads back to the same float."""
    return [repr(float(v)) for v in values]


def _csv(fh: TextIO, header: list[str], columns: list[list]) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns))


def _priority(w: Workload) -> list | None:
    return None if w.priority is None else w.priority.tolist()


def _burstgpt(w: Workload, fh: TextIO) -> None:
    n = len(w)
    header = ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"]
    columns = [_floats(w.arrival), ["batchlab"] * n, w.prompt.tolist(), w.output.tolist(),
               (w.prompt + w.output).tolist(), ["Conversation log"] * n]
    if w.priority is not None:
        header.append("Priority")
        columns.append(_priority(w))
    _csv(fh, header, columns)


def azure_timestamps(arrival: np.ndarray) -> list[str]:
    """Arrivals as Azure's date-times (7 fractional digits) from :data:`AZURE_EPOCH`."""
    ticks = np.rint(np.asarray(arrival, dtype=np.float64) * AZURE_TICKS).astype(np.int64)
    whole = np.datetime_as_string(AZURE_EPOCH + (ticks // AZURE_TICKS).astype("timedelta64[s]"), unit="s")
    return [f"{day.replace('T', ' ')}.{frac:07d}" for day, frac in zip(whole, (ticks % AZURE_TICKS).tolist())]


def _azure(w: Workload, fh: TextIO) -> None:
    _csv(fh, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
         [azure_timestamps(w.arrival), w.prompt.tolist(), w.output.tolist()])


def _splitwise(w: Workload, fh: TextIO) -> None:
    _csv(fh, ["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
         [_floats(w.arrival), w.prompt.tolist(), w.output.tolist()])


def _plain(w: Workload, fh: TextIO) -> None:
    header, columns = ["arrival", "prompt", "output"], [_floats(w.arrival), w.prompt.tolist(), w.output.tolist()]
    if w.priority is not None:
        header.append("priority")
        columns.append(_priority(w))
    _csv(fh, header, columns)


def _mooncake(w: Workload, fh: TextIO) -> None:
    if len(w) and int(w.prompt.min()) < 1:
        i = int(np.argmax(w.prompt < 1))
        raise WorkloadError(f"--to: request {i} has a 0-token prompt, which a Mooncake trace cannot hold "
                            "(input_length >= 1); export another format")
    prefix = w.prefix
    counts = prefix.counts() if prefix is not None else None
    for i in range(len(w)):
        ids: list[int] = []
        if prefix is not None:
            whole = min(int(w.prompt[i]) // prefix.block, int(counts[i]))
            ids = prefix.keys[prefix.offsets[i]:prefix.offsets[i] + whole].tolist()
        row = {"timestamp": float(w.arrival[i]) * 1000.0, "input_length": int(w.prompt[i]),
               "output_length": int(w.output[i]), "hash_ids": ids}
        fh.write(json.dumps(row) + "\n")


def _vllm_bench(w: Workload, fh: TextIO) -> None:
    failed = w.output == 0
    doc = {"num_prompts": len(w), "completed": int((~failed).sum()), "failed": int(failed.sum()),
           "input_lens": w.prompt.tolist(), "output_lens": w.output.tolist(),
           "start_times": [float(v) for v in w.arrival],
           "errors": ["failed (output 0)" if f else "" for f in failed.tolist()]}
    json.dump(doc, fh)
    fh.write("\n")


WRITERS: dict[str, Callable[[Workload, TextIO], None]] = {
    "burstgpt": _burstgpt, "azure": _azure, "splitwise": _splitwise, "mooncake": _mooncake,
    "vllm-bench": _vllm_bench, "csv": _plain,
}


def export_workload(w: Workload, fmt: str, fh: TextIO) -> None:
    """Write workload ``w`` to text file ``fh`` in format ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    if fmt not in WRITERS:
        raise WorkloadError(f"--to: {fmt!r} is not an export format (formats: {', '.join(EXPORT_FORMATS)})")
    WRITERS[fmt](w, fh)
