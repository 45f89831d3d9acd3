"""A trace window (:class:`TraceData`) and how every reader cuts it (:mod:`workloads.burstgpt`'s rules 2-5).

Rows are put in time order with a stable sort when the file is not sorted; the
window is ``num_requests`` rows from row ``offset`` (0-based, failed rows
counted); failed rows (output 0) in it are dropped unless ``keep_failed``; times
are shifted so the first kept request arrives at 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .workload import PrefixKeys, WorkloadError


@dataclass(frozen=True, eq=False)
class TraceData:
    """One window of a trace (any format): arrays plus what happened to its rows."""

    arrival: np.ndarray   # float64 s, first kept request at 0
    prompt: np.ndarray    # int64 prompt tokens
    output: np.ndarray    # int64 output tokens (0 only for kept failed rows)
    total_rows: int       # data rows in the file
    offset: int           # first row of the window
    window_rows: int      # rows in the window, failed ones included
    failed: int           # failed rows in the window
    failed_dropped: int   # of which dropped (0 with keep_failed)
    resorted: bool        # the file was not in time order
    layout: str           # BurstGPT: "6-column", "8-column" or "N-column"; else the format ("mooncake", ...)
    priority: np.ndarray | None = None   # int64 Priority, when the trace has the column
    prefix: PrefixKeys | None = None     # the kept rows' prefix keys (Mooncake's hash_ids)
    timed: bool = True                   # False: the file has no arrival times (arrival all 0)

    @property
    def failed_kept(self) -> int:
        return self.failed - self.failed_dropped


def check_window(offset: int, num_requests: int | None) -> None:
    """Refuse a negative offset or a window of no rows before anything is read."""
    if offset < 0:
        raise WorkloadError(f"offset: must be >= 0, got {offset}")
    if num_requests is not None and num_requests < 1:
        raise WorkloadError(f"num_requests: must be >= 1 or none, got {num_requests}")


def cut_window(t: np.ndarray, prompt: np.ndarray, output: np.ndarray, priority: np.ndarray | None, *,
               offset: int, num_requests: int | None, keep_failed: bool, layout: str, output_name: str,
               timed: bool = True, prefix: PrefixKeys | None = None) -> TraceData:
    """The :class:`TraceData` of rows ``offset .. offset+num_requests-1`` of the time-sorted rows.

    ``output_name`` is the output column or field as the file names it (for the error when every
    row of the window failed); ``timed`` is False when the file has no arrival times (``t`` all 0);
    ``prefix`` the rows' prefix keys (a Mooncake trace's hash ids), cut to the window's.
    """
    resorted = bool(np.any(np.diff(t) < 0))
    order = np.argsort(t, kind="stable") if resorted else np.arange(len(t))
    total = len(t)
    if offset >= total:
        raise WorkloadError(f"offset: the window starts at row {offset} but the trace has only {total} data rows")
    end = total if num_requests is None else offset + num_requests
    if end > total:
        raise WorkloadError(f"num_requests: rows {offset}..{end - 1} run past the end of the trace "
                            f"({total} data rows); use at most {total - offset} or none for all")
    order = order[offset:end]
    failed_mask = output[order] == 0
    failed = int(failed_mask.sum())
    if not keep_failed and failed:
        if failed == len(order):
            raise WorkloadError(f"trace: every row of the window {offset}..{end - 1} is a failed request "
                                f"({output_name} = 0); move the window or set keep_failed")
        order = order[~failed_mask]
    arrival = t[order]
    return TraceData(
        arrival=arrival - arrival[0], prompt=prompt[order], output=output[order], total_rows=total,
        offset=offset, window_rows=end - offset, failed=failed, failed_dropped=0 if keep_failed else failed,
        resorted=resorted, layout=layout, priority=priority[order] if priority is not None else None,
        timed=timed, prefix=prefix.take(order) if prefix is not None else None,
    )
