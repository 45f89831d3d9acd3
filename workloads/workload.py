"""The columnar request set every simulation runs on."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np


class WorkloadError(ValueError):
    """A workload (trace, spec or arrays) is unusable; the message names what is wrong."""


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests as parallel numpy arrays, sorted by arrival time.

    arrival    float64 seconds, non-decreasing, first arrival at 0 for traces
    prompt     int64 prompt tokens (>= 0)
    output     int64 true output tokens (>= 0; 0 only for kept failed trace rows)
    predicted  int64 predicted output tokens (>= 1); bins are assigned from these
    priority   optional int64 priority of each request (smaller is served first by the
               continuous engine's priority policies); None: every request has 0
    confusion_p  probability that a request's bin is swapped with each
               neighbouring bin (the ``confusion:P`` predictor of Paper 1, Fig. 8)
    identity   JSON-able description of how the workload was built; hashed
               into every run's identity. Left empty, it is derived from the
               content (a sha256 of the four arrays, confusion_p and any priority), so two
               different workloads never share cached bins or a run hash.
    """

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    predicted: np.ndarray
    identity: dict = field(default_factory=dict)
    confusion_p: float = 0.0
    priority: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.arrival)
        if n == 0:
            raise WorkloadError("workload is empty: it has no requests")
        for name in ("prompt", "output", "predicted"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise WorkloadError(f"{name} has {len(arr)} entries, arrival has {n}")
        arrival = np.ascontiguousarray(self.arrival, dtype=np.float64)
        if not np.all(np.isfinite(arrival)):
            raise WorkloadError("arrival contains NaN or infinite times")
        if np.any(np.diff(arrival) < 0):
            raise WorkloadError("arrival times must be sorted (non-decreasing)")
        if arrival[0] < 0:
            raise WorkloadError("arrival times must be >= 0")
        object.__setattr__(self, "arrival", arrival)
        for name in ("prompt", "output", "predicted"):
            raw = np.asarray(getattr(self, name))
            if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
                raise WorkloadError(f"{name} lengths contain NaN or infinite values")
            arr = np.ascontiguousarray(raw, dtype=np.int64)
            low = 1 if name == "predicted" else 0
            if arr.min() < low:
                raise WorkloadError(f"{name} lengths must be >= {low} (found {int(arr.min())})")
            object.__setattr__(self, name, arr)
        if self.priority is not None:
            object.__setattr__(self, "priority", _priorities(self.priority, n))
        if not 0.0 <= self.confusion_p <= 0.5:
            raise WorkloadError("confusion_p must be in [0, 0.5]")
        for arr in (self.arrival, self.prompt, self.output, self.predicted, self.priority):
            if arr is not None:
                arr.flags.writeable = False
        if not self.identity:
            object.__setattr__(self, "identity", {"kind": "arrays", "sha256": self.content_sha256(),
                                                  "label": f"{n:,} requests given as arrays"})

    def content_sha256(self) -> str:
        """sha256 of the request arrays, the predictor's confusion probability and the priorities
        (when given: without them the hash is what it was before priorities existed)."""
        h = hashlib.sha256()
        for arr in (self.arrival, self.prompt, self.output, self.predicted):
            h.update(arr.tobytes())
        h.update(repr(float(self.confusion_p)).encode())
        if self.priority is not None:
            h.update(b"priority")
            h.update(self.priority.tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def key(self) -> str:
        """Stable hash of the identity (what the workload is, not its bytes)."""
        blob = json.dumps(self.identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def duration(self) -> float:
        return float(self.arrival[-1] - self.arrival[0])

    @property
    def mean_rate(self) -> float:
        """Requests per second over the arrival span (inf for a single instant)."""
        span = self.duration
        return (len(self) - 1) / span if span > 0 else float("inf")

    def describe(self) -> dict:
        """Short statistics for tables and the CLI (plus the label and failed-row counts of traces)."""
        return {
            "requests": len(self),
            "duration_s": self.duration,
            "mean_rate_rps": self.mean_rate,
            "prompt_mean": float(self.prompt.mean()),
            "output_mean": float(self.output.mean()),
            "predicted_mean": float(self.predicted.mean()),
            **{k: self.identity[k] for k in ("label", "failed_dropped", "failed_kept") if k in self.identity},
        }


MAX_PRIORITY = 2**31 - 1   # priorities are whole numbers in [-MAX_PRIORITY, MAX_PRIORITY]


def _priorities(values, n: int) -> np.ndarray:
    """Request priorities as int64; not whole, out of range or the wrong length is an error."""
    raw = np.asarray(values)
    if raw.ndim != 1 or len(raw) != n:
        raise WorkloadError(f"priority has {raw.size} entries, arrival has {n}")
    if raw.dtype.kind not in "biuf":
        raise WorkloadError(f"priority must hold numbers, got {raw.dtype}")
    as_float = raw.astype(np.float64)
    bad = ~(np.isfinite(as_float) & (as_float == np.floor(as_float)) & (np.abs(as_float) <= MAX_PRIORITY))
    if bad.any():
        i = int(np.argmax(bad))
        raise WorkloadError(f"priority of request {i} is {raw[i]!r}: priorities are whole numbers in "
                            f"[-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    return np.ascontiguousarray(raw, dtype=np.int64)
