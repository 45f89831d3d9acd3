"""Calibration grids in the store: stored once per file (sha256), unique by name.

The canonical CSV (:meth:`calibration.schema.Grid.to_csv_bytes`) is kept with
the sha256 and warnings of the file as uploaded, so :meth:`GridsMixin.get_grid`
returns a Grid equal to the one saved (same table, meta, sha256, warnings).
"""
from __future__ import annotations

from dataclasses import replace as dc_replace

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from .errors import StoreError
from .models import GridRecord, utcnow
from .records import GridRow


def bundled_grid_rows() -> list[GridRow]:
    """The grids that ship with batchlab (``grid:NAME`` finds them without a store), as rows."""
    from batchlab.calibration import bundled_grids, load_bundled

    rows = []
    for name in sorted(bundled_grids()):
        g = load_bundled(name)
        meta = dict(g.meta)
        rows.append(GridRow(None, name, g.sha256, meta.get("model"), meta.get("device"), meta.get("dtype"),
                            meta.get("source"), None, int(len(g.table)), meta, list(g.warnings), "bundled"))
    return rows


class GridsMixin:
    """The calibration-grid methods of :class:`store.repo.Store`."""

    def save_grid(self, grid, name: str | None = None, replace: bool = False) -> tuple[GridRow, bool]:
        """Store a calibration Grid; ``(row, created)``. The same file (sha256) is stored once:
        saving it again returns the existing row. A different grid under a taken name is an
        error unless ``replace``."""
        name = (name or grid.name).strip()
        if not name:
            raise StoreError("a grid needs a name")
        meta = dict(grid.meta)
        values = {"name": name, "sha256": grid.sha256, "model": meta.get("model"), "device": meta.get("device"),
                  "dtype": meta.get("dtype"), "source": meta.get("source"), "uploaded_at": utcnow(),
                  "rows": int(len(grid.table)), "meta": meta, "warnings": list(grid.warnings),
                  "csv": grid.to_csv_bytes()}
        for attempt in range(3):
            try:
                with self._writing(f"store grid {name!r}") as conn:
                    same = conn.execute(select(GridRecord.c.id).where(GridRecord.c.sha256 == grid.sha256)).scalar()
                    if same is not None:
                        created = False
                        break
                    taken = conn.execute(select(GridRecord.c.sha256).where(GridRecord.c.name == name)).scalar()
                    if taken is not None:
                        if not replace:
                            raise StoreError(f"a different grid named {name!r} is already stored "
                                             f"(sha256 {taken[:12]}); choose another name or replace it")
                        conn.execute(delete(GridRecord).where(GridRecord.c.name == name))
                    conn.execute(insert(GridRecord).values(**values))
                    created = True
                break
            except IntegrityError:
                if attempt == 2:
                    raise StoreError(f"could not store grid {name!r}: it changed concurrently") from None
        row = self._grid_rows(GridRecord.c.sha256 == grid.sha256)
        return row[0], created

    def _grid_rows(self, cond=None) -> list[GridRow]:
        cols = [GridRecord.c.id, GridRecord.c.name, GridRecord.c.sha256, GridRecord.c.model, GridRecord.c.device,
                GridRecord.c.dtype, GridRecord.c.source, GridRecord.c.uploaded_at, GridRecord.c.rows, GridRecord.c.meta,
                GridRecord.c.warnings]
        q = select(*cols).order_by(GridRecord.c.name)
        if cond is not None:
            q = q.where(cond)
        with self.engine.connect() as conn:
            return [GridRow(*r) for r in conn.execute(q).all()]

    def list_grids(self) -> list[GridRow]:
        return self._grid_rows()

    def grid_info(self, name: str) -> GridRow | None:
        rows = self._grid_rows(GridRecord.c.name == name)
        return rows[0] if rows else None

    def get_grid(self, name: str):
        """The stored grid as a :class:`calibration.schema.Grid` (None if there is none by that name)."""
        with self.engine.connect() as conn:
            r = conn.execute(select(GridRecord.c.csv, GridRecord.c.sha256, GridRecord.c.warnings)
                             .where(GridRecord.c.name == name)).first()
        if r is None:
            return None
        from batchlab.calibration.schema import parse_grid

        grid = parse_grid(bytes(r.csv), name=name)
        return dc_replace(grid, sha256=r.sha256, warnings=list(r.warnings))

    def delete_grid(self, name: str) -> bool:
        with self._writing(f"delete grid {name!r}") as conn:
            return conn.execute(delete(GridRecord).where(GridRecord.c.name == name)).rowcount == 1
