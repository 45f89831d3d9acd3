"""Synthetic requests: Poisson or Gamma arrivals and lengths drawn from a length spec.

Length specs (one string per column):

    fixed:N              every request has N tokens
    uniform:LO:HI        integers LO..HI inclusive (Paper 1's setting)
    exponential:MEAN     exponential with that mean (rounded, at least 1)
    geometric:MEAN       geometric on 1, 2, 3, ... with that exact mean (the
                         discrete exponential: with a constant decode step the
                         service time is memoryless, as in M/M/c queueing)
    lognormal:MEAN:STD   log-normal whose lengths have this mean and std
                         (converted to log space by moments)
    burstgpt             log-normal fitted by moments to the BurstGPT whole-trace
                         figures: prompt 611 +- 782, output 123 +- 268 tokens
                         (Wang et al., "BurstGPT", KDD '25, arXiv 2401.17644)

Continuous draws are rounded to integers, raised to at least 1 and clipped to
PROMPT_MAX / OUTPUT_MAX, so the realised mean of a heavy tail is slightly below
the nominal one.

Ramp-up profiles (``ramp_up``, as ``vllm bench serve --ramp-up-strategy``):

    linear:START:END       request i's rate START + (END - START) * i / (n - 1)
    exponential:START:END  request i's rate START * (END / START) ** (i / (n - 1))

in req/s, 0 < START <= END (vLLM refuses a start above the end). The gap before request i
(i >= 1; the first arrives at 0) is drawn at request i's rate, as vLLM draws each request's delay at
its own rate (vllm/benchmarks/serve.py, ``_get_current_request_rate`` and ``get_request``); vLLM
also waits a gap before request 0, which the convention here (first arrival at 0) drops.

Every column draws from its own child stream of ``default_rng(seed)``
(see :func:`streams`), so changing one column's spec leaves the others as
they were.

Shared prefixes (for prefix caching) come as :class:`~workloads.workload.PrefixKeys`
in blocks of KEY_BLOCK tokens: shared system prompts (:func:`zipf_choice`, each
request starting with one) and multi-turn conversations (:func:`draw_conversations`,
each turn's prompt holding the previous turn's prompt and output). Both draw from
their own streams, so with both off a workload is what it was before they existed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .limits import check_span
from .workload import PrefixKeys, WorkloadError

# Longest synthetic prompt and output: the 16K context and 4K response limit of the ChatGPT models
# BurstGPT was collected from; about 0.3 % of BurstGPT-fitted prompts are clipped at 16K.
PROMPT_MAX = 16384
OUTPUT_MAX = 4096
BURSTGPT_PROMPT = (611.0, 782.0)  # whole-trace mean, std of Request tokens
BURSTGPT_OUTPUT = (123.0, 268.0)  # whole-trace mean, std of Response tokens
LENGTH_FORMS = "fixed:N, uniform:LO:HI, exponential:MEAN, geometric:MEAN, lognormal:MEAN:STD, burstgpt"
# a new stream goes last: the others keep theirs
STREAMS = ("arrival", "prompt", "output", "predictor", "priority", "system", "conversation")
KEY_BLOCK = 16       # tokens per prefix key of a synthetic workload
KEY_STRIDE = 4096    # keys of one system prompt or conversation: more than the blocks a request holds
assert KEY_STRIDE * KEY_BLOCK > PROMPT_MAX + OUTPUT_MAX
PRIORITY_FORMS = "VALUE:SHARE,... (e.g. 0:0.1,1:0.9)"
MAX_PRIORITY_CLASSES = 64
MAX_CV = 100  # lognormal STD / MEAN: beyond this nearly every draw is 1 or the cap
RAMP_FORMS = "linear:START:END, exponential:START:END (req/s, 0 < START <= END)"
RAMPS = ("linear", "exponential")
MAX_RATE = 1e6   # req/s, as the rate setting's range


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per column, children of ``default_rng(seed)``."""
    children = np.random.default_rng(seed).spawn(len(STREAMS))
    return dict(zip(STREAMS, children))


def parse_priority_mix(text: object, field: str = "priority_mix") -> tuple[tuple[int, float], ...]:
    """``VALUE:SHARE,...``: integer priorities and the share of requests with each (shares > 0, summing
    to 1), ascending by value; WorkloadError names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise WorkloadError(f"{field}: expected {PRIORITY_FORMS}, got {text!r}")
    classes: dict[int, float] = {}
    for part in text.split(","):
        value, sep, share = part.strip().partition(":")
        try:
            v, s = int(value), float(share)
        except ValueError:
            raise WorkloadError(f"{field}: {part.strip()!r} is not VALUE:SHARE (accepted: {PRIORITY_FORMS})") from None
        if not sep or not -2**31 <= v < 2**31:
            raise WorkloadError(f"{field}: {part.strip()!r} is not VALUE:SHARE with a 32-bit integer VALUE")
        if not 0 < s <= 1:
            raise WorkloadError(f"{field}: the share of priority {v} must be in (0, 1], got {share.strip()!r}")
        if v in classes:
            raise WorkloadError(f"{field}: priority {v} is given twice")
        classes[v] = s
    if len(classes) > MAX_PRIORITY_CLASSES:
        raise WorkloadError(f"{field}: at most {MAX_PRIORITY_CLASSES} classes, got {len(classes)}")
    total = sum(classes.values())
    if abs(total - 1.0) > 1e-6:
        raise WorkloadError(f"{field}: the shares must sum to 1, got {total:g}")
    return tuple(sorted(classes.items()))


def priority_mix_text(classes: tuple[tuple[int, float], ...]) -> str:
    """The canonical text of a parsed mix."""
    return ",".join(f"{v}:{s:g}" for v, s in classes)


def sample_priorities(classes: tuple[tuple[int, float], ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Each request's priority, drawn independently with the mix's shares."""
    values = np.array([v for v, _ in classes], dtype=np.int64)
    shares = np.array([s for _, s in classes])
    return values[rng.choice(len(values), size=n, p=shares / shares.sum())]


# ----------------------------------------------------------------- arrivals
@dataclass(frozen=True)
class RampUp:
    """A parsed ramp-up profile; ``str()`` gives its canonical text."""

    kind: str
    start: float
    end: float

    def __str__(self) -> str:
        return f"{self.kind}:{_num(self.start)}:{_num(self.end)}"

    def rates(self, n: int) -> np.ndarray:
        """Request i's rate (req/s) for i = 0 .. n-1, vLLM's progress i / max(n - 1, 1)."""
        progress = np.arange(n, dtype=np.float64) / max(n - 1, 1)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.start * (self.end / self.start) ** progress

    def text(self) -> str:
        """In words, for labels: ``linear ramp 1 -> 20 req/s``."""
        return f"{self.kind} ramp {_num(self.start)} -> {_num(self.end)} req/s"


def parse_ramp_up(text: object, field: str = "ramp_up") -> RampUp:
    """Parse and check a ramp-up spec; WorkloadError names ``field`` and what is wrong."""
    kind, args = split_spec(text, field, RAMP_FORMS)
    if kind not in RAMPS or len(args) != 2:
        raise WorkloadError(f"{field}: malformed ramp-up spec {text!r} (accepted forms: {RAMP_FORMS})")
    start, end = (spec_number(a, field, str(text), RAMP_FORMS) for a in args)
    if not 0 < start <= end <= MAX_RATE:
        raise WorkloadError(f"{field}: need 0 < START <= END <= {MAX_RATE:g} req/s in spec {text!r}")
    return RampUp(kind, float(start), float(end))


def arrival_times(kind: str, n: int, rate: float, rng: np.random.Generator,
                  gamma_shape: float = 0.5, field: str = "rate", ramp: RampUp | None = None) -> np.ndarray:
    """``n`` arrival times (s) at mean ``rate`` req/s, the first at 0.

    poisson: exponential gaps (CV 1); gamma: Gamma(shape, 1/(rate*shape)) gaps,
    CV = 1/sqrt(shape) (BurstGPT's generator uses shape 0.5). Arrivals that would
    span :data:`~workloads.limits.MAX_TIME_S` or more are refused, on the mean
    span before drawing and on the drawn one after (a small gamma shape draws huge
    gaps); the error names ``field``, the setting that made the rate. With ``ramp``, the gap
    before request i is drawn at the ramp's rate of request i instead (``rate`` unused).
    """
    if n < 1:
        raise WorkloadError(f"num_requests: must be >= 1, got {n}")
    if ramp is not None:
        return _ramped_times(kind, n, ramp, rng, gamma_shape)
    if not (rate > 0 and math.isfinite(rate)):
        raise WorkloadError(f"{field}: must be > 0 req/s, got {rate}")
    check_span((n - 1) / rate, field, f"{n:,} requests at {rate:g} req/s")
    times = np.zeros(n, dtype=np.float64)
    np.cumsum(arrival_gaps(kind, n - 1, rate, rng, gamma_shape), out=times[1:])
    shape = f" with gamma shape {gamma_shape:g}" if kind == "gamma" else ""
    check_span(float(times[-1]), field, f"the {n:,} {kind} arrivals drawn at {rate:g} req/s{shape}")
    return times


def _ramped_times(kind: str, n: int, ramp: RampUp, rng: np.random.Generator, gamma_shape: float) -> np.ndarray:
    """``n`` arrival times (s), the first at 0, each gap drawn at its request's ramp rate."""
    rates = ramp.rates(n)[1:]
    check_span(float(np.sum(1.0 / rates)), "ramp_up", f"{n:,} requests on a {ramp.text()}")
    times = np.zeros(n, dtype=np.float64)
    np.cumsum(arrival_gaps(kind, n - 1, rates, rng, gamma_shape), out=times[1:])
    check_span(float(times[-1]), "ramp_up", f"the {n:,} {kind} arrivals drawn on a {ramp.text()}")
    return times


def arrival_gaps(kind: str, m: int, rate, rng: np.random.Generator, gamma_shape: float = 0.5) -> np.ndarray:
    """``m`` gaps (s) between arrivals at mean ``rate`` (a number, or one per gap): exponential (poisson)
    or Gamma(shape)."""
    if kind == "poisson":
        return rng.exponential(1.0 / rate, m)
    if kind == "gamma":
        if not gamma_shape > 0:
            raise WorkloadError(f"gamma_shape: must be > 0, got {gamma_shape}")
        return rng.gamma(gamma_shape, 1.0 / (rate * gamma_shape), m)
    raise WorkloadError(f"arrival: synthetic arrivals are poisson or gamma, got {kind!r}")


# ------------------------------------------------------------------ lengths
@dataclass(frozen=True)
class LengthSpec:
    """A parsed length spec; ``str()`` gives its canonical text."""

    kind: str
    params: tuple[float, ...] = ()

    def __str__(self) -> str:
        if self.kind == "burstgpt":
            return "burstgpt"
        return ":".join([self.kind, *(_num(p) for p in self.params)])

    def moments(self) -> tuple[float, float]:
        """Nominal (mean, std) of the lengths before rounding and clipping."""
        k, p = self.kind, self.params
        if k == "fixed":
            return p[0], 0.0
        if k == "uniform":
            width = p[1] - p[0] + 1
            return (p[0] + p[1]) / 2, math.sqrt((width * width - 1) / 12)
        if k == "exponential":
            return p[0], p[0]
        if k == "geometric":
            return p[0], math.sqrt(p[0] * (p[0] - 1))
        return p[0], p[1]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def split_spec(text: object, field: str, forms: str) -> tuple[str, list[str]]:
    """``"kind:a:b"`` -> ``("kind", ["a", "b"])``, lower-cased and stripped."""
    if not isinstance(text, str) or not text.strip():
        raise WorkloadError(f"{field}: expected a spec string, got {text!r} (accepted forms: {forms})")
    kind, *args = [part.strip() for part in text.strip().lower().split(":")]
    return kind, args


def spec_number(arg: str, field: str, text: str, forms: str, integer: bool = False) -> float:
    """One numeric spec argument; malformed -> error naming the spec and the forms."""
    try:
        value = int(arg) if integer else float(arg)
    except ValueError:
        what = "an integer" if integer else "a number"
        raise WorkloadError(f"{field}: {arg!r} in spec {text!r} is not {what} "
                            f"(accepted forms: {forms})") from None
    if not math.isfinite(value):
        raise WorkloadError(f"{field}: {arg!r} in spec {text!r} must be finite (accepted forms: {forms})")
    return value


def parse_length_spec(text: object, field: str, maximum: int,
                      burstgpt: tuple[float, float]) -> LengthSpec:
    """Parse and check a length spec for the column ``field`` (capped at ``maximum``)."""
    kind, args = split_spec(text, field, LENGTH_FORMS)
    arity = {"fixed": 1, "uniform": 2, "exponential": 1, "geometric": 1, "lognormal": 2, "burstgpt": 0}
    if kind not in arity or len(args) != arity[kind]:
        raise WorkloadError(f"{field}: malformed length spec {text!r} "
                            f"(accepted forms: {LENGTH_FORMS})")
    if kind == "burstgpt":
        return LengthSpec("burstgpt", burstgpt)
    integer = kind in ("fixed", "uniform")
    p = tuple(spec_number(a, field, str(text), LENGTH_FORMS, integer) for a in args)

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise WorkloadError(f"{field}: {msg} in spec {text!r}")

    if kind == "fixed":
        need(1 <= p[0] <= maximum, f"N must be between 1 and {maximum} tokens")
    elif kind == "uniform":
        need(1 <= p[0] <= p[1] <= maximum, f"need 1 <= LO <= HI <= {maximum} tokens")
    else:
        need(1 <= p[0] <= maximum, f"MEAN must be between 1 and {maximum} tokens")
        if kind == "lognormal":
            need(0 <= p[1] <= MAX_CV * p[0], f"STD must be between 0 and {MAX_CV} x MEAN")
    return LengthSpec(kind, tuple(float(x) for x in p))


def lognormal_params(mean: float, std: float) -> tuple[float, float]:
    """(mu, sigma) of the underlying normal for lengths of this mean and std."""
    sigma2 = math.log1p((std / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


def sample_lengths(spec: LengthSpec, n: int, rng: np.random.Generator, maximum: int) -> np.ndarray:
    """``n`` int64 lengths in [1, maximum] following ``spec``."""
    k, p = spec.kind, spec.params
    if k == "fixed":
        return np.full(n, int(p[0]), dtype=np.int64)
    if k == "uniform":
        return rng.integers(int(p[0]), int(p[1]), size=n, endpoint=True, dtype=np.int64)
    if k == "exponential":
        raw = rng.exponential(p[0], n)
    elif k == "geometric":
        raw = rng.geometric(1.0 / p[0], n)
    else:  # lognormal, burstgpt
        mu, sigma = lognormal_params(*p)
        raw = rng.lognormal(mu, sigma, n)
    return np.clip(np.rint(raw), 1, maximum).astype(np.int64)


# ------------------------------------------------------------ shared prefixes
def zipf_choice(count: int, s: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of 0..count-1, where k-1 is drawn with probability proportional to k^-s."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -s
    return rng.choice(count, size=size, p=weights / weights.sum())


def prefix_keys(tokens: np.ndarray, system: np.ndarray | None, system_tokens: int,
                conversation: np.ndarray | None) -> PrefixKeys:
    """Keys in KEY_BLOCK-token blocks: the full blocks of a request's system prompt (``system``, 0-based,
    or None) keyed by (system prompt, block); with ``conversation`` (each request's, 0-based) every other
    whole block of its ``tokens`` (prompt + output) keyed by (conversation, block), else no more keys."""
    n = len(tokens)
    full = system_tokens // KEY_BLOCK if system is not None else 0
    counts = np.asarray(tokens, dtype=np.int64) // KEY_BLOCK if conversation is not None \
        else np.full(n, full, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    block = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
    keys = np.zeros(offsets[-1], dtype=np.int64)
    if system is not None:
        keys = (np.repeat(np.asarray(system, dtype=np.int64), counts) + 1) * KEY_STRIDE + block
    if conversation is not None:
        own = -((np.repeat(np.asarray(conversation, dtype=np.int64), counts) + 1) * KEY_STRIDE + block)
        keys = np.where(block < full, keys, own)
    return PrefixKeys(KEY_BLOCK, offsets, keys)


@dataclass(frozen=True, eq=False)
class Conversations:
    """Turns of multi-turn conversations, one entry per request, sorted by arrival (stable)."""

    arrival: np.ndarray        # float64 s
    prompt: np.ndarray         # int64: the previous turn's prompt and output plus this turn's message
    output: np.ndarray         # int64
    conversation: np.ndarray   # int64, 0-based in start order
    turn: np.ndarray           # int64, 0-based


def draw_conversations(n: int, turns: int, think_time: float, starts, messages, outputs,
                       think: np.random.Generator, head: int = 0) -> Conversations:
    """``n`` requests: conversations of up to ``turns`` turns, taken in start order until there are
    ``n`` (the last one cut short).

    ``starts(k)``, ``messages(k)`` and ``outputs(k)`` draw the next ``k`` conversation start times
    (continuing the previous ones), user-message lengths and output lengths; ``think`` draws the
    exponential gaps (mean ``think_time``) from one turn's arrival to the next. Every first prompt
    starts with ``head`` tokens (a system prompt) and is clipped to PROMPT_MAX; a conversation ends
    before a turn whose prompt would exceed PROMPT_MAX.
    """
    columns: list[tuple[np.ndarray, ...]] = []
    made = convs = 0
    while made < n:
        remaining = n - made
        k = min(remaining, -(-remaining * convs // made) if made else -(-remaining // turns))
        column = _conversation_chunk(k, turns, think_time, starts(k), messages, outputs, think, head)
        columns.append((column[0] + convs, *column[1:]))
        made += len(column[0])
        convs += k
    conv, turn, arrival, prompt, output = (np.concatenate(c) for c in zip(*columns))
    keep = np.lexsort((turn, conv))[:n]            # conversation order, then cut at n
    order = keep[np.argsort(arrival[keep], kind="stable")]
    return Conversations(arrival[order], prompt[order], output[order], conv[order], turn[order])


def _conversation_chunk(k: int, turns: int, think_time: float, start: np.ndarray, messages, outputs,
                        think: np.random.Generator, head: int) -> tuple[np.ndarray, ...]:
    """Every turn of ``k`` conversations starting at ``start``, turn by turn: (conversation within the
    chunk, turn, arrival, prompt, output), one entry per request."""
    alive = np.arange(k)
    history = np.full(k, head, dtype=np.int64)     # tokens before the next message
    at = np.asarray(start, dtype=np.float64).copy()
    out: list[tuple[np.ndarray, ...]] = []
    for t in range(turns):
        message, output = messages(len(alive)), outputs(len(alive))
        prompt = history[alive] + message
        if t == 0:
            prompt = np.minimum(prompt, PROMPT_MAX)
        else:
            at[alive] += think.exponential(think_time, len(alive))
            fits = prompt <= PROMPT_MAX
            alive, prompt, output = alive[fits], prompt[fits], output[fits]
        if not len(alive):
            break
        history[alive] = prompt + output
        out.append((alive, np.full(len(alive), t, dtype=np.int64), at[alive], prompt, output))
    return tuple(np.concatenate(c) for c in zip(*out))


def conversation_starts(kind: str, rate: float, rng: np.random.Generator, gamma_shape: float):
    """``starts(k)``: the next ``k`` start times of one arrival process at ``rate`` (the first at 0)."""
    last: list[float] = []

    def starts(k: int) -> np.ndarray:
        if last:
            times = last[0] + np.cumsum(arrival_gaps(kind, k, rate, rng, gamma_shape))
        else:
            times = np.zeros(k, dtype=np.float64)
            np.cumsum(arrival_gaps(kind, k - 1, rate, rng, gamma_shape), out=times[1:])
        last[:] = [float(times[-1])]
        check_span(last[0], "rate", f"conversations starting at {rate:g} per second")
        return times

    return starts
