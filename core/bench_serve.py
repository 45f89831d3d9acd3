"""A run's results in the shape of ``vllm bench serve`` (vLLM 0.33), goodput and chosen percentiles.

Field names, units and formulas follow vLLM 0.33's ``vllm/benchmarks/serve.py``
(``BenchmarkMetrics``, ``calculate_metrics``, the ``result`` dict of ``benchmark()`` and the
``result_json`` of ``main()``); docs/semantics.md#vllm-bench-serve-fields defines each field.
Per request (requests served to their last token; a rejected request is ``failed``):

* TTFT = first_token - arrival, E2EL = finish - arrival (vLLM's ``latency``);
* TPOT = (E2EL - TTFT) / (o - 1) over requests of o > 1 output tokens;
* ITL: batchlab keeps each request's mean gap, not every gap. Each request counts as o - 1 gaps
  that all equal its TPOT (the gaps it has, each at their mean), so the ITL mean is exact
  (the sum of all gaps over their count) and its median, std and percentiles are those of that
  distribution: numpy's on ``np.repeat(tpot, o - 1)``, computed without repeating anything.

Percentile keys are written as vLLM writes them: ``p99``, ``p99.9`` (an integral percentile
without decimals). Statistics of an empty set are 0, as vLLM's ``np.mean(values or 0)``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np

PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")   # the vllm-bench fields with percentiles
GOODPUT_METRICS = ("ttft", "tpot", "e2el")              # vLLM's --goodput keys
DEFAULT_PERCENTILES = (50.0, 95.0, 99.0)                # batchlab's summary percentiles
VLLM_PERCENTILES = (99.0,)                              # vLLM's --metric-percentiles default
# summary percentile families: key stem -> per-request array (seconds); e.g. latency_p99_s
SUMMARY_ARRAYS = {"latency": "e2e", "ttft": "ttft", "tbt": "tbt", "tbt_max": "tbt_max", "queue_delay": "queue_delay"}
BACKEND = "batchlab"
MS = 1000.0
TOKEN_CHUNK = 4_000_000   # token times materialised at once for max_output_tokens_per_s
REJECTED = "rejected: its KV cache exceeds one GPU's memory"


class OptionError(ValueError):
    """A bad --percentiles or --goodput value; the message names the flag."""


# ------------------------------------------------------------------ options --
def parse_percentiles(text: str, flag: str = "--percentiles") -> tuple[float, ...]:
    """"50,90,99.9" -> (50.0, 90.0, 99.9): each a number strictly between 0 and 100, none twice."""
    out: list[float] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            p = float(part)
        except ValueError:
            raise OptionError(f"{flag}: {part!r} is not a number (give e.g. 50,90,99.9)") from None
        if not (0 < p < 100):
            raise OptionError(f"{flag}: {part} is not strictly between 0 and 100")
        if p in out:
            raise OptionError(f"{flag}: {part} is given twice")
        out.append(p)
    return tuple(out)


def parse_goodput(pairs: Iterable[str], flag: str = "--goodput") -> dict[str, float]:
    """vLLM's ``--goodput KEY:VALUE ...`` (milliseconds; keys ttft, tpot, e2el; values >= 0)."""
    limits: dict[str, float] = {}
    for pair in pairs:
        for item in str(pair).split():   # one quoted argument "ttft:500 tpot:50" works too
            name, sep, value = item.partition(":")
            try:
                if not sep or ":" in value:
                    raise ValueError
                ms = float(value)
            except ValueError:
                raise OptionError(f"{flag}: {item!r} is not KEY:VALUE (a key of {', '.join(GOODPUT_METRICS)} and "
                                  "a number of milliseconds)") from None
            if name not in GOODPUT_METRICS:
                raise OptionError(f"{flag}: unknown metric {name!r} (one of {', '.join(GOODPUT_METRICS)})")
            if not math.isfinite(ms) or ms < 0:
                raise OptionError(f"{flag}: {name}:{value} must be a finite number of milliseconds >= 0")
            if name in limits:
                raise OptionError(f"{flag}: {name} is given twice")
            limits[name] = ms
    if not limits:
        raise OptionError(f"{flag}: give at least one KEY:VALUE")
    return limits


def percentile_word(p: float) -> str:
    """How vLLM names percentile ``p`` in its keys: 99 -> "99", 99.9 -> "99.9"."""
    return str(int(p)) if int(p) == p else str(p)


def summary_key(stem: str, p: float) -> str:
    """The summary key of percentile ``p`` of a family: ("latency", 99.9) -> "latency_p99.9_s"."""
    return f"{stem}_p{percentile_word(p)}_s"


# ------------------------------------------------------------ per request --
def served(requests: dict) -> np.ndarray:
    """Requests served to their last token (a rejected one has NaN times)."""
    return np.isfinite(np.asarray(requests["finish"], dtype=float))


def latencies(requests: dict) -> dict[str, np.ndarray]:
    """vLLM's per-request values (seconds) of the served requests: ttft, e2el, output, and tpot
    (one per request of > 1 output tokens) with ``tpot_all`` (0 for the others, as goodput uses it)."""
    ok = served(requests)
    arrival = np.asarray(requests["arrival"], dtype=float)[ok]
    ttft = np.asarray(requests["first_token"], dtype=float)[ok] - arrival
    e2el = np.asarray(requests["finish"], dtype=float)[ok] - arrival
    output = np.asarray(requests["output"], dtype=np.int64)[ok]
    gapped = output > 1
    tpot_all = np.zeros(len(output))
    tpot_all[gapped] = (e2el[gapped] - ttft[gapped]) / (output[gapped] - 1)
    return {"ttft": ttft, "e2el": e2el, "output": output, "tpot": tpot_all[gapped], "tpot_all": tpot_all,
            "gaps": np.maximum(output - 1, 0), "arrival": arrival}


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, pcts: Sequence[float]) -> np.ndarray:
    """numpy's (linear) percentiles of ``np.repeat(values, weights)``, without repeating."""
    keep = weights > 0
    values, weights = np.asarray(values, dtype=float)[keep], np.asarray(weights, dtype=np.int64)[keep]
    order = np.argsort(values, kind="stable")
    v, ends = values[order], np.cumsum(weights[order])   # repeated positions [ends[i-1], ends[i]) hold v[i]
    n = int(ends[-1])
    out = []
    for p in pcts:
        h = (n - 1) * p / 100.0
        lo = int(math.floor(h))
        a = v[np.searchsorted(ends, lo, side="right")]
        b = v[np.searchsorted(ends, min(lo + 1, n - 1), side="right")]
        out.append(a + (h - lo) * (b - a))
    return np.asarray(out)


def _stats(values: np.ndarray, pcts: Sequence[float], weights: np.ndarray | None = None) -> dict:
    """mean, median, std (population) and percentiles, in ms; 0 for an empty set (as vLLM)."""
    if weights is not None:
        keep = weights > 0
        values, weights = values[keep], weights[keep]
    if len(values) == 0:
        return {"mean": 0.0, "median": 0.0, "std": 0.0, "percentiles": [(p, 0.0) for p in pcts]}
    if weights is None:
        qs = np.percentile(values, [50.0, *pcts])
        mean, std = float(np.mean(values)), float(np.std(values))
    else:
        qs = weighted_percentiles(values, weights, [50.0, *pcts])
        mean = float(np.sum(values * weights) / np.sum(weights))
        std = float(math.sqrt(np.sum(weights * (values - mean) ** 2) / np.sum(weights)))
    return {"mean": mean * MS, "median": float(qs[0]) * MS, "std": std * MS,
            "percentiles": [(p, float(q) * MS) for p, q in zip(pcts, qs[1:])]}


def metric_stats(requests: dict, pcts: Sequence[float]) -> dict[str, dict]:
    """ttft, tpot, itl and e2el statistics (ms) as vLLM computes them (ITL: see the module doc)."""
    lat = latencies(requests)
    gapped = lat["output"] > 1
    return {"ttft": _stats(lat["ttft"], pcts), "tpot": _stats(lat["tpot"], pcts),
            "itl": _stats(lat["tpot_all"][gapped], pcts, lat["gaps"][gapped]), "e2el": _stats(lat["e2el"], pcts)}


def good_requests(requests: dict, limits_ms: dict[str, float]) -> int:
    """Served requests meeting every given limit (ms), as vLLM counts them: ``limit >= value``,
    a request of at most one output token with TPOT 0."""
    lat = latencies(requests)
    good = np.ones(len(lat["ttft"]), dtype=bool)
    for name, ms in limits_ms.items():
        values = lat["tpot_all"] if name == "tpot" else lat[name]
        good &= (ms / MS) >= values
    return int(good.sum())


def duration(requests: dict) -> float:
    """The run's span, vLLM's ``duration``: first arrival to last completion (s)."""
    return float(np.nanmax(np.asarray(requests["finish"], dtype=float)) - np.min(requests["arrival"]))


def max_concurrent_requests(requests: dict) -> int:
    """vLLM's peak of concurrent requests: with one-second buckets from the first arrival of a served
    request, each served request counts in every bucket from its arrival's to its finish's."""
    lat = latencies(requests)
    t0 = lat["arrival"].min()
    first = (lat["arrival"] - t0).astype(np.int64)
    last = (lat["arrival"] + lat["e2el"] - t0).astype(np.int64)
    diff = np.zeros(int(last.max()) + 2, dtype=np.int64)
    np.add.at(diff, first, 1)
    np.add.at(diff, last + 1, -1)
    return int(np.cumsum(diff).max())


def max_output_tokens_per_s(requests: dict) -> float:
    """vLLM's most output tokens in one one-second bucket (from the first arrival of a served request);
    each request's tokens at its first token, then one per gap of its TPOT (see the module doc)."""
    lat = latencies(requests)
    t0 = lat["arrival"].min()
    span = int(np.ceil((lat["arrival"] + lat["e2el"]).max() - t0)) + 1
    first = lat["arrival"] + lat["ttft"] - t0
    counts = lat["gaps"] + 1
    buckets = np.zeros(span, dtype=np.int64)
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):   # a slice of requests holding at most TOKEN_CHUNK tokens (or one request)
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + TOKEN_CHUNK, "right")))
        c = counts[start:stop]
        owner = np.repeat(np.arange(start, stop), c)
        k = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        b = np.floor(first[owner] + k * lat["tpot_all"][owner]).astype(np.int64)
        b = b[(b >= 0) & (b < span)]
        buckets += np.bincount(b, minlength=span)
        start = stop
    return float(buckets.max())


# ------------------------------------------------------------------ shapes --
def summary_percentiles(requests: dict, pcts: Sequence[float]) -> dict[str, float | None]:
    """Percentiles of batchlab's summary families (latency, ttft, tbt, tbt_max, queue_delay) in seconds,
    keyed as the summary keys them (``latency_p99.9_s``); None where a family has no value."""
    ok = served(requests)
    out: dict[str, float | None] = {}
    for stem, name in SUMMARY_ARRAYS.items():
        values = np.asarray(requests[name], dtype=float)[ok]
        values = values[~np.isnan(values)]
        qs = np.percentile(values, pcts) if len(values) else [None] * len(pcts)
        out.update({summary_key(stem, p): (None if q is None else float(q)) for p, q in zip(pcts, qs)})
    return out


def run_metadata(identity: dict, num_requests: int, model: str | None, max_concurrency: int | None,
                 arrival: np.ndarray, now: datetime | None = None) -> dict:
    """vLLM's setup and traffic fields from batchlab's workload identity: ``date`` (vLLM's
    ``%Y%m%d-%H%M%S``), ``backend``, ``model_id``, ``num_prompts``, ``request_rate`` (the configured
    mean rate, else the measured one), ``burstiness`` (the gamma shape: 1 for Poisson, None for
    trace timestamps) and ``max_concurrency``."""
    spec = identity.get("spec", {})
    rate = spec.get("rate")
    if rate is None and len(arrival) > 1 and arrival[-1] > arrival[0]:
        rate = (len(arrival) - 1) / float(arrival[-1] - arrival[0])
    burstiness = {"poisson": 1.0, "gamma": spec.get("gamma_shape")}.get(spec.get("arrival"))
    return {"date": (now or datetime.now()).strftime("%Y%m%d-%H%M%S"), "endpoint_type": BACKEND, "backend": BACKEND,
            "label": identity.get("label"), "model_id": model, "tokenizer_id": model, "num_prompts": num_requests,
            "request_rate": "inf" if rate is None else float(rate), "burstiness": burstiness,
            "max_concurrency": max_concurrency}


def bench_serve_result(requests: dict, metadata: dict, pcts: Sequence[float] = VLLM_PERCENTILES,
                       goodput: dict[str, float] | None = None, detailed: bool = False) -> dict:
    """One result object as ``vllm bench serve --save-result`` writes it (``--save-detailed``: with
    the per-request lists input_lens, output_lens, ttfts, itls, latencies, start_times, errors)."""
    ok = served(requests)
    lat = latencies(requests)
    dur = duration(requests)
    total_input = int(np.asarray(requests["prompt"], dtype=np.int64)[ok].sum())
    total_output = int(lat["output"].sum())
    completed = int(ok.sum())
    result = dict(metadata)
    result.update({
        "duration": dur,
        "completed": completed,
        "failed": int(len(ok) - completed),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": completed / dur,
        "request_goodput": good_requests(requests, goodput) / dur if goodput else None,
        "output_throughput": total_output / dur,
        "total_token_throughput": (total_input + total_output) / dur,
        "max_output_tokens_per_s": max_output_tokens_per_s(requests),
        "max_concurrent_requests": max_concurrent_requests(requests),
        "percentile_metrics": ",".join(PERCENTILE_METRICS),
        "metric_percentiles": ",".join(percentile_word(p) for p in pcts),
        "goodput": dict(goodput) if goodput else None,
    })
    for name, st in metric_stats(requests, pcts).items():
        result[f"mean_{name}_ms"] = st["mean"]
        result[f"median_{name}_ms"] = st["median"]
        result[f"std_{name}_ms"] = st["std"]
        for p, value in st["percentiles"]:
            result[f"p{percentile_word(p)}_{name}_ms"] = value
    if detailed:
        result.update(detailed_lists(requests))
    return result


def detailed_lists(requests: dict) -> dict[str, list]:
    """vLLM's per-request lists, one entry per request in arrival order; a rejected request has
    output length 0, TTFT and latency 0, no ITLs and an error (as vLLM writes a failed request)."""
    ok = served(requests)
    arrival = np.asarray(requests["arrival"], dtype=float)
    lat = latencies(requests)
    ttfts, latency = np.zeros(len(ok)), np.zeros(len(ok))
    ttfts[ok], latency[ok] = lat["ttft"], lat["e2el"]
    output = np.where(ok, np.asarray(requests["output"], dtype=np.int64), 0)
    tpot = np.zeros(len(ok))
    tpot[ok] = lat["tpot_all"]
    return {"input_lens": np.asarray(requests["prompt"], dtype=np.int64).tolist(), "output_lens": output.tolist(),
            "ttfts": ttfts.tolist(), "itls": [[g] * int(max(o - 1, 0)) for g, o in zip(tpot.tolist(), output)],
            "latencies": latency.tolist(), "start_times": arrival.tolist(),
            "errors": ["" if s else REJECTED for s in ok.tolist()]}


def goodput_summary(requests: dict, limits_ms: dict[str, float]) -> dict:
    """``request_goodput`` (req/s), ``good_requests`` and the limits, for the text and JSON summaries."""
    good = good_requests(requests, limits_ms)
    return {"request_goodput": good / duration(requests), "good_requests": good, "goodput_limits_ms": dict(limits_ms)}


# -------------------------------------------------------------- text, csv --
FAMILY_LABELS = {"latency": "latency (e2e)", "ttft": "TTFT", "tbt": "TBT (mean gap)", "tbt_max": "largest gap",
                 "queue_delay": "queueing"}


def percentiles_text(summary: dict, pcts: Sequence[float]) -> str:
    """The chosen percentiles of each family, one line each (for ``batchlab run``'s text)."""
    from .units import seconds

    lines = [f"  percentiles      {', '.join('p' + percentile_word(p) for p in pcts)}"]
    for stem, label in FAMILY_LABELS.items():
        cells = ", ".join(f"p{percentile_word(p)} {seconds(summary.get(summary_key(stem, p)))}" for p in pcts)
        lines.append(f"    {label:<15}{cells}")
    return "\n".join(lines)


def goodput_text(summary: dict) -> str:
    """``batchlab run``'s goodput line: rate, count and the limits it was judged by."""
    from .units import number, sig

    limits = ", ".join(f"{k} <= {number(v, 'ms', 1)}" for k, v in summary["goodput_limits_ms"].items())
    return (f"  goodput          {sig(summary['request_goodput'], 'req/s', 4)} ({summary['good_requests']:,} of "
            f"{summary['completed']:,} served requests meet {limits})")


def percentiles_table(rows: list[dict], pcts: Sequence[float]) -> str:
    """The chosen percentiles of several runs (columns, by mode), for ``batchlab compare``'s text."""
    from .units import seconds

    table = [(f"{label} p{percentile_word(p)}", [seconds(r.get(summary_key(stem, p))) for r in rows])
             for stem, label in FAMILY_LABELS.items() for p in pcts]
    label_width = max(len(label) for label, _ in table) + 2
    width = max(18, *(len(r["mode"]) for r in rows), *(len(c) for _, cells in table for c in cells)) + 2
    out = ["percentile".ljust(label_width) + "".join(r["mode"].rjust(width) for r in rows)]
    out += [label.ljust(label_width) + "".join(c.rjust(width) for c in cells) for label, cells in table]
    return "\n".join(out)
