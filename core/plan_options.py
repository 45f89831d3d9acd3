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
# the options of a plan across GPU types: left out of to_dict when None too
COST_OPTIONS = ("gpu_types", "gpu_costs")


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
    ``gpu_types``: catalogue GPUs to plan on one after another (None: the base config's own, one
    plan); ``gpu_costs``: USD per GPU-hour by GPU name, overriding the catalogue's default prices
    (:func:`core.hardware.gpu_prices`); the cheapest type meeting the target is recommended.
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
    gpu_types: tuple[str, ...] | None = None
    gpu_costs: tuple[tuple[str, float], ...] | None = None

    def __post_init__(self) -> None:
        for name in ("modes", "k_values", "b_max_values", "batch_values", *CLUSTER_OPTIONS, "gpu_types"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if self.gpu_costs is not None:   # a dict or (name, price) pairs: kept as sorted pairs
            pairs = self.gpu_costs.items() if isinstance(self.gpu_costs, dict) else self.gpu_costs
            object.__setattr__(self, "gpu_costs", tuple(sorted((str(k), v) for k, v in pairs)))

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
               if not (k in CLUSTER_OPTIONS + COST_OPTIONS and v is None)}
        if self.gpu_costs is not None:
            out["gpu_costs"] = dict(self.gpu_costs)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PlanOptions:
        """Options from ``to_dict``'s shape; ValueError names an unknown one."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"plan: unknown option {unknown[0]!r} (known: {', '.join(sorted(names))})")
        return cls(**data)


def parse_gpu_types(text: str) -> tuple[str, ...]:
    """``"L4,H100"`` -> ``("l4", "h100")``: catalogue names (aliases resolved); ValueError naming an unknown
    one and listing the known, or a GPU given twice."""
    from .hardware import CatalogueError, gpu_spec

    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise ValueError("gpus_from: give at least one catalogue GPU (e.g. L4,H100)")
    try:
        out = tuple(gpu_spec(n).name for n in names)
    except CatalogueError as exc:
        raise ValueError(f"gpus_from: {exc}") from None
    if len(set(out)) != len(out):
        raise ValueError(f"gpus_from: a GPU is listed twice in {text!r}")
    return out


def parse_gpu_costs(text: str) -> dict[str, float]:
    """``"h100=2.5,l4=0.8"`` -> ``{"h100": 2.5, "l4": 0.8}`` (USD per GPU-hour, catalogue names); ValueError
    naming the bad entry: not NAME=PRICE, an unknown GPU, or a price that is not a positive number."""
    import math

    from .hardware import CatalogueError, gpu_spec

    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, price = item.partition("=")
        if not sep or not name.strip() or not price.strip():
            raise ValueError(f"gpu_cost: {item!r} is not NAME=PRICE (USD per GPU-hour, e.g. h100=2.5,l4=0.8)")
        try:
            key = gpu_spec(name).name
        except CatalogueError as exc:
            raise ValueError(f"gpu_cost: {exc}") from None
        try:
            value = float(price)
        except ValueError:
            raise ValueError(f"gpu_cost: the price of {name.strip()!r} must be a number (USD per GPU-hour), "
                             f"got {price.strip()!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"gpu_cost: the price of {name.strip()!r} must be a positive number, got {value:g}")
        out[key] = value
    if not out:
        raise ValueError("gpu_cost: give NAME=PRICE pairs (USD per GPU-hour, e.g. h100=2.5,l4=0.8)")
    return out
