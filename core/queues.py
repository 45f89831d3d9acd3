"""What both engines share about waiting requests: queue layout, windowed statistics, bin policies.

Requests are grouped by queue (bin) and kept in arrival order within a queue, so
every queue is a contiguous slice of ``order``; a queue's waiting requests are
the positions ``[head, arrived)`` of its slice, plus requests sent back to its
front after an eviction or a preemption.
"""
from __future__ import annotations

import numpy as np

INF = float("inf")


def queue_layout(bins: np.ndarray, k: int) -> tuple[np.ndarray, list[int]]:
    """(order, offsets): request indices grouped by queue (arrival order kept) and each queue's start."""
    order = np.argsort(bins, kind="stable")
    off = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(bins, minlength=k), out=off[1:])
    return order, off.tolist()


class QueueStats:
    """Windowed mean/variance of prompt and predicted output lengths of arrived requests.

    Prefix sums over the queue-ordered arrays make every query O(1). These are
    Algorithm 1's statistics: only what a scheduler knows (prompts and predictions).
    """

    def __init__(self, prompt: np.ndarray, predicted: np.ndarray, window: int):
        def prefix(x: np.ndarray) -> np.ndarray:
            out = np.zeros(len(x) + 1)
            np.cumsum(x, out=out[1:])
            return out

        p = prompt.astype(np.float64)
        o = predicted.astype(np.float64)
        self.sp, self.sp2 = prefix(p), prefix(p * p)
        self.so, self.so2 = prefix(o), prefix(o * o)
        self.window = window

    def moments(self, lo: int, hi: int) -> tuple[float, float, float, float]:
        """(mean_in, mean_out, var_in, var_out) over queue positions [lo, hi) (the last ``window`` of them)."""
        if self.window and hi - lo > self.window:
            lo = hi - self.window
        n = hi - lo
        if n <= 0:
            return 0.0, 0.0, 0.0, 0.0
        mi = (self.sp[hi] - self.sp[lo]) / n
        mo = (self.so[hi] - self.so[lo]) / n
        vi = (self.sp2[hi] - self.sp2[lo]) / n - mi * mi
        vo = (self.so2[hi] - self.so2[lo]) / n - mo * mo
        return float(mi), float(mo), float(vi), float(vo)


def pick_queue(policy: str, candidates: list[int], head_time: list[float], waiting: list[int],
               rr: int, k: int) -> int:
    """The queue a bin policy serves among ``candidates`` (queue indices, ascending).

    fcfs: the oldest head (earliest arrival; first formed batch); longest: the most
    waiting requests; round_robin: the first candidate at or after ``rr``, cyclically;
    short_first: the lowest bin. Ties go to the lower bin.
    """
    if policy == "fcfs":
        return min(candidates, key=lambda i: (head_time[i], i))
    if policy == "longest":
        return max(candidates, key=lambda i: (waiting[i], -i))
    if policy == "round_robin":
        return min(candidates, key=lambda i: (i - rr) % k)
    return candidates[0]
