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
PLANNED = ("mode", "gpus", "k_bins", "b_max", "batch_size")  # settings the plan chooses itself


@dataclass(frozen=True)
class PlanOptions:
    """What to search over and what counts as meeting the target (see :mod:`core.plan`).

    ``k_values``: K of the multi-bin modes; ``b_max_values``: B_max of the dynamic modes;
    ``batch_values``: B of the others. ``rule``: ``mean`` (the mean attainment over the
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

    def __post_init__(self) -> None:
        for name in ("modes", "k_values", "b_max_values", "batch_values"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> PlanOptions:
        """Options from ``to_dict``'s shape; ValueError names an unknown one."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"plan: unknown option {unknown[0]!r} (known: {', '.join(sorted(names))})")
        return cls(**data)
