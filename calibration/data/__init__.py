"""Reference grids shipped with batchlab (CSV files here, attribution in README.md), the metadata
their CSV files lack, and the grids composed from measured operator tables (``composed/``, named
``MODEL@GPU/tpT``, their metadata in their own ``# key: value`` lines: :mod:`calibration.compose`)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..schema import Grid
from ..validate import parse_grid

DATA_DIR = Path(__file__).resolve().parent
COMPOSED_DIR = DATA_DIR / "composed"

# name -> (file in DATA_DIR, metadata). The files carry no comment lines (kept byte-for-byte
# as reduced from their source), so the facts from README.md are supplied here.
_REGISTRY: dict[str, tuple[str, dict[str, str]]] = {
    "qwen3-4b-sglang": ("qwen3-4b_sglang_grid.csv", {
        "model": "Qwen/Qwen3-4B",
        "engine": "SGLang (ModelRunner, TP=1, PP=1; version not pinned by the source)",
        "device": "probably A100-SXM4-80GB (80 GB class; source does not name it)",
        "dtype": "bf16",
        "tp": "1",
        "measured_at": "no later than 2025-07-28 (source has no timestamp)",
        "source": "https://github.com/vikranth22446/llm_execution_time_predictor",
        "source_file": "benchmark_data_Qwen_Qwen3-4B_TP_1_PP_1.json",
        "source_commit": "afcae2dfcb201158efde971f1d2841547dda1746",
        "licence": "MIT, Copyright (c) 2025 Vikranth Srivatsa (full text in calibration/data/README.md)",
        "notes": ("one run per cell, no warm-up (cell bs 1, ctx 1 is a cold-start outlier); decode_step_s is "
                  "the median of 31 decode steps at contexts ctx+1..ctx+31; kv_cache_gib is computed, not "
                  "measured; 10 of 105 cells missing (7 out of memory, 3 skipped)"),
    }),
}


def _composed() -> dict[str, Path]:
    """``composed/MODEL@GPU_tpT.csv`` is grid ``MODEL@GPU/tpT``."""
    return {p.stem.replace("_tp", "/tp"): p for p in sorted(COMPOSED_DIR.glob("*@*_tp*.csv"))}


def bundled_grids() -> dict[str, Path]:
    """Names of the bundled grids and their CSV files."""
    return {name: DATA_DIR / file for name, (file, _) in _REGISTRY.items()} | _composed()


def load_bundled(name: str) -> Grid:
    """Parse a bundled grid and attach its registry metadata (``sha256`` is the file's)."""
    if name in (composed := _composed()):
        return parse_grid(composed[name], name=name)
    if name not in _REGISTRY:
        raise KeyError(f"no bundled grid {name!r}; bundled: {', '.join(sorted(bundled_grids()))}")
    file, meta = _REGISTRY[name]
    grid = parse_grid(DATA_DIR / file, name=name)
    return replace(grid, meta={**meta, **grid.meta})
