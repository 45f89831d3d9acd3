"""What a capacity plan searches over (:class:`PlanOptions`) and its defaults.

Kept apart from :mod:`core.plan` (the search) so the CLI can build its flags
without importing the search, the sweep runner and the capacity search.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import COMPARE_MODES

DEFAULT_MODES = COMPARE_MODES
K_VALUES = (1, 2, 4, 8)
B_MAX_VALUES = (32, 64, 128)
BATCH_VALUES = (8, 16, 32, 64)
RULES = ("mean", "lower")
DEFAULT_MAX_GPUS = 16
DEFAULT_TOLERANCE = 0.05
PILOT_FROM = 50_000  # synthetic workloads of at least this many requests get a pilot search
PILOT_SHARE = 10     # the pilot simulates 1/PILOT_SHARE of the requests
# settings the plan chooses itself (replicas and disaggregate follow from the GPUs and the P:D ratio)
PLANNED = ("mode", "gpus", "replicas", "k_bins", "b_max", "batch_size", "disaggregate")
# settings the plan tries as one candidate unless given a list of them (setting -> option)
CANDIDATE_LISTS = {"router": "routers", "tp": "tp_values"}
# the options added with the cluster axes: left out of to_dict when None, so older plans keep their keys
CLUSTER_OPTIONS = ("routers", "tp_values", "pd_ratios")


@dataclass(frozen=True)
class PlanOptions:
    """What to search over and what counts as meeting the target (see :mod:`core.plan`).

    ``k_values``: K of the multi-bin modes; ``b_max_values``: B_max of the dynamic modes;
    ``batch_values``: B of the others. ``routers``: the routers of the continuous modes
    (None: the base config's); ``tp_values``: GPUs per replica (None: the base config's tp);
    ``pd_ratios``: prefill:decode ratios of the continuous modes, ``"P:D"`` or None for
    no disaggregation (None: no disaggregation only). Batch-level modes always run one
    shared queue, not disaggregated. ``rule``: ``mean`` (the mean attainment over the
    ``replications``) or ``lower`` (the lower end of its ``confidence`` interval) must reach
    ``target``. ``evidence``: capacity searches (relative ``tolerance``) at the answer;
    ``pilot``: a first search on a tenth of a large synthetic workload.
    """

    target: float = 0.99
    modes: tuple[str, ...] = DEFAULT_MODES
    max_gpus: int = DEFAULT_MAX_GPUS
    k_values: tuple[int, ...] = K_VALUES
    b_max_values: tuple[int, ...] = B_MAX_VALUES
    batch_values: tuple[int, ...] = BATCH_VALUES
    replications: int = 1
    rule: str = "mean"
    confidence: float = 0.95
    evidence: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    pilot: bool = True
    routers: tuple[str, ...] | None = None
    tp_values: tuple[int, ...] | None = None
    pd_ratios: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("modes", "k_values", "b_max_values", "batch_values", *CLUSTER_OPTIONS):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if not (k in CLUSTER_OPTIONS and v is None)}

    @classmethod
    def from_dict(cls, data: dict) -> PlanOptions:
        """Options from ``to_dict``'s shape; ValueError names an unknown one."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"plan: unknown option {unknown[0]!r} (known: {', '.join(sorted(names))})")
        return cls(**data)
