"""A run's per-request arrays and engine log as one compact blob, and their rebuild.

Only what cannot be derived is stored. Batch-level runs keep, per request,
``arrival`` (float64), ``prompt``, ``output``, ``predicted``, ``bin``, ``batch``
and ``preemptions`` (integers, each in the smallest type that holds it), plus the
whole batch log and the bin edges; ``gpu``, ``start``, ``first_token``,
``finish``, ``queue_delay``, ``ttft``, ``tbt``, ``tbt_max`` and ``e2e`` are rebuilt
from the batch id and the batch log on load, with the same float operations as
:func:`core.metrics.request_times`, so they come back bit-identical (a
1M-request run: ~27 MB + ~50 B per batch). Continuous runs have no batches: they
keep each request's ``gpu``, ``start``, ``first_token``, ``finish``, ``tbt_max``,
``preemptions`` and ``decode_steps`` and rebuild the rest; their span log is not
kept (its chart series are stored with the run).

Runs with more than ``cap`` requests (default :data:`REQUEST_CAP`, 2,000,000)
keep a uniform random sample of ``cap`` requests, drawn with a seed derived
from the run hash (so the same run always keeps the same sample), in original
order, with their original indices in ``index``. If the batch log is then also
longer than ``cap``, only the batches the sample refers to are kept, with their
original ids in ``id``; ``batch`` always holds original batch ids. The summary,
per-bin metrics and series are always computed from the full run.
"""
from __future__ import annotations

import numpy as np

from .codec import pack, unpack

REQUEST_CAP = 2_000_000
CODEC = "blpk1/run-arrays"
BASE_FIELDS = ("arrival", "prompt", "output", "predicted", "bin", "preemptions")
BATCH_FIELDS = BASE_FIELDS + ("batch",)
CONTINUOUS_FIELDS = BASE_FIELDS + ("gpu", "start", "first_token", "finish", "tbt_max", "decode_steps")


def sample_seed(run_hash: str) -> int:
    return int(run_hash[:16], 16)


def encode(requests: dict, batches: dict, bin_edges: np.ndarray, run_hash: str,
           cap: int = REQUEST_CAP) -> tuple[bytes, dict]:
    """The blob and its facts (num_requests, stored_requests, sampled)."""
    n = len(requests["arrival"])
    batch_level = "batch" in requests
    if not batch_level:
        batches = {}
    nb = len(batches["start"]) if batches else 0
    req = {f: np.asarray(requests[f]) for f in (BATCH_FIELDS if batch_level else CONTINUOUS_FIELDS)}
    bat = {k: np.asarray(v) for k, v in batches.items()}
    sampled = n > cap
    subset = False
    if sampled:
        rng = np.random.default_rng(sample_seed(run_hash))
        idx = np.sort(rng.choice(n, size=cap, replace=False))
        req = {f: a[idx] for f, a in req.items()}
        req["index"] = idx
        if batch_level and nb > cap:
            used = np.unique(req["batch"])
            bat = {k: a[used] for k, a in bat.items()}
            bat["id"] = used
            subset = True
    arrays = {f"r:{k}": v for k, v in req.items()}
    arrays.update({f"b:{k}": v for k, v in bat.items()})
    arrays["bin_edges"] = np.asarray(bin_edges, dtype=np.float64)
    facts = {"num_requests": n, "stored_requests": len(req["arrival"]), "sampled": sampled,
             "num_batches": nb, "batches_subset": subset}
    return pack(arrays, {"codec": CODEC, **facts}), facts


def decode(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, dict]:
    """(requests with derived arrays, batch log, bin edges, facts)."""
    arrays, meta = unpack(blob)
    stored = {k[2:]: v for k, v in arrays.items() if k.startswith("r:")}
    batches = {k[2:]: v for k, v in arrays.items() if k.startswith("b:")}
    return derive(stored, batches), batches, arrays["bin_edges"], meta


def derive(stored: dict, batches: dict) -> dict[str, np.ndarray]:
    """The full per-request dict (RunResult order) from the stored fields and the batch log."""
    from batchlab.core.metrics import derive_request_arrays, mean_gap, with_delays

    req = {k: stored[k] for k in BASE_FIELDS}
    if "batch" in stored:
        bid = np.asarray(stored["batch"], dtype=np.int64)
        local = (np.where(bid >= 0, np.searchsorted(batches["id"], bid), -1) if "id" in batches
                 else bid)   # -1: a rejected request
        req.update(derive_request_arrays(bid, local, batches, stored["arrival"], stored["output"]))
    else:
        times = {k: stored[k] for k in ("gpu", "start", "first_token", "finish", "tbt_max", "decode_steps")}
        # o tokens, o - 1 gaps (a preempted request's resumes give tokens too: not its decode steps)
        times["tbt"] = mean_gap(times["finish"], times["first_token"], np.asarray(stored["output"]) - 1)
        req.update(with_delays(times, stored["arrival"]))
    if "index" in stored:
        req["index"] = stored["index"]
    return req
