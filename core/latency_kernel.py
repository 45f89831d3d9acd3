"""Latency queries compiled for the continuous engine's kernel (:mod:`core.continuous_kernel`).

Compiled code cannot call a Python latency object, so a run packs its model into
arrays once (:func:`pack`): the parametric model's five coefficients, or, for a
calibration grid, the piecewise-linear function of every batch size the run can
query, built by :class:`~core.latency_grid.GridLatency` itself. The functions here
repeat the arithmetic of :class:`~core.latency.ParametricLatency` and
:class:`~core.latency_grid.GridLatency` operation for operation, so they return the
same floats, and they count grid queries as GridLatency does; :func:`unpack` hands
the counts back to the model (its ``run_notes``).
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from .kernel_state import state
from .latency import LatencyModel, ParametricLatency
from .latency_grid import GridLatency

# One quantity (prefill or decode step) of a grid, as offsets into the packed arrays (F: floats,
# I: ints): batch size b's function has knots I[start+b] .. I[start+b+1]-1 of the per-knot fields
# (ks in I; xs, ys, slopes, cum in F), per-batch fields left, right, lo, hi (F), and gaps
# I[gstart+b] .. I[gstart+b+1]-1 of ga, gb (F) (see PiecewiseLinear and _Entry). Offsets are plain
# ints, so passing a model to compiled code costs no reference counting beyond its three arrays.
Curves = namedtuple("Curves", "batches start gstart ks xs ys slopes cum left right lo hi ga gb")
# notes: queries of prefill, decode step, decode; their extrapolated ones; the largest batch and
# context queried (floats, as GridLatency counts them)
Packed = namedtuple("Packed", "grid p0 p1 p2 p3 p4 pre dec notes F I")
# the same, as one record (:mod:`core.kernel_state`): a call takes it by one reference, not three arrays
Latency = state("Latency", Packed._fields)
N_PREFILL, N_STEP, N_DECODE, X_PREFILL, X_STEP, X_DECODE, MAX_BATCH, MAX_CONTEXT = range(8)


def pack(latency: LatencyModel, max_batch: int) -> Packed:
    """``latency`` as arrays for batch sizes 1 .. ``max_batch``."""
    notes = np.zeros(8)
    if isinstance(latency, ParametricLatency):
        none = _curves([], [], [])
        return Packed(False, float(latency.prefill_base), float(latency.prefill_per_token),
                      float(latency.decode_base), float(latency.decode_per_seq), float(latency.decode_per_ctx_token),
                      none, none, notes, np.zeros(1), np.zeros(1, dtype=np.int64))
    if isinstance(latency, GridLatency):
        F: list = []
        I: list = []
        prefill, decode = latency.entries(max_batch)
        pre, dec = _curves(prefill, F, I), _curves(decode, F, I)
        return Packed(True, 0.0, 0.0, 0.0, 0.0, 0.0, pre, dec, notes, np.asarray(F, dtype=np.float64),
                      np.asarray(I, dtype=np.int64))
    raise TypeError(f"the continuous engine has no compiled form of {type(latency).__name__}")


def unpack(packed: Packed, latency: LatencyModel) -> None:
    """Add the grid queries the kernel counted to ``latency``'s notes."""
    if packed.grid:
        c = packed.notes.tolist()
        latency.add_counts(*(int(v) for v in c[:MAX_BATCH + 1]), c[MAX_CONTEXT])


def _curves(entries: list, F: list, I: list) -> Curves:
    """Append ``entries`` (index b - 1: batch size b; batch size 0 left empty) to ``F`` and ``I``."""
    start, gstart = [0, 0], [0, 0]
    xs, ys, slopes, ks, cum, ga, gb = [], [], [], [], [], [], []
    left, right, lo, hi = [0.0], [0.0], [math.inf], [-math.inf]
    for e in entries:
        f = e.f
        xs += f.xs
        ys += f.ys
        slopes += f.slopes + [0.0]
        ks += f._ks
        cum += f._cum
        start.append(len(xs))
        left.append(f.left)
        right.append(f.right)
        lo.append(e.lo)
        hi.append(e.hi)
        ga += [a for a, _ in e.gaps]
        gb += [b for _, b in e.gaps]
        gstart.append(len(ga))

    def put(values, into):
        at = len(into)
        into.extend(values)
        return at

    return Curves(len(entries), put(start, I), put(gstart, I), put(ks, I), put(xs, F), put(ys, F), put(slopes, F),
                  put(cum, F), put(left, F), put(right, F), put(lo, F), put(hi, F), put(ga, F), put(gb, F))


@njit(cache=True)
def one_reference(L):
    """A :data:`Packed` model as a :data:`Latency` record (the same arrays)."""
    return Latency(L.grid, L.p0, L.p1, L.p2, L.p3, L.p4, L.pre, L.dec, L.notes, L.F, L.I)


@njit(cache=True)
def bisect_right(a, lo, hi, x):
    """The first index in ``a[lo:hi]`` (sorted) whose value is above ``x`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ------------------------------------------------------------ PiecewiseLinear
# Knot j of batch size b is F[c.xs + j] (x), F[c.ys + j] (y), ...; j runs over I[c.start + b] ..
@njit(cache=True)
def _value(L, c, b, x):
    F, I = L.F, L.I
    s, e = I[c.start + b], I[c.start + b + 1]
    xs, ys = c.xs, c.ys
    if x <= F[xs + s]:
        return F[ys + s] + F[c.left + b] * (x - F[xs + s])
    if x >= F[xs + e - 1]:
        return F[ys + e - 1] + F[c.right + b] * (x - F[xs + e - 1])
    i = bisect_right(F, xs + s, xs + e, x) - 1 - xs
    return F[ys + i] + F[c.slopes + i] * (x - F[xs + i])


@njit(cache=True)
def _line_sum(y, s, x, j, k):
    n = k - j + 1
    if n <= 0:
        return 0.0
    return n * (y + s * ((j + k) * 0.5 - x))


@njit(cache=True)
def _prefix(L, c, b, m):
    F, I = L.F, L.I
    s, e = I[c.start + b], I[c.start + b + 1]
    ks = c.ks
    if m <= I[ks + s]:
        return F[c.cum + s] - _line_sum(F[c.ys + s], F[c.left + b], F[c.xs + s], m, I[ks + s] - 1)
    i = bisect_right(I, ks + s, ks + e, m - 1) - 1 - ks
    slope = F[c.right + b] if i == e - 1 else F[c.slopes + i]
    return F[c.cum + i] + _line_sum(F[c.ys + i], slope, F[c.xs + i], I[ks + i], m - 1)


@njit(cache=True)
def _progression_sum(L, c, b, x0, count):
    if count <= 0:
        return 0.0
    F, I = L.F, L.I
    s, e = I[c.start + b], I[c.start + b + 1]
    xs, ys = c.xs, c.ys
    last = x0 + count - 1
    i = bisect_right(F, xs + s, xs + e, x0) - 1 - xs
    total, j = 0.0, 0
    while j < count:
        if i < s:
            y, slope, x, upper = F[ys + s], F[c.left + b], F[xs + s], F[xs + s]
        elif i >= e - 1:
            y, slope, x, upper = F[ys + e - 1], F[c.right + b], F[xs + e - 1], math.inf
        else:
            y, slope, x, upper = F[ys + i], F[c.slopes + i], F[xs + i], F[xs + i + 1]
        stop = count if upper > last else min(count, math.ceil(upper - x0))
        if stop > j:
            cnt = stop - j
            total += cnt * (y + slope * (x0 - x)) + slope * (j + stop - 1) * cnt * 0.5
            j = stop
        i += 1
    return total


@njit(cache=True)
def _trusted(L, c, b, lo, hi):
    F, I = L.F, L.I
    if lo < F[c.lo + b] or hi > F[c.hi + b]:
        return False
    gs, ge = I[c.gstart + b], I[c.gstart + b + 1]
    if ge > gs:
        i = bisect_right(F, c.gb + gs, c.gb + ge, lo) - c.gb
        if i < ge and F[c.ga + i] < hi:
            return False
    return True


@njit(cache=True)
def _gapped(L, c, b):
    return L.I[c.gstart + b + 1] > L.I[c.gstart + b]


@njit(cache=True)
def _note(L, c, batch, last):
    """Check ``batch`` was packed; track the largest batch and context queried."""
    if batch > c.batches:
        raise ValueError("a grid query beyond the batch sizes packed for this run")
    notes = L.notes
    if batch > notes[MAX_BATCH]:
        notes[MAX_BATCH] = batch
    if last > notes[MAX_CONTEXT]:
        notes[MAX_CONTEXT] = last


@njit(cache=True)
def _outside(L, c, batch, context):
    _note(L, c, batch, context)
    if not L.F[c.lo + batch] <= context <= L.F[c.hi + batch]:
        return True
    return _gapped(L, c, batch) and not _trusted(L, c, batch, context, context)


# ------------------------------------------------------------ the LatencyModel interface
@njit(cache=True)
def prefill_time(L, batch, prompt_len):
    if not L.grid:
        return L.p0 + L.p1 * batch * prompt_len
    L.notes[N_PREFILL] += 1
    L.notes[X_PREFILL] += _outside(L, L.pre, batch, prompt_len)
    return _value(L, L.pre, batch, prompt_len)


@njit(cache=True)
def decode_step_time(L, batch, context_len):
    if not L.grid:
        return L.p2 + L.p3 * batch + L.p4 * batch * context_len
    L.notes[N_STEP] += 1
    L.notes[X_STEP] += _outside(L, L.dec, batch, context_len)
    return _value(L, L.dec, batch, context_len)


@njit(cache=True)
def decode_time(L, batch, prompt_len, steps):
    """Sum of ``steps`` decode steps at contexts ``prompt_len`` (a float) on."""
    if not L.grid:
        per_step = L.p2 + L.p3 * batch + L.p4 * batch * prompt_len
        return steps * per_step + L.p4 * batch * steps * (steps - 1) * 0.5
    L.notes[N_DECODE] += 1
    if steps <= 0:
        return 0.0
    c = L.dec
    last = prompt_len + steps - 1
    _note(L, c, batch, last)
    if not (L.F[c.lo + batch] <= prompt_len and last <= L.F[c.hi + batch]) or (
            _gapped(L, c, batch) and not _trusted(L, c, batch, prompt_len, last)):
        L.notes[X_DECODE] += 1
    if prompt_len == math.floor(prompt_len):
        m = int(prompt_len)
        return _prefix(L, c, batch, m + steps) - _prefix(L, c, batch, m)
    return _progression_sum(L, c, batch, prompt_len, steps)


@njit(cache=True)
def steps_until(L, batch, context_len, max_steps, budget):
    """The fewest decode steps (at most ``max_steps``) whose total time reaches ``budget``."""
    if budget <= 0:
        return 0
    if not L.grid:
        a = L.p2 + L.p3 * batch + L.p4 * batch * context_len
        c = L.p4 * batch
        if c > 0:
            h = a - c / 2
            x = (-h + math.sqrt(h * h + 2 * c * budget)) / c
        else:
            x = budget / a
        x = min(max(int(math.ceil(x)), 0), max_steps)
        while x > 0 and decode_time(L, batch, context_len, x - 1) >= budget:
            x -= 1
        while x < max_steps and decode_time(L, batch, context_len, x) < budget:
            x += 1
        return x
    if decode_time(L, batch, context_len, max_steps) < budget:
        return max_steps
    lo, hi = 0, max_steps
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decode_time(L, batch, context_len, mid) < budget:
            lo = mid
        else:
            hi = mid
    return hi
