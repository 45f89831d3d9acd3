"""The columnar request set every simulation runs on."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np


class WorkloadError(ValueError):
    """A workload (trace, spec or arrays) is unusable; the message names what is wrong."""


@dataclass(frozen=True, eq=False)
class PrefixKeys:
    """Which blocks of tokens requests share (for automatic prefix caching).

    Request i's token stream (its prompt, then its output) is cut in blocks of
    ``block`` tokens; ``keys[offsets[i]:offsets[i+1]]`` name its first whole blocks
    (so they describe its first ``block`` x their number tokens, at most all it has).
    Two requests whose keys agree on blocks 0..j hold the same tokens in those
    blocks, as far as both have tokens there. Blocks past a request's keys are
    its own (shared with nobody). Keys are any int64: the engine chains them
    itself (a block is identified by the keys of all blocks up to it), so they
    need not be unique across positions. ``offsets`` has one entry more than
    there are requests (the Workload checks the count).
    """

    block: int
    offsets: np.ndarray
    keys: np.ndarray

    def __post_init__(self) -> None:
        if isinstance(self.block, bool) or not isinstance(self.block, (int, np.integer)) or self.block < 1:
            raise WorkloadError(f"prefix: block must be a whole number of tokens >= 1, got {self.block!r}")
        object.__setattr__(self, "block", int(self.block))
        offsets, keys = _int64(self.offsets, "offsets"), _int64(self.keys, "keys")
        if len(offsets) < 1 or offsets[0] != 0:
            raise WorkloadError(f"prefix: offsets must start at 0, got {offsets[:1].tolist() or 'none'}")
        steps = np.diff(offsets)
        if np.any(steps < 0):
            i = int(np.argmax(steps < 0))
            raise WorkloadError(f"prefix: offsets must be non-decreasing, but entry {i + 1} ({offsets[i + 1]}) "
                                f"is below entry {i} ({offsets[i]})")
        if offsets[-1] != len(keys):
            raise WorkloadError(f"prefix: the last offset ({offsets[-1]}) must equal the number of keys "
                                f"({len(keys)})")
        for arr in (offsets, keys):
            arr.flags.writeable = False
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "keys", keys)

    def counts(self) -> np.ndarray:
        """How many keys each request has."""
        return np.diff(self.offsets)

    def take(self, index) -> PrefixKeys:
        """The keys of requests ``index`` (an integer array: a selection, a reordering), in that order."""
        index = np.asarray(index, dtype=np.int64)
        counts = self.counts()[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        gather = np.repeat(self.offsets[:-1][index] - offsets[:-1], counts) + np.arange(offsets[-1])
        return PrefixKeys(self.block, offsets, self.keys[gather])

    def shared_fraction(self) -> float:
        """Fraction of all key positions whose chain (the keys up to and including it) occurs in more
        than one request (0 without keys)."""
        if not len(self.keys):
            return 0.0
        counts = self.counts()
        position = np.arange(len(self.keys)) - np.repeat(self.offsets[:-1], counts)
        # a request holds each position once, so a chain's count is the number of requests holding it
        _, inverse, holders = np.unique(_chain_hashes(self.keys, position, self.offsets, counts),
                                        return_inverse=True, return_counts=True)
        return float(np.mean(holders[inverse] > 1))

def _int64(values, name: str) -> np.ndarray:
    """A 1-D array of whole numbers as contiguous int64 (an own copy); anything else is an error."""
    raw = np.asarray(values)
    if raw.ndim != 1:
        raise WorkloadError(f"prefix: {name} must be one-dimensional, got shape {raw.shape}")
    if raw.size and raw.dtype.kind not in "iu":
        raise WorkloadError(f"prefix: {name} must hold integers, got {raw.dtype}")
    if raw.dtype.kind == "u" and raw.size and raw.max() > np.iinfo(np.int64).max:
        raise WorkloadError(f"prefix: {name} holds {raw.max()}, beyond int64")
    return np.array(raw, dtype=np.int64, order="C", copy=True)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _chain_hashes(keys: np.ndarray, position: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key's chain: the wrapping sum of its request's hashed (key, position)
    pairs up to it, so equal chains hash equal and different ones almost surely differ."""
    with np.errstate(over="ignore"):
        salted = _mix(keys.view(np.uint64) ^ _mix(position.astype(np.uint64)))
        total = np.cumsum(salted, dtype=np.uint64)
        before = np.concatenate([np.zeros(1, np.uint64), total])[offsets[:-1]]
        return total - np.repeat(before, counts)


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
    prefix     optional :class:`PrefixKeys`: which blocks of tokens requests share (for
               prefix caching); None: no prefix information, every request's tokens its own
    identity   JSON-able description of how the workload was built; hashed
               into every run's identity. Left empty, it is derived from the
               content (a sha256 of the four arrays, confusion_p, any priority and prefix), so two
               different workloads never share cached bins or a run hash.
    """

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    predicted: np.ndarray
    identity: dict = field(default_factory=dict)
    confusion_p: float = 0.0
    priority: np.ndarray | None = None
    prefix: PrefixKeys | None = None

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
        if self.prefix is not None:
            self._check_prefix()
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
        if self.prefix is not None:
            h.update(b"prefix")
            h.update(str(self.prefix.block).encode())
            h.update(self.prefix.offsets.tobytes())
            h.update(self.prefix.keys.tobytes())
        return h.hexdigest()

    def _check_prefix(self) -> None:
        """The prefix keys fit the requests: one offset more than requests, no request with more keys
        than its prompt and output fill blocks."""
        prefix, n = self.prefix, len(self.arrival)
        if not isinstance(prefix, PrefixKeys):
            raise WorkloadError(f"prefix must be PrefixKeys or None, got {type(prefix).__name__}")
        if len(prefix.offsets) != n + 1:
            raise WorkloadError(f"prefix: offsets has {len(prefix.offsets)} entries, the workload has {n} "
                                f"requests (it needs {n + 1})")
        tokens = self.prompt + self.output
        blocks = tokens // prefix.block
        counts = prefix.counts()
        over = counts > blocks
        if over.any():
            i = int(np.argmax(over))
            raise WorkloadError(f"prefix: request {i} has {counts[i]} keys, but its {tokens[i]} tokens fill "
                                f"only {blocks[i]} whole blocks of {prefix.block} (keys name whole blocks)")

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
        """Short statistics for tables and the CLI (plus the label and failed-row counts of traces, and
        the key block and shared fraction of the prefix keys when there are any)."""
        shared = ({"prefix_block": self.prefix.block, "shared_block_fraction": self.prefix.shared_fraction()}
                  if self.prefix is not None else {})
        return {
            "requests": len(self),
            "duration_s": self.duration,
            "mean_rate_rps": self.mean_rate,
            "prompt_mean": float(self.prompt.mean()),
            "output_mean": float(self.output.mean()),
            "predicted_mean": float(self.predicted.mean()),
            **{k: self.identity[k] for k in ("label", "failed_dropped", "failed_kept") if k in self.identity},
            **shared,
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
