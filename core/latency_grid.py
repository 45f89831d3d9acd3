"""Latency model interpolated from a measured calibration grid (:mod:`calibration.schema`).

Method, applied separately to ``prefill_s`` and ``decode_step_s``:

* **Within a batch row** (one measured batch size) time is piecewise-linear in
  context length through the measured cells. At a measured cell it returns the
  measured value exactly; between two measured contexts it never leaves the
  range of those two values.
* **Between batch rows** it is linear in batch size between the two
  neighbouring measured rows, evaluated at the same context (bilinear on each
  grid cell), so it stays within the values at the cell's corners and is
  monotone wherever those are.
* **Extrapolation** (context beyond a row's measured range, a missing/OOM
  cell, batch beyond the measured batch sizes) is linear from the last two
  measured points along that axis, with two guards: a decreasing slope is
  treated as flat (time never falls as context or batch grows beyond the data),
  and when extrapolating *down* (smaller context or batch than measured) the
  value never falls below ``FLOOR`` (half) of the nearest measured one (the
  row's first cell, or the smallest batch row at that context), so it stays
  positive. A missing cell between two measured contexts of a row is
  bridged linearly by that row and counted as extrapolated too.
* A batch row with fewer than two measured values of a quantity is ignored for
  that quantity (the parser warns about it).

Every call is one *query*; a query is *extrapolated* if any context it touches
lies outside the measured, gap-free context range of the rows it uses or its
batch lies outside the measured batch sizes. :meth:`GridLatency.run_notes`
reports the counts.

Speed: each batch size gets one precomputed piecewise-linear function per
quantity (built on first use and cached; pure Python, no numpy per query).
A query is a dict lookup and a ``bisect``. :meth:`GridLatency.decode_time` is
the exact sum over integer contexts, in closed form from prefix sums at the
knots (O(log knots)); since batch interpolation is a linear combination of
rows, it commutes with that sum.
"""
from __future__ import annotations

import math
from bisect import bisect_right

from batchlab.calibration.schema import TIME_COLUMNS, Grid

from .latency import LatencyModel

FLOOR = 0.5
FAR = 1e12
METHOD = "bilinear-pl-v1"


class PiecewiseLinear:
    """f(x) through knots ``xs`` (strictly increasing) and ``ys``, with slope ``left``
    below ``xs[0]`` and ``right`` above ``xs[-1]``; sums over integer x in closed form."""

    __slots__ = ("xs", "ys", "slopes", "left", "right", "_ks", "_cum")

    def __init__(self, xs: list, ys: list, left: float, right: float):
        self.xs, self.ys, self.left, self.right = list(xs), list(ys), float(left), float(right)
        self.slopes = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
        ks = self._ks = [math.ceil(x) for x in self.xs]  # first integer at or after each knot
        # cum[i]: signed sum of f over the integers between the anchor knot (the one nearest 0,
        # where contexts start) and knot i; anchoring there keeps the prefix sums small, so
        # differences of them lose no precision to far-away knots.
        seg = [_line_sum(self.ys[i], s, self.xs[i], ks[i], ks[i + 1] - 1) for i, s in enumerate(self.slopes)]
        anchor = min(range(len(ks)), key=lambda i: abs(self.xs[i]))
        cum = [0.0] * len(ks)
        for i in range(anchor + 1, len(ks)):
            cum[i] = cum[i - 1] + seg[i - 1]
        for i in range(anchor - 1, -1, -1):
            cum[i] = cum[i + 1] - seg[i]
        self._cum = cum

    def __repr__(self) -> str:
        return f"PiecewiseLinear({self.xs!r}, {self.ys!r}, {self.left!r}, {self.right!r})"

    def __call__(self, x: float) -> float:
        xs = self.xs
        if x <= xs[0]:
            return self.ys[0] + self.left * (x - xs[0])
        if x >= xs[-1]:
            return self.ys[-1] + self.right * (x - xs[-1])
        i = bisect_right(xs, x) - 1
        return self.ys[i] + self.slopes[i] * (x - xs[i])

    def prefix(self, m: int) -> float:
        """Signed sum of f(c) over the integers from the anchor knot up to ``m`` (exclusive)."""
        ks = self._ks
        if m <= ks[0]:
            return self._cum[0] - _line_sum(self.ys[0], self.left, self.xs[0], m, ks[0] - 1)
        i = bisect_right(ks, m - 1) - 1
        slope = self.right if i == len(ks) - 1 else self.slopes[i]
        return self._cum[i] + _line_sum(self.ys[i], slope, self.xs[i], ks[i], m - 1)

    def int_sum(self, start: int, count: int) -> float:
        """Sum of f(c) for integers c = start .. start+count-1."""
        return self.prefix(start + count) - self.prefix(start)

    def progression_sum(self, x0: float, count: int) -> float:
        """Sum of f(x0 + j) for j = 0 .. count-1 (any real x0), one linear piece at a time."""
        if count <= 0:
            return 0.0
        xs, ys = self.xs, self.ys
        last = x0 + count - 1
        i = bisect_right(xs, x0) - 1          # piece holding x0 (-1: left tail)
        total, j = 0.0, 0
        while j < count:
            if i < 0:
                y, slope, x, upper = ys[0], self.left, xs[0], xs[0]
            elif i >= len(xs) - 1:
                y, slope, x, upper = ys[-1], self.right, xs[-1], math.inf
            else:
                y, slope, x, upper = ys[i], self.slopes[i], xs[i], xs[i + 1]
            stop = count if upper > last else min(count, math.ceil(upper - x0))  # first j in the next piece
            if stop > j:
                cnt = stop - j
                total += cnt * (y + slope * (x0 - x)) + slope * (j + stop - 1) * cnt * 0.5
                j = stop
            i += 1
        return total


def _line_sum(y: float, s: float, x: float, j: int, k: int) -> float:
    """Sum of y + s*(c - x) over integers c = j..k (0 if k < j)."""
    n = k - j + 1
    if n <= 0:
        return 0.0
    return n * (y + s * ((j + k) * 0.5 - x))


def combine(terms: list) -> PiecewiseLinear:
    """Sum of ``weight * f`` over ``(weight, f)`` terms (exact: knots are the union)."""
    xs = sorted({x for _, f in terms for x in f.xs})
    ys = [sum(w * f(x) for w, f in terms) for x in xs]
    return PiecewiseLinear(xs, ys, sum(w * f.left for w, f in terms), sum(w * f.right for w, f in terms))


def maximum(f: PiecewiseLinear, g: PiecewiseLinear) -> PiecewiseLinear:
    """Pointwise max, with knots added where f and g cross (crossings farther out
    than :data:`FAR` are ignored: far beyond any context or batch)."""
    xs = sorted(set(f.xs) | set(g.xs))
    d = [f(x) - g(x) for x in xs]
    cross = set()
    sl, sr = f.left - g.left, f.right - g.right
    if sl and d[0] / sl > 0:            # the lines cross left of the first knot
        cross.add(xs[0] - d[0] / sl)
    if sr and d[-1] / sr < 0:           # ... or right of the last knot
        cross.add(xs[-1] - d[-1] / sr)
    for a, b, da, db in zip(xs, xs[1:], d, d[1:]):
        if (da < 0.0 < db) or (db < 0.0 < da):
            cross.add(a + (b - a) * da / (da - db))
    knots = sorted(set(xs) | {x for x in cross if abs(x) < FAR})
    ys = [max(f(x), g(x)) for x in knots]
    lo, hi = knots[0] - 1.0, knots[-1] + 1.0
    left = f.left if f(lo) >= g(lo) else g.left
    right = f.right if f(hi) >= g(hi) else g.right
    return PiecewiseLinear(knots, ys, left, right)


class _Entry:
    """The function and the trusted context range for one batch size and quantity."""

    __slots__ = ("f", "lo", "hi", "gaps", "gap_ends")

    def __init__(self, f: PiecewiseLinear, lo: float, hi: float, gaps: list):
        self.f, self.lo, self.hi = f, lo, hi
        self.gaps = gaps                       # disjoint open intervals (a, b), sorted
        self.gap_ends = [b for _, b in gaps]

    def trusted(self, a: float, b: float) -> bool:
        """True when contexts a..b (a <= b) are all inside the measured, gap-free range."""
        if a < self.lo or b > self.hi:
            return False
        if self.gaps:
            i = bisect_right(self.gap_ends, a)
            if i < len(self.gaps) and self.gaps[i][0] < b:
                return False
        return True


_NEVER = (math.inf, -math.inf)  # lo > hi: every query of an extrapolated batch is counted


class _Quantity:
    """One column of the grid: measured rows and the lazily built entry per batch size."""

    def __init__(self, grid: Grid, column: str):
        t = grid.table
        contexts = sorted({int(c) for c in t["context_len"].tolist()})
        measured = t.loc[t[column].notna(), ["batch_size", "context_len", column]]
        rows: dict[int, list] = {}
        for b, c, v in measured.itertuples(index=False):
            rows.setdefault(int(b), []).append((float(c), float(v)))
        self.batches: list[int] = []
        self.rows: list[_Entry] = []
        for b in sorted(rows):
            pts = sorted(rows[b])
            if len(pts) < 2:
                continue
            self.batches.append(b)
            self.rows.append(_row_entry(pts, contexts))
        self.entries: dict = dict(zip(self.batches, self.rows))
        self._d_low = self._d_high = None

    def entry(self, batch) -> _Entry:
        e = self.entries.get(batch)
        if e is None:
            e = self.entries[batch] = self._build(batch)
        return e

    def _build(self, batch) -> _Entry:
        bs, rows = self.batches, self.rows
        if batch > bs[-1]:
            if self._d_high is None:
                d = combine([(1.0, rows[-1].f), (-1.0, rows[-2].f)])
                self._d_high = maximum(d, _zero())
            k = (batch - bs[-1]) / (bs[-1] - bs[-2])
            return _Entry(combine([(1.0, rows[-1].f), (k, self._d_high)]), *_NEVER, [])
        if batch < bs[0]:
            if self._d_low is None:
                d = combine([(1.0, rows[1].f), (-1.0, rows[0].f)])
                self._d_low = maximum(d, _zero())
            k = (bs[0] - batch) / (bs[1] - bs[0])
            f0 = rows[0].f
            f = maximum(combine([(1.0, f0), (-k, self._d_low)]), combine([(FLOOR, f0)]))
            return _Entry(f, *_NEVER, [])
        i = bisect_right(bs, batch) - 1
        r0, r1 = rows[i], rows[i + 1]
        w = (batch - bs[i]) / (bs[i + 1] - bs[i])
        f = combine([(1.0 - w, r0.f), (w, r1.f)])
        lo, hi = max(r0.lo, r1.lo), min(r0.hi, r1.hi)
        if lo > hi:
            lo, hi = _NEVER
        return _Entry(f, lo, hi, _merge(r0.gaps + r1.gaps))


def _zero() -> PiecewiseLinear:
    return PiecewiseLinear([0.0, 1.0], [0.0, 0.0], 0.0, 0.0)


def _row_entry(pts: list, contexts: list) -> _Entry:
    """A measured row: knots at the measured cells, guarded linear tails (module docstring)."""
    xs = [c for c, _ in pts]
    ys = [v for _, v in pts]
    first = max((ys[1] - ys[0]) / (xs[1] - xs[0]), 0.0)
    last = max((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 0.0)
    if first > 0.0:  # going down-context, reach FLOOR * ys[0] and stay there
        xs.insert(0, xs[0] - (1.0 - FLOOR) * ys[0] / first)
        ys.insert(0, FLOOR * ys[0])
    f = PiecewiseLinear(xs, ys, 0.0, last)
    measured = [c for c, _ in pts]
    gaps = []
    for a, b in zip(measured, measured[1:]):
        i = bisect_right(contexts, a)
        if i < len(contexts) and contexts[i] < b:  # a grid context between two measured ones is missing
            gaps.append((a, b))
    return _Entry(f, measured[0], measured[-1], gaps)


def _merge(gaps: list) -> list:
    out: list = []
    for a, b in sorted(gaps):
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class GridLatency(LatencyModel):
    """:class:`~core.latency.LatencyModel` interpolating a :class:`calibration.schema.Grid`
    (method and limits in the module docstring). Counts queries for :meth:`run_notes`."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self._prefill = _Quantity(grid, TIME_COLUMNS[0])
        self._decode = _Quantity(grid, TIME_COLUMNS[1])
        for q, col in ((self._prefill, TIME_COLUMNS[0]), (self._decode, TIME_COLUMNS[1])):
            if len(q.batches) < 2:
                raise ValueError(f"grid {grid.name!r}: {col} needs at least 2 batch sizes "
                                 "with at least 2 measured contexts each")
        self.reset_notes()

    def reset_notes(self) -> None:
        """Zero the query counters."""
        self._n_prefill = self._n_step = self._n_decode = 0
        self._x_prefill = self._x_step = self._x_decode = 0
        self._max_batch = 0
        self._max_context = 0

    # ------------------------------------------------------------ queries
    def prefill_time(self, batch: int, prompt_len: int) -> float:
        e = self._prefill.entries.get(batch) or self._prefill.entry(batch)
        self._n_prefill += 1
        self._x_prefill += self._outside(e, batch, prompt_len)
        return e.f(prompt_len)

    def decode_step_time(self, batch: int, context_len: float) -> float:
        e = self._decode.entries.get(batch) or self._decode.entry(batch)
        self._n_step += 1
        self._x_step += self._outside(e, batch, context_len)
        return e.f(context_len)

    def _outside(self, e, batch: int, context: float) -> bool:
        """Track the largest query and say whether ``context`` lies outside row ``e``'s measured range."""
        if batch > self._max_batch:
            self._max_batch = batch
        if context > self._max_context:
            self._max_context = context
        return not (e.lo <= context <= e.hi) or bool(e.gaps and not e.trusted(context, context))

    def decode_time(self, batch: int, prompt_len: int, steps: int) -> float:
        """Exact sum of :meth:`decode_step_time` over contexts ``prompt_len .. prompt_len+steps-1``,
        in O(log knots); counted as one query (extrapolated if any of those contexts is)."""
        self._n_decode += 1
        if steps <= 0:
            return 0.0
        e = self._decode.entries.get(batch) or self._decode.entry(batch)
        last = prompt_len + steps - 1
        if batch > self._max_batch:
            self._max_batch = batch
        if last > self._max_context:
            self._max_context = last
        if not (e.lo <= prompt_len and last <= e.hi) or (e.gaps and not e.trusted(prompt_len, last)):
            self._x_decode += 1
        if type(prompt_len) is not int:
            if not float(prompt_len).is_integer():  # a mean context: sum segment by segment
                return e.f.progression_sum(float(prompt_len), int(steps))
            prompt_len = int(prompt_len)
        return e.f.int_sum(prompt_len, int(steps))

    # ------------------------------------------------------------ compiled callers
    def entries(self, max_batch: int) -> tuple[list, list]:
        """(prefill, decode) functions and trusted ranges of batch sizes 1 .. ``max_batch``
        (what :mod:`core.latency_kernel` packs)."""
        return ([self._prefill.entry(b) for b in range(1, max_batch + 1)],
                [self._decode.entry(b) for b in range(1, max_batch + 1)])

    def add_counts(self, n_prefill: int, n_step: int, n_decode: int, x_prefill: int, x_step: int,
                   x_decode: int, max_batch: int, max_context: float) -> None:
        """Count queries answered elsewhere from :meth:`entries` (as if asked here)."""
        self._n_prefill += n_prefill
        self._n_step += n_step
        self._n_decode += n_decode
        self._x_prefill += x_prefill
        self._x_step += x_step
        self._x_decode += x_decode
        self._max_batch = max(self._max_batch, max_batch)
        self._max_context = max(self._max_context, max_context)

    # ------------------------------------------------------------ facts
    def covers(self, batch: int, context_len: float) -> bool:
        """True when (batch, context) is answered by interpolation alone (not counted as a query)."""
        return all(q.entry(batch).trusted(context_len, context_len) for q in (self._prefill, self._decode))

    @property
    def identity(self) -> dict:
        return {"kind": "grid", "name": self.grid.name, "sha256": self.grid.sha256, "method": METHOD}

    def run_notes(self) -> dict:
        queries = self._n_prefill + self._n_step + self._n_decode
        extrapolated = self._x_prefill + self._x_step + self._x_decode
        qs = (self._prefill, self._decode)
        return {
            "grid": self.grid.name,
            "grid_sha256": self.grid.sha256,
            "queries": queries,
            "extrapolated_queries": extrapolated,
            "extrapolated_by_kind": {"prefill": self._x_prefill, "decode_step": self._x_step,
                                     "decode": self._x_decode},
            "max_batch_queried": self._max_batch,
            "max_context_queried": self._max_context,
            "measured_batch_range": [min(q.batches[0] for q in qs), max(q.batches[-1] for q in qs)],
            "measured_context_range": [int(min(r.lo for q in qs for r in q.rows)),
                                       int(max(r.hi for q in qs for r in q.rows))],
        }
