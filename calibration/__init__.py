"""Latency grids: the schema and validation (shared by the CLI, the web upload and ``core``),
grid names and ``grid:REF`` resolution, the bundled reference grids and the torch+transformers
measuring tool.

``calibration.measure`` imports torch lazily; nothing else here needs it. The names below are
imported on first use.
"""
from batchlab.workloads.lazy import lazy_exports

_EXPORTS = {
    "bundled_grids": ".data", "load_bundled": ".data", "check_grid_name": ".resolve", "named": ".resolve",
    "resolve_grid": ".resolve", "upload_name": ".resolve", "MAX_GRID_BYTES": ".schema", "Grid": ".schema",
    "GridError": ".schema", "grid_from_table": ".validate", "nonmonotone_cells": ".validate",
    "parse_grid": ".validate",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
