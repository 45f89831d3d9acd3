"""What the repository API returns: light list rows, full stored runs, grid and sweep rows."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .models import METRIC_COLUMNS
from .settings import SETTINGS_COLUMNS, run_settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from batchlab.core.config import SimConfig

    from .repo import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run in a listing: identity, status, the summary-metric columns (no blobs) and the
    settings that tell runs apart (:mod:`store.settings`: ``arrival``, ``arrival_rate``, ...).

    The settings come from the run's config and workload JSON (``_sources``), parsed on
    first use: listing many runs does not pay for decoding rows nobody looks at.
    """

    id: int
    hash: str
    status: str
    stale: bool
    created_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    mode: str
    gpus: int
    k_bins: int
    num_requests: int
    label: str | None
    error: str | None
    throughput_rps: float | None = None
    throughput_tps: float | None = None
    latency_mean_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    ttft_mean_s: float | None = None
    ttft_p99_s: float | None = None
    tbt_mean_s: float | None = None
    queue_delay_mean_s: float | None = None
    sla_attainment: float | None = None
    sla_violation_rate_ttft: float | None = None
    sla_violation_rate_tbt: float | None = None
    sla_violation_rate_e2e: float | None = None
    gpu_utilization: float | None = None
    mean_batch_size: float | None = None
    makespan_s: float | None = None
    _sources: tuple[str | None, str | None] = field(default=(None, None), repr=False, compare=False)
    _parsed: list = field(default_factory=list, repr=False, compare=False)  # the settings, once parsed

    @property
    def state(self) -> str:
        """``status``, except that a running claim whose process is gone reads ``stale``."""
        return "stale" if self.stale else self.status

    @property
    def settings(self) -> dict:
        """The :data:`store.settings.SETTINGS_COLUMNS` of this run."""
        if not self._parsed:
            config, workload = (json.loads(text) if text else None for text in self._sources)
            self._parsed.append(run_settings(config, workload))
        return self._parsed[0]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        d.update(self.settings)
        d["state"] = self.state
        return d


def _setting(name: str) -> property:
    return property(lambda row: row.settings[name], doc=f"The run's {name} (see store.settings).")


for _name in SETTINGS_COLUMNS:  # row.arrival, row.d_sla_tbt, ...
    setattr(RunRow, _name, _setting(_name))

# the columns of ``runs`` a RunRow is read from, in field order (``stale`` is derived)
RUN_ROW_COLUMNS = tuple(f.name for f in fields(RunRow) if f.name != "stale" and not f.name.startswith("_"))
assert set(METRIC_COLUMNS) <= set(RUN_ROW_COLUMNS)


@dataclass(eq=False)
class StoredRun:
    """A run read back from the store.

    ``summary`` has the shape of :attr:`core.result.RunResult.summary` (flat metrics,
    ``bins``, ``config_hash``, ``latency_notes``); it is None unless the run is done.
    :meth:`requests`, :meth:`batches` and :meth:`series` load their blobs on first use.
    """

    id: int
    hash: str
    status: str
    stale: bool
    created_at: datetime
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    error: str | None
    config_dict: dict
    workload: dict
    latency: dict
    code_version: str
    label: str | None
    mode: str
    gpus: int
    k_bins: int
    num_requests: int
    stored_requests: int | None
    sampled: bool
    summary: dict | None
    _store: Store = field(repr=False, default=None)
    _arrays: tuple | None = field(repr=False, default=None)
    _series: dict | None = field(repr=False, default=None)

    @property
    def state(self) -> str:
        return "stale" if self.stale else self.status

    @cached_property
    def config(self) -> SimConfig | None:
        """The run's SimConfig (settings unknown to this version are dropped with a warning)."""
        from batchlab.core.config import ConfigError, SimConfig, config_fields

        names = {f.name for f in config_fields()}
        known = {k: v for k, v in self.config_dict.items() if k in names}
        if len(known) != len(self.config_dict):
            log.warning("run %s: dropping unknown settings %s", self.id, sorted(set(self.config_dict) - names))
        try:
            return SimConfig.from_dict(known)
        except (ConfigError, TypeError) as exc:
            log.warning("run %s: stored config is not valid in this version: %s", self.id, exc)
            return None

    @property
    def bins(self) -> list[dict]:
        return list((self.summary or {}).get("bins", []))

    def _load_arrays(self) -> tuple:
        if self._arrays is None:
            self._arrays = self._store._load_arrays(self.id, self.hash)
        return self._arrays

    def requests(self) -> dict[str, np.ndarray]:
        """Per-request arrays as in RunResult.requests (+ ``index``, original positions, when sampled);
        {} for a run that is not done. Stored (not derived) arrays may be read-only views of the blob.
        A run deleted from the store before its arrays were first loaded raises RunDeletedError."""
        return dict(self._load_arrays()[0])

    def batches(self) -> dict[str, np.ndarray]:
        """The batch log (+ ``id``, original batch ids, when only a sample's batches were kept)."""
        return dict(self._load_arrays()[1])

    def bin_edges(self) -> np.ndarray | None:
        return self._load_arrays()[2]

    def requests_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.requests())

    def series(self) -> dict[str, pd.DataFrame]:
        """Chart tables as RunResult.series(): latency_cdf, batch_timeline, gpu_utilization, batch_sizes
        (RunDeletedError if the run was deleted before they were first loaded)."""
        if self._series is None:
            self._series = self._store._load_series(self.id, self.hash)
        return {k: v.copy() for k, v in self._series.items()}

    @property
    def settings(self) -> dict:
        """The settings that tell runs apart (:func:`store.settings.run_settings`)."""
        return run_settings(self.config_dict, self.workload)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the run (no per-request data)."""
        return {
            "id": self.id, "hash": self.hash, "status": self.status, "state": self.state,
            "created_at": self.created_at.isoformat(), "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": self.duration_s, "error": self.error, "code_version": self.code_version,
            "label": self.label, "mode": self.mode, "gpus": self.gpus, "k_bins": self.k_bins,
            "num_requests": self.num_requests, "stored_requests": self.stored_requests,
            "sampled": self.sampled, "config": self.config_dict, "workload": self.workload,
            "latency": self.latency, "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class GridRow:
    """A calibration grid's metadata (the table itself: ``Store.get_grid``): a stored grid, or
    (``where="bundled"``, no id or upload time) one that ships with batchlab."""

    id: int | None
    name: str
    sha256: str
    model: str | None
    device: str | None
    dtype: str | None
    source: str | None
    uploaded_at: datetime | None
    rows: int
    meta: dict
    warnings: list
    where: str = "stored"

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["uploaded_at"] = self.uploaded_at.isoformat() if self.uploaded_at else None
        return d


@dataclass(frozen=True, slots=True)
class SweepRow:
    id: int
    name: str
    params: dict
    created_at: datetime
    runs: int
    key: str | None = None  # the identity of the plan it runs (store.sweep_jobs.plan_key); None: made by hand
