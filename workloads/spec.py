"""``WorkloadSpec``: the frozen, validated description of how to build a workload.

Each field carries help, unit, group and choices in its metadata, so CLI flags
and web-form widgets are generated from this table (see :func:`spec_fields`).
A bad value raises :class:`SpecError` (a ``WorkloadError``) whose message
starts with the field name.

Fields left at ``None`` are "auto" and resolve by workload (:meth:`resolved`):

================  ==========================  ===============================
field             synthetic                   traces (burstgpt, mooncake, ...)
================  ==========================  ===============================
arrival           gamma                       trace (recorded timestamps)
rate              12.0 req/s (none: ramp_up)  none: keep the trace's time scale
num_requests      10000                       all rows from ``offset``
real_timestamps   false                       true iff arrival=trace, no rate
                                              and rps_scaling = 1
================  ==========================  ===============================

A mooncake trace is a JSONL path (none is bundled) whose ``hash_ids`` become
the workload's prefix keys (``hash_block`` tokens each); a synthetic workload
gets prefix keys from shared system prompts (``system_prompts``) and multi-turn
conversations (``conversation_turns``). Settings of the other kind are errors.
The other trace workloads (azure, splitwise, vllm-bench, csv with ``trace_columns``,
and trace: any of them, detected from the file's content) are paths too; see
:mod:`workloads.trace_formats` and docs/traces.md.

On a trace (either kind), ``arrival=trace`` keeps the recorded timestamps: ``rate`` rescales
time so the mean rate ((n-1)/span) becomes ``rate``; ``rps_scaling`` divides
time by a factor (2 = twice the rate); the two cannot be combined.
``arrival=poisson|gamma`` keeps the trace's lengths and draws new arrivals at
``rate``, or at the window's own mean rate times ``rps_scaling``.
``real_timestamps`` is a guard that states the intent: true conflicts with
anything that changes the time scale; false on a trace with arrival=trace
needs a rate or rps_scaling to say how.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .burstgpt import bundled_traces
from .fields import FieldError, coerce_fields, described
from .mooncake import HASH_BLOCK, MAX_BLOCK
from .predictors import PREDICTOR_FORMS, parse_predictor
from .synthetic import (
    BURSTGPT_OUTPUT,
    BURSTGPT_PROMPT,
    LENGTH_FORMS,
    OUTPUT_MAX,
    PRIORITY_FORMS,
    PROMPT_MAX,
    RAMP_FORMS,
    parse_length_spec,
    parse_priority_mix,
    parse_ramp_up,
    priority_mix_text,
)
from .trace_csv import MAPPING_FORM, parse_columns
from .workload import WorkloadError

# "trace": a trace file whose format is detected from its content (workloads.trace_formats)
TRACE_WORKLOADS = ("burstgpt", "mooncake", "azure", "splitwise", "vllm-bench", "csv", "trace")
WORKLOADS = ("synthetic", *TRACE_WORKLOADS)
ARRIVALS = ("poisson", "gamma", "trace")
DEFAULT_TRACE = "BurstGPT_1_first400"
SYNTHETIC_REQUESTS = 10_000
SYNTHETIC_RATE = 12.0
MAX_REQUESTS = 10_000_000
MAX_SEED = 2**63 - 1
MAX_ROWS = 10**9
MAX_SYSTEM_PROMPTS = 1_000_000
MAX_TURNS = 1000
# synthetic sharing settings and their defaults: a trace refuses any other value
SHARING = {"system_prompts": None, "system_prompt_tokens": 1024, "system_zipf": 1.0,
           "conversation_turns": None, "think_time": 30.0}


class SpecError(FieldError, WorkloadError):
    """An invalid workload setting; ``field`` names it."""


def _f(default: Any, help: str, unit: str = "", group: str = "workload", **extra: Any):
    return described(default, help, unit, group, **extra)


@dataclass(frozen=True)
class WorkloadSpec:
    """What requests to simulate: a synthetic generator or a trace window (BurstGPT or Mooncake)."""

    # --- source ----------------------------------------------------------
    workload: str = _f("synthetic", "synthetic (generated), burstgpt (a BurstGPT trace CSV), mooncake "
                       "(a Mooncake JSONL trace, whose hash_ids say which prompt blocks requests share), "
                       "azure (an Azure LLM inference trace CSV), splitwise (a Splitwise or Vidur request CSV), "
                       "vllm-bench (a vllm bench serve --save-detailed result JSON), csv (a CSV read with "
                       "trace_columns, or batchlab's plain arrival,prompt,output layout) or trace (a trace file "
                       "of any of these formats, detected from its content). See docs/traces.md.",
                       choices=WORKLOADS)
    trace: str = _f(DEFAULT_TRACE, "burstgpt: a bundled excerpt (" + ", ".join(bundled_traces())
                    + ") or the path of a BurstGPT CSV. mooncake: the path of a Mooncake JSONL trace "
                    "(none is bundled). azure, splitwise, vllm-bench, csv: the path of such a file; trace: a bundled "
                    "excerpt or the path of a file in any of these formats.", examples=tuple(bundled_traces()))
    num_requests: int | None = _f(None, "Requests to generate (synthetic, auto = 10000; with "
                                  "conversation_turns, turns in all), or rows of the trace window "
                                  "(a trace: auto = all rows from offset; failed rows in the "
                                  "window are then dropped unless keep_failed).", "requests",
                                  range=(1, MAX_REQUESTS))
    offset: int = _f(0, "A trace: first data row of the window (0-based, failed rows counted).",
                     "rows", range=(0, MAX_ROWS))
    keep_failed: bool = _f(False, "A trace: keep failed rows (output 0) as requests with "
                           "output 0 instead of dropping them.")
    hash_block: int = _f(HASH_BLOCK, f"mooncake: prompt tokens each hash id names ({HASH_BLOCK} in "
                         "Mooncake's published traces).", "tokens", range=(1, MAX_BLOCK))
    trace_columns: str | None = _f(None, f"csv (or trace): which CSV columns hold what, {MAPPING_FORM} "
                                   "(the arrival's unit; date: date-time text), e.g. "
                                   "arrival=ts:ms,prompt=in,output=out. none: the plain layout "
                                   "arrival,prompt,output[,priority] (arrival in s).")
    # --- arrivals --------------------------------------------------------
    arrival: str | None = _f(None, "poisson, gamma (bursty) or trace (the trace's timestamps; trace "
                             "workloads only). auto: gamma for synthetic, trace for a trace.", group="arrivals",
                             choices=ARRIVALS)
    rate: float | None = _f(None, "Mean arrival rate. synthetic: auto = 12.0; with conversation_turns, "
                            "the rate conversations start at (each then brings its turns). A trace: "
                            "rescales the trace's time (arrival=trace) or sets the re-drawn "
                            "arrivals' rate; auto keeps the trace's own rate.", "req/s", "arrivals",
                            range=(1e-6, 1e6))
    gamma_shape: float = _f(0.5, "Shape of Gamma inter-arrivals; CV = 1/sqrt(shape) "
                            "(0.5 as in BurstGPT's generator; 1 = Poisson).", "", "arrivals",
                            range=(0.01, 1000.0))
    ramp_up: str | None = _f(None, f"Poisson or gamma arrivals whose rate ramps from START to END over the run "
                             f"({RAMP_FORMS}), as vllm bench serve --ramp-up-strategy: request i's gap is drawn at "
                             "START + (END - START) i / (n - 1), or START (END / START)^(i / (n - 1)). It sets the "
                             "rate (leave rate auto); on a trace it needs re-drawn arrivals. none = a constant "
                             "rate.", "req/s", "arrivals", forms=RAMP_FORMS)
    rps_scaling: float = _f(1.0, "A trace: compress the trace's time by this factor (2 = twice the "
                            "rate). Cannot be combined with rate.", "x", "arrivals",
                            range=(1e-6, 1e6))
    real_timestamps: bool | None = _f(None, "A trace: replay the recorded timestamps unchanged. auto: "
                                      "true unless rate, rps_scaling or a re-drawn arrival changes them; "
                                      "true with any of those is an error.", group="arrivals")
    conversation_turns: int | None = _f(None, "synthetic: multi-turn conversations of this many turns "
                                        "(none = single requests). Conversations start at the arrival "
                                        "process's times; each turn's prompt is the previous turn's prompt "
                                        "and output plus a new message drawn from prompt_lengths, so it "
                                        "shares their KV blocks. A conversation ends early rather than "
                                        f"exceed {PROMPT_MAX} prompt tokens, and the last one is cut short "
                                        "to make num_requests requests in all.", "turns", "arrivals",
                                        range=(1, MAX_TURNS))
    think_time: float = _f(SHARING["think_time"], "synthetic, with conversation_turns: mean time from one "
                           "turn's arrival to the next turn's (exponential).", "s", "arrivals",
                           range=(0.0, 1e6))
    # --- lengths and prediction -------------------------------------------
    prompt_lengths: str = _f("burstgpt", f"synthetic: prompt length spec ({LENGTH_FORMS}); at most "
                             f"{PROMPT_MAX}.", "tokens", "lengths", forms=LENGTH_FORMS)
    output_lengths: str = _f("burstgpt", f"synthetic: output length spec ({LENGTH_FORMS}); at most "
                             f"{OUTPUT_MAX}.", "tokens", "lengths", forms=LENGTH_FORMS)
    predictor: str = _f("noisy:0.5", f"Output-length predictor ({PREDICTOR_FORMS}); bins use the "
                        "prediction, service the true length.", "", "lengths", forms=PREDICTOR_FORMS)
    priority_mix: str | None = _f(None, f"synthetic: priority classes and the share of requests in each, "
                                  f"{PRIORITY_FORMS}: the priority policies (vLLM's) serve smaller values first. "
                                  "none = every request 0 (a trace's come from its Priority column).", "",
                                  "lengths", forms=PRIORITY_FORMS)
    system_prompts: int | None = _f(None, "synthetic: number of distinct shared system prompts (none = "
                                    "off). Each request (each conversation) starts with one of them, so "
                                    "requests with the same one share its KV blocks; its prompt is the "
                                    f"system prompt plus the drawn prompt length, clipped to {PROMPT_MAX}.",
                                    "prompts", "lengths", range=(1, MAX_SYSTEM_PROMPTS))
    system_prompt_tokens: int = _f(SHARING["system_prompt_tokens"], "synthetic, with system_prompts: "
                                   "length of every system prompt.", "tokens", "lengths",
                                   range=(1, PROMPT_MAX))
    system_zipf: float = _f(SHARING["system_zipf"], "synthetic, with system_prompts: popularity skew s; "
                            "system prompt k (1, 2, ...) is picked with probability proportional to k^-s "
                            "(0 = all equally popular).", "exponent", "lengths", range=(0.0, 10.0))
    workload_seed: int = _f(0, "Random seed of the workload (arrivals, lengths, prediction noise); the "
                            "simulation has its own (seed).", range=(0, MAX_SEED))

    def __post_init__(self) -> None:
        coerce_fields(self, SpecError)
        self._validate()

    # ------------------------------------------------------------------
    def _validate(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise SpecError(name, msg)

        synthetic = self.workload == "synthetic"
        need(bool(self.trace), "trace", "must name a bundled trace or a trace file's path")
        # canonical spec strings, so equal specs hash equal
        self._canonical("prompt_lengths", lambda v, n: parse_length_spec(v, n, PROMPT_MAX, BURSTGPT_PROMPT))
        self._canonical("output_lengths", lambda v, n: parse_length_spec(v, n, OUTPUT_MAX, BURSTGPT_OUTPUT))
        self._canonical("predictor", parse_predictor)
        if self.priority_mix is not None:
            self._canonical("priority_mix", lambda v, n: priority_mix_text(parse_priority_mix(v, n)))
        if self.ramp_up is not None:
            self._canonical("ramp_up", parse_ramp_up)
            if self.rate is not None:
                raise SpecError("ramp_up", f"sets the arrival rate; it cannot be combined with rate={self.rate:g} "
                                "(leave rate auto)")
            need(self.rps_scaling == 1.0, "ramp_up", f"sets the arrival rate; it cannot be combined with "
                 f"rps_scaling={self.rps_scaling:g}")
            need(self.conversation_turns is None, "ramp_up", "applies to single requests, not to "
                 "conversation_turns (a conversation's turns follow its start)")
            need(synthetic or self.arrival in ("poisson", "gamma"), "ramp_up", f"a {self.workload} trace keeps "
                 "its timestamps: re-draw its arrivals (arrival=poisson or gamma) to ramp them")

        scaled = self.rps_scaling != 1.0
        if self.trace_columns is not None:
            need(self.workload in ("csv", "trace"), "trace_columns",
                 f"applies to workload csv (or trace) only, not to workload {self.workload}")
            self._canonical("trace_columns", lambda v, n: parse_columns(v, n).text())
        need(self.workload in ("mooncake", "trace") or self.hash_block == HASH_BLOCK, "hash_block",
             f"applies to mooncake traces only (the tokens each hash id names), not to workload {self.workload}")
        if synthetic:
            need(self.arrival != "trace", "arrival",
                 f"'trace' needs a trace workload ({', '.join(TRACE_WORKLOADS)}; synthetic arrivals are "
                 "poisson or gamma)")
            need(not scaled, "rps_scaling", "applies to traces only; set rate for a "
                 "synthetic workload")
            need(self.real_timestamps is not True, "real_timestamps", "a synthetic workload has no timestamps")
            return
        need(self.priority_mix is None, "priority_mix",
             "applies to synthetic workloads (a trace's priorities come from its Priority column)")
        for name, default in SHARING.items():
            need(getattr(self, name) == default, name, f"applies to synthetic workloads, not to a {self.workload} "
                 "trace (a mooncake trace's sharing comes from its hash_ids)")
        if self.rate is not None and scaled:
            raise SpecError("rps_scaling", f"cannot be combined with rate on a trace (rate={self.rate:g} "
                            "already fixes the time scale)")
        arrival = self.arrival or "trace"
        changes = [f"rate={self.rate:g}"] if self.rate is not None else []
        if scaled:
            changes.append(f"rps_scaling={self.rps_scaling:g}")
        if arrival != "trace":
            changes.append(f"arrival={arrival}")
        if self.real_timestamps is True:
            need(not changes, "real_timestamps", f"true conflicts with {', '.join(changes)} "
                 "(it changes the trace's timestamps)")
        if self.real_timestamps is False:
            need(bool(changes), "real_timestamps", "false needs a rate or rps_scaling to rescale the trace "
                 "(or arrival=poisson/gamma to re-draw arrivals)")

    def _canonical(self, name: str, parse) -> None:
        try:
            parsed = parse(getattr(self, name), name)
        except WorkloadError as exc:
            raise SpecError(name, str(exc).split(": ", 1)[-1]) from None
        object.__setattr__(self, name, str(parsed))

    # ------------------------------------------------------------------
    def resolved(self) -> WorkloadSpec:
        """A copy with every auto (None) field set to what it means for this workload."""
        if self.workload == "synthetic":
            return dataclasses.replace(
                self, arrival=self.arrival or "gamma",
                rate=self.rate or (SYNTHETIC_RATE if self.ramp_up is None else None),   # a ramp sets the rate
                num_requests=self.num_requests or SYNTHETIC_REQUESTS, real_timestamps=False)
        arrival = self.arrival or "trace"
        real = arrival == "trace" and self.rate is None and self.rps_scaling == 1.0
        return dataclasses.replace(self, arrival=arrival, real_timestamps=real)

    def relevant_dict(self) -> dict:
        """The resolved settings that can change the workload (what its identity covers)."""
        r = self.resolved()
        d = r.to_dict()
        if r.workload == "synthetic":
            drop = {"trace", "offset", "keep_failed", "rps_scaling", "real_timestamps", "hash_block", "trace_columns"}
            drop |= _unused_sharing(r)
        else:
            drop = {"prompt_lengths", "output_lengths", *SHARING}
            if r.workload != "mooncake":
                drop.add("hash_block")
            if r.arrival == "trace" and not parse_predictor(r.predictor).random:
                drop.add("workload_seed")
        if r.trace_columns is None:     # as before the setting existed: the same identity
            drop.add("trace_columns")
        if r.arrival != "gamma":
            drop.add("gamma_shape")
        if r.priority_mix is None:      # as before the setting existed: the same identity
            drop.add("priority_mix")
        if r.ramp_up is None:           # ... likewise
            drop.add("ramp_up")
        else:                           # the ramp sets the rate
            drop.add("rate")
        return {k: v for k, v in d.items() if k not in drop}

    def replace(self, **changes: Any) -> WorkloadSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WorkloadSpec:
        if not isinstance(data, dict):
            raise WorkloadError(f"workload spec: expected a mapping of settings, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names), key=str)
        if unknown:
            raise SpecError(str(unknown[0]), f"unknown workload setting (known: {', '.join(names)})")
        return cls(**data)


def _unused_sharing(r: WorkloadSpec) -> set[str]:
    """The synthetic sharing settings that cannot change ``r``'s workload (all of them when off, so an
    existing spec keeps its identity)."""
    unused = set()
    if r.system_prompts is None:
        unused |= {"system_prompts", "system_prompt_tokens", "system_zipf"}
    elif r.system_prompts == 1:
        unused.add("system_zipf")   # one prompt: every request picks it
    if r.conversation_turns is None:
        unused |= {"conversation_turns", "think_time"}
    elif r.conversation_turns == 1:
        unused.add("think_time")    # no next turn
    return unused


def spec_fields() -> list[dataclasses.Field]:
    """Fields in declaration order, for generating CLI flags and form widgets."""
    return list(dataclasses.fields(WorkloadSpec))
