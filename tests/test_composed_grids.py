"""Grids composed from measured operator tables (calibration/operators.py, calibration/compose.py,
docs/hardware.md#measured-grids-composed-from-operator-tables)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.calibration import bundled_grids, load_bundled, resolve_grid
from batchlab.calibration.compose import (
    ELEMENTWISE_EFFICIENCY,
    FEATURED,
    compose,
    file_name,
    layer_shapes,
)
from batchlab.calibration.data import COMPOSED_DIR
from batchlab.calibration.operators import GPU_DIRS, TABLES_DIR, OperatorError, OperatorTables
from batchlab.calibration.resolve import is_grid_path
from batchlab.cli import cli
from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.hardware import gpu_spec, model_arch
from batchlab.core.latency import build_latency_model
from batchlab.core.roofline import ITERATION_OVERHEAD_S, Roofline, roofline_error

GPUS = sorted(GPU_DIRS.values())


def _table(gpu: str, name: str) -> pd.DataFrame:
    aic = next(k for k, v in GPU_DIRS.items() if v == gpu)
    return pd.read_csv(TABLES_DIR / aic / f"{name}.csv")


@pytest.mark.parametrize("gpu", GPUS)
def test_lookups_return_the_measurements_at_their_own_points(gpu):
    """Every operator looked up at a measured point returns that measurement (300 points a table)."""
    t = OperatorTables.bundled(gpu)
    rng = np.random.default_rng(0)
    g = _table(gpu, "gemm")
    for r in g.iloc[rng.choice(len(g), 300, replace=False)].itertuples():
        assert t.gemm_ms(r.m, r.n, r.k) == pytest.approx(r.latency_ms, rel=1e-12)
    for name, lookup, length in (("context_attention", t.context_attention_ms, "isl"),
                                 ("generation_attention", t.generation_attention_ms, "context")):
        a = _table(gpu, name)
        for r in a.iloc[rng.choice(len(a), 300, replace=False)].itertuples():
            assert lookup(r.batch, getattr(r, length), r.heads, r.kv_heads, r.head_dim) == \
                pytest.approx(r.latency_ms, rel=1e-12)
    ar = _table(gpu, "allreduce")
    for r in ar.itertuples():
        assert t.allreduce_ms(r.num_gpus, r.elements, r.backend) == pytest.approx(r.latency_ms, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(GPUS), st.integers(1, 32768), st.sampled_from([(6144, 4096), (4096, 4096), (28672, 4096),
                                                                      (4096, 14336), (128256, 4096)]))
def test_a_matmul_between_points_stays_between_its_corners(gpu, m, shape):
    """Linear along each axis: between measured points the time lies within its corners' range; beyond the
    largest column count the pieces add up."""
    t = OperatorTables.bundled(gpu)
    ms, ns, ks = t._gemm_knots
    n, k = shape
    if n > ns[-1]:
        assert t.gemm_ms(m, n, k) == pytest.approx(t.gemm_ms(m, ns[-1], k) + t.gemm_ms(m, n - ns[-1], k))
        return
    m = min(m, ms[-1])
    lo = [max(x for x in knots if x <= v) for knots, v in zip((ms, ns, ks), (m, n, k))]
    hi = [min(x for x in knots if x >= v) for knots, v in zip((ms, ns, ks), (m, n, k))]
    corners = [t.gemm_ms(a, b, c) for a in {lo[0], hi[0]} for b in {lo[1], hi[1]} for c in {lo[2], hi[2]}]
    assert min(corners) - 1e-12 <= t.gemm_ms(m, n, k) <= max(corners) + 1e-12


def test_beyond_the_measured_sizes_operators_split_into_measured_pieces():
    t = OperatorTables.bundled("h100")
    top_m = t._gemm_knots[0][-1]
    assert t.gemm_ms(2 * top_m + 100, 4096, 4096) == pytest.approx(2 * t.gemm_ms(top_m, 4096, 4096)
                                                                   + t.gemm_ms(100, 4096, 4096))
    # attention: batch 512 at 16,384 tokens was not measured (out of memory), so it is two batches of 256
    big = t.context_attention_ms(512, 16384, 32, 8, 128)
    assert big == pytest.approx(2 * t.context_attention_ms(256, 16384, 32, 8, 128))
    assert t.generation_attention_ms(4096, 1024, 32, 8, 128) == \
        pytest.approx(2 * t.generation_attention_ms(2048, 1024, 32, 8, 128))
    assert t.allreduce_ms(1, 10**6, "graph") == 0.0   # one GPU: nothing to reduce


def test_a_composed_cell_is_the_sum_of_its_measured_operators(tmp_path):
    """A model whose every shape is a measured point (hidden 4,096, 32/8 heads of 128, MLP 2,048, vocabulary
    65,536; what the shipped matmul subset holds): a decode step and a prefill equal the hand sum of the table rows, the element-wise bytes at
    80 % of the bandwidth and the host overhead."""
    cfg = {"hidden_size": 4096, "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8,
           "head_dim": 128, "intermediate_size": 2048, "vocab_size": 65536, "torch_dtype": "bfloat16"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    grid = compose(str(path), "h100")
    g, ca, ga = _table("h100", "gemm"), _table("h100", "context_attention"), _table("h100", "generation_attention")

    def mm(m, n, k):
        return g[(g.m == m) & (g.n == n) & (g.k == k)].latency_ms.item()

    def layer(tokens):
        return mm(tokens, 6144, 4096) + mm(tokens, 4096, 4096) + mm(tokens, 4096, 4096) + mm(tokens, 4096, 2048)

    bw = gpu_spec("h100").bandwidth_gbps * 1e9 * ELEMENTWISE_EFFICIENCY

    def elementwise(tokens):
        return 2 * tokens * (8 * 4096 + 3 * 2048) * 2 / bw

    dec = ga[(ga.heads == 32) & (ga.kv_heads == 8) & (ga.head_dim == 128) & (ga.batch == 8) & (ga.context == 1024)]
    want_decode = ITERATION_OVERHEAD_S + (2 * (layer(8) + dec.latency_ms.item()) + mm(8, 65536, 4096)) / 1e3 \
        + elementwise(8)
    pre = ca[(ca.heads == 32) & (ca.kv_heads == 8) & (ca.head_dim == 128) & (ca.batch == 2) & (ca.isl == 512)]
    want_prefill = ITERATION_OVERHEAD_S + (2 * (layer(1024) + pre.latency_ms.item()) + mm(2, 65536, 4096)) / 1e3 \
        + elementwise(1024)
    t = grid.table.set_index(["batch_size", "context_len"])
    assert t.loc[(8, 1024), "decode_step_s"] == pytest.approx(want_decode, rel=1e-9)
    assert t.loc[(2, 512), "prefill_s"] == pytest.approx(want_prefill, rel=1e-9)
    assert t.loc[(8, 1024), "kv_cache_gib"] == pytest.approx(8 * 1024 * 2 * 2 * 8 * 128 * 2 / 2**30)


def test_tensor_parallel_adds_the_measured_all_reduces():
    """At TP 4 a decode step holds 2 all-reduces a layer and one after the embedding, of batch x hidden
    values, from the measured table (CUDA-graph kernel at decode sizes)."""
    from batchlab.calibration.compose import Composer

    arch, t = model_arch("llama-3.1-70b"), OperatorTables.bundled("h100")
    c = Composer(arch, t, 4)
    shapes = layer_shapes(arch, 4)
    assert shapes["heads"] == (16, 2, 128) and shapes["gemms"]["gate_up"] == (2 * 28672 // 4, 8192)
    b, ctx = 16, 2048
    ops = (sum(t.gemm_ms(b, n, k) for n, k in shapes["gemms"].values())
           + t.generation_attention_ms(b, ctx, 16, 2, 128))
    ar = t.allreduce_ms(4, b * 8192, "graph")
    want = ITERATION_OVERHEAD_S + (80 * (ops + 2 * ar) + ar + t.gemm_ms(b, 128256 // 4, 8192)) / 1e3 \
        + 80 * b * (8 * 8192 + 3 * 28672 // 4) * 2 / (gpu_spec("h100").bandwidth_gbps * 1e9 * ELEMENTWISE_EFFICIENCY)
    assert c.decode_step_s(b, ctx) == pytest.approx(want, rel=1e-12) and ar > 0


def test_the_shipped_grids_are_the_composition_of_the_shipped_tables():
    """Each file in calibration/data/composed is what compose() makes from the shipped tables today."""
    assert len(FEATURED) >= 4
    for name, (model, gpu, tp) in FEATURED.items():
        path = COMPOSED_DIR / file_name(name)
        assert path.read_bytes() == compose(model, gpu, tp).to_csv_bytes(), name
        assert bundled_grids()[name] == path


@pytest.mark.parametrize("name", sorted(FEATURED))
def test_shipped_grids_carry_their_sources_and_serve_runs(name):
    model, gpu, tp = FEATURED[name]
    grid = load_bundled(name)
    assert grid.tp == tp and grid.meta["model"] == model and grid.meta["gpu"] == gpu
    assert "aiconfigurator" in grid.meta["source"] and grid.meta["licence"].startswith("Apache-2.0")
    assert len(grid.meta["source_commit"]) == 40
    assert not is_grid_path(name) and resolve_grid(f"grid:{name}", files=False).sha256 == grid.sha256
    lat = build_latency_model(SimConfig(latency=f"grid:{name}", model=model, gpu=gpu, tp=tp, gpus=tp))
    # time rises with batch and context where the work is large (noise of a few % only at tiny sizes)
    assert lat.decode_step_time(64, 8192) > lat.decode_step_time(64, 1024) > lat.decode_step_time(1, 1024)
    assert lat.prefill_time(4, 8192) > lat.prefill_time(1, 8192) > lat.prefill_time(1, 1024)
    if tp > 1:
        with pytest.raises(ConfigError, match="tp"):
            build_latency_model(SimConfig(latency=f"grid:{name}", model=model, gpu=gpu, tp=1, gpus=1))


def test_the_licence_and_attribution_ship_beside_the_tables():
    assert "Apache License" in (TABLES_DIR / "LICENSE").read_text()
    readme = (TABLES_DIR / "README.md").read_text()
    assert "095f58a51c4ca8e61b66ec108d86f223f8d559ce" in readme and "NVIDIA" in readme
    for aic in GPU_DIRS:
        assert OperatorTables(GPU_DIRS[aic], TABLES_DIR / aic).source["commit"] in readme


@pytest.mark.parametrize("model, gpu, tp, match", [
    ("qwen3-30b-a3b", "h100", 1, "mixture of experts"),
    ("llama-3.1-8b", "l4", 1, "no measured operator tables for GPU 'l4'"),
    ("llama-3.1-8b", "l40s", 2, "no measured all-reduce over 2 GPUs"),
    ("qwen2.5-7b", "l40s", 1, "28 heads, 4 KV heads"),
    ("qwen3-4b", "h100", 3, "do not split over TP 3"),
])
def test_what_the_tables_cannot_answer_is_an_error_naming_it(model, gpu, tp, match):
    with pytest.raises(OperatorError, match=match):
        compose(model, gpu, tp)


def test_the_roofline_error_against_each_grid():
    """roofline_error compares the roofline with a grid point by point (its own formula at each point), and
    against every shipped grid the roofline's median error stays within 25 % (docs/hardware.md has them)."""
    grid = load_bundled("llama-3.1-8b@h100/tp1")
    e = roofline_error(grid)
    roof = Roofline.from_config(SimConfig(model="llama-3.1-8b", gpu="h100", latency="roofline"))
    row = e[(e.quantity == "decode_step_s") & (e.batch_size == 16) & (e.context_len == 2048)].iloc[0]
    assert row.roofline_s == pytest.approx(float(roof.decode_step_time(16, 2048)))
    assert row.error == pytest.approx(row.roofline_s / row.measured_s - 1)
    assert len(e) == grid.table.prefill_s.notna().sum() + grid.table.decode_step_s.notna().sum()
    for name in FEATURED:
        err = roofline_error(load_bundled(name)).groupby("quantity").error.agg(lambda x: np.median(np.abs(x)))
        assert err.max() < 0.25, (name, err.to_dict())
    with pytest.raises(ValueError, match="names no catalogue model"):
        roofline_error(load_bundled("qwen3-4b-sglang"))


def test_composition_against_an_end_to_end_measurement():
    """Qwen3-4B on an A100-80GB composed from vLLM's kernels against the bundled SGLang measurement of the
    whole iteration (95 points): prefill within 10 % at the median, decode steps 10-25 % above (the
    composition's separate kernels and 2 ms host time against SGLang's CUDA-graph decode)."""
    from batchlab.core.latency_grid import GridLatency

    measured, composed = load_bundled("qwen3-4b-sglang"), GridLatency(load_bundled("qwen3-4b@a100-80gb/tp1"))
    for column, time, low, high in (("prefill_s", composed.prefill_time, -0.10, 0.10),
                                    ("decode_step_s", composed.decode_step_time, 0.10, 0.25)):
        m = measured.measured(column)
        err = np.array([time(b, c) for b, c in zip(m.batch_size, m.context_len)]) / m[column].to_numpy() - 1
        assert low < np.median(err) < high, (column, np.median(err))


def test_cli_compose_and_roofline(tmp_path):
    out = tmp_path / "g.csv"
    res = CliRunner().invoke(cli, ["grids", "compose", "qwen3-8b", "h200", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "qwen3-8b@h200/tp1" in res.output and resolve_grid(f"grid:{out}").meta["model"] == "qwen3-8b"
    res = CliRunner().invoke(cli, ["grids", "compose", "qwen3-30b-a3b", "h100"])
    assert res.exit_code == 1 and "mixture of experts" in res.output
    res = CliRunner().invoke(cli, ["grids", "roofline", "llama-3.1-8b@b200/tp1"])
    assert res.exit_code == 0, res.output
    assert "decode_step_s  batch  16, context  2048: measured" in res.output
    res = CliRunner().invoke(cli, ["grids", "roofline", "qwen3-4b-sglang", "--model", "qwen3-4b", "--gpu",
                                   "a100-80gb", "--csv"])
    assert res.exit_code == 0 and res.output.startswith("batch_size,context_len,quantity,measured_s")



def test_between_two_measured_batch_sizes_a_matmul_is_their_linear_blend():
    t = OperatorTables.bundled("h200")
    lo, hi = 8192, 16384   # neighbouring measured batch sizes (tokens)
    for w in (0.25, 0.5):
        m = int(lo + w * (hi - lo))
        assert t.gemm_ms(m, 6144, 4096) == pytest.approx((1 - w) * t.gemm_ms(lo, 6144, 4096)
                                                          + w * t.gemm_ms(hi, 6144, 4096), rel=1e-12)


def test_the_web_takes_a_composed_grid_by_name_and_nothing_like_a_path():
    from batchlab.webapp.guard import latency_problem

    assert latency_problem("grid:llama-3.1-8b@h100/tp1") is None
    for hostile in ("grid:../llama-3.1-8b@h100/tp1", "grid:/etc/llama-3.1-8b@h100_tp1.csv",
                    "grid:llama-3.1-8b@h100/tp1/../../x", "grid:llama-3.1-8b@h100/tp9"):
        assert "never a file" in latency_problem(hostile)
