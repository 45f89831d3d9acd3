"""Latency grids: the schema and validation (shared by the CLI, the web upload and ``core``),
grid names and ``grid:REF`` resolution, the bundled reference grids and the torch+transformers
measuring tool.

``calibration.measure`` imports torch lazily; nothing else here needs it.
"""
from .data import bundled_grids, load_bundled
from .resolve import check_grid_name, named, resolve_grid, upload_name
from .schema import MAX_GRID_BYTES, Grid, GridError
from .validate import grid_from_table, nonmonotone_cells, parse_grid

__all__ = [
    "MAX_GRID_BYTES", "Grid", "GridError", "bundled_grids", "check_grid_name", "grid_from_table",
    "load_bundled", "named", "nonmonotone_cells", "parse_grid", "resolve_grid", "upload_name",
]
