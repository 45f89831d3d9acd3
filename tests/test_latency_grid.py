"""GridLatency: exact at grid points, bounded/monotone between them, counted extrapolation,
closed-form decode_time equal to the summed steps."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.calibration import load_bundled, parse_grid
from batchlab.core.latency import LatencyModel
from batchlab.core.latency_grid import FLOOR, GridLatency, PiecewiseLinear, maximum

BUNDLED = load_bundled("qwen3-4b-sglang")
TABLE = BUNDLED.table
BATCHES = sorted(set(TABLE["batch_size"].tolist()))
CONTEXTS = sorted(set(TABLE["context_len"].tolist()))
VALUES = {col: {(b, c): v for b, c, v in zip(TABLE["batch_size"], TABLE["context_len"], TABLE[col])}
          for col in ("prefill_s", "decode_step_s")}
# cells whose four corners were all measured
CELLS = [(i, j) for i in range(len(BATCHES) - 1) for j in range(len(CONTEXTS) - 1)
         if all((BATCHES[i + di], CONTEXTS[j + dj]) in VALUES["prefill_s"] for di in (0, 1) for dj in (0, 1))]


def model() -> GridLatency:
    return GridLatency(BUNDLED)


def query(m: GridLatency, col: str, b, c) -> float:
    return m.prefill_time(b, c) if col == "prefill_s" else m.decode_step_time(b, c)


def grid_from(fn, batches, contexts, missing=()) -> GridLatency:
    rows = ["batch_size,context_len,prefill_s,decode_step_s"]
    for b in batches:
        for c in contexts:
            rows.append(f"{b},{c},," if (b, c) in missing else f"{b},{c},{fn(b, c)!r},{fn(b, c) / 10!r}")
    return GridLatency(parse_grid(("\n".join(rows) + "\n").encode(), name="synthetic"))


def test_reproduces_every_measured_cell_exactly():
    m = model()
    for col, cells in VALUES.items():
        for (b, c), v in cells.items():
            assert query(m, col, b, c) == v
    notes = m.run_notes()
    assert notes["queries"] == 190 and notes["extrapolated_queries"] == 0
    assert notes["max_batch_queried"] == 64 and notes["max_context_queried"] == 16384


@settings(max_examples=300, deadline=None)
@given(cell=st.sampled_from(CELLS), col=st.sampled_from(["prefill_s", "decode_step_s"]),
       u=st.floats(0, 1), v1=st.floats(0, 1), v2=st.floats(0, 1))
def test_between_neighbouring_points_bounded_and_monotone(cell, col, u, v1, v2):
    i, j = cell
    b0, b1, c0, c1 = BATCHES[i], BATCHES[i + 1], CONTEXTS[j], CONTEXTS[j + 1]
    corners = {(b, c): VALUES[col][(b, c)] for b in (b0, b1) for c in (c0, c1)}
    b = b0 + round(u * (b1 - b0))
    lo_c, hi_c = sorted((c0 + v1 * (c1 - c0), c0 + v2 * (c1 - c0)))
    m = model()
    lo, hi = query(m, col, b, lo_c), query(m, col, b, hi_c)
    eps = 1e-12
    for x in (lo, hi):
        assert min(corners.values()) - eps <= x <= max(corners.values()) + eps
    if corners[(b0, c0)] <= corners[(b0, c1)] and corners[(b1, c0)] <= corners[(b1, c1)]:
        assert lo <= hi + eps
    if corners[(b0, c0)] <= corners[(b1, c0)] and corners[(b0, c1)] <= corners[(b1, c1)] and b < b1:
        assert query(m, col, b, lo_c) <= query(m, col, b + 1, lo_c) + eps
    assert m.run_notes()["extrapolated_queries"] == 0


def test_bilinear_function_is_reproduced_everywhere_inside_and_beyond():
    fn = lambda b, c: 0.01 + 0.002 * b + 1e-5 * c + 3e-6 * b * c  # noqa: E731
    m = grid_from(fn, [1, 4, 16], [16, 64, 256, 1024])
    for b in (1, 2, 3, 5, 16, 17, 40):
        for c in (16, 20, 100, 1000, 1024, 2000, 5000):
            assert m.prefill_time(b, c) == pytest.approx(fn(b, c), rel=1e-12)
    notes = m.run_notes()
    assert notes["queries"] == 49
    # batch 17 and 40 (beyond 16) and contexts 2000, 5000 (beyond 1024) are extrapolated
    assert notes["extrapolated_queries"] == 7 * 2 + 5 * 2


def test_extrapolation_is_counted_and_positive():
    m = model()
    inside = [(1, 1), (3, 100), (48, 1000), (64, 1024), (8, 8192)]
    for b, c in inside:
        m.prefill_time(b, c)
        m.decode_step_time(b, c)
    m.decode_time(1, 16000, 385)  # last context 16384: still measured
    assert m.run_notes()["extrapolated_queries"] == 0
    outside = [(64, 2048), (48, 2000), (128, 16), (1, 20000), (16, 8192)]  # OOM cells, beyond batch/context
    for b, c in outside:
        assert m.prefill_time(b, c) > 0
        assert m.decode_step_time(b, c) > 0
    m.decode_time(1, 16000, 386)
    notes = m.run_notes()
    assert notes["extrapolated_queries"] == 2 * len(outside) + 1
    assert notes["extrapolated_by_kind"] == {"prefill": 5, "decode_step": 5, "decode": 1}
    assert notes["queries"] == 2 * len(inside) + 2 * len(outside) + 2
    assert notes["max_batch_queried"] == 128 and notes["max_context_queried"] == 20000
    assert notes["grid"] == "qwen3-4b-sglang" and notes["grid_sha256"] == BUNDLED.sha256
    m.reset_notes()
    assert m.run_notes()["queries"] == 0


def test_extrapolation_never_decreases_beyond_the_data():
    m = model()
    for col in ("prefill_s", "decode_step_s"):
        along_context = [query(m, col, 64, c) for c in (1024, 1500, 2048, 4096, 16384, 65536)]
        assert along_context == sorted(along_context)
        along_batch = [query(m, col, b, 1024) for b in (64, 65, 100, 256, 1024)]
        assert along_batch == sorted(along_batch)
    # the decode step at context 1 drops from bs 1 to bs 2: extrapolating past bs 64 still never drops
    assert m.decode_step_time(200, 1) >= m.decode_step_time(64, 1)
    # a linear-looking tail is extrapolated linearly: bs 64 prefill at 2048 from (512, 1024)
    p512, p1024 = VALUES["prefill_s"][(64, 512)], VALUES["prefill_s"][(64, 1024)]
    assert m.prefill_time(64, 2048) == pytest.approx(p1024 + (p1024 - p512) * 2)


def test_downward_extrapolation_is_floored():
    fn = lambda b, c: 1e-4 * (b + 0.1 * b * b) * c  # noqa: E731  superlinear: extrapolating to b=1 goes negative
    m = grid_from(fn, [4, 8], [100, 200])
    assert m.prefill_time(1, 100) == pytest.approx(FLOOR * fn(4, 100))
    assert m.prefill_time(3, 100) == pytest.approx(fn(4, 100) - (fn(8, 100) - fn(4, 100)) / 4)
    assert m.prefill_time(4, 10) == pytest.approx(FLOOR * fn(4, 100))  # below the first measured context
    assert m.prefill_time(4, 60) == pytest.approx(fn(4, 100) * 0.6)
    for b in (1, 2, 3):
        for c in (1, 50, 100, 150, 300):
            assert m.prefill_time(b, c) > 0
            assert m.decode_time(b, c, 77) == pytest.approx(LatencyModel.decode_time(m, b, c, 77), rel=1e-12)
    assert m.run_notes()["extrapolated_by_kind"]["prefill"] == 4 + 15


def test_missing_cell_inside_a_row_is_bridged_and_counted():
    fn = lambda b, c: 0.01 * b + 1e-4 * c  # noqa: E731
    m = grid_from(fn, [1, 2, 4], [100, 200, 300, 400], missing={(2, 200)})
    assert m.prefill_time(2, 200) == pytest.approx(fn(2, 200))
    assert m.run_notes()["extrapolated_queries"] == 1
    m.prefill_time(2, 100)
    m.prefill_time(2, 300)
    m.prefill_time(1, 200)
    m.decode_time(2, 300, 101)
    assert m.run_notes()["extrapolated_queries"] == 1
    m.prefill_time(3, 250)  # interpolates rows 2 and 4; row 2 is bridging its gap there
    m.decode_time(2, 100, 101)
    assert m.run_notes()["extrapolated_queries"] == 3
    assert not m.covers(2, 150) and m.covers(2, 300) and not m.covers(8, 300)


@settings(max_examples=200, deadline=None)
@given(b=st.integers(1, 200), p=st.integers(0, 20000), n=st.integers(0, 1500))
def test_decode_time_equals_summed_steps(b, p, n):
    m = model()
    closed = m.decode_time(b, p, n)
    loop = LatencyModel.decode_time(m, b, p, n)
    assert closed == pytest.approx(loop, rel=1e-11, abs=1e-15)


def test_decode_time_edge_cases():
    m = model()
    assert m.decode_time(8, 100, 0) == 0.0
    assert m.decode_time(8, 100, 1) == m.decode_step_time(8, 100)
    assert m.decode_time(8, 100.5, 3) == pytest.approx(sum(m.decode_step_time(8, 100.5 + s) for s in range(3)))
    assert m.decode_time(8, 100.0, 3) == pytest.approx(LatencyModel.decode_time(m, 8, 100, 3))


def knots(draw_x):
    return st.lists(draw_x, min_size=2, max_size=6, unique=True).map(sorted)


@st.composite
def piecewise(draw):
    xs = draw(knots(st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 3))))
    ys = draw(st.lists(st.floats(-5, 5), min_size=len(xs), max_size=len(xs)))
    return PiecewiseLinear(xs, ys, draw(st.floats(-2, 2)), draw(st.floats(-2, 2)))


@settings(max_examples=200, deadline=None)
@given(f=piecewise(), g=piecewise(), start=st.integers(-80, 80), count=st.integers(0, 60),
       x=st.floats(-100, 100))
def test_piecewise_linear_sums_and_maximum(f, g, start, count, x):
    assert f.int_sum(start, count) == pytest.approx(sum(f(start + s) for s in range(count)), rel=1e-9, abs=1e-9)
    h = maximum(f, g)
    assert h(x) == pytest.approx(max(f(x), g(x)), rel=1e-9, abs=1e-9)
    assert h.int_sum(start, count) == pytest.approx(sum(max(f(c), g(c)) for c in range(start, start + count)),
                                                    rel=1e-9, abs=1e-8)


def test_identity_names_the_grid_and_its_content():
    m = model()
    assert m.identity == {"kind": "grid", "name": "qwen3-4b-sglang", "sha256": BUNDLED.sha256,
                          "method": "bilinear-pl-v1"}
    other = parse_grid(BUNDLED.to_csv_bytes() + b"128,1,0.5,0.5,\n", name="qwen3-4b-sglang")
    assert GridLatency(other).identity["sha256"] != m.identity["sha256"]  # same name, other content
