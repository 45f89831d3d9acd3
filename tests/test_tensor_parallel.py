"""Tensor parallelism: a replica's KV capacity, the scaling model's coefficients against the hand formula,
where TP pays off and where the link makes it lose, grids refused at another TP or scaled to it, and
TP 1 exactly as before."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.calibration import load_bundled, parse_grid
from batchlab.calibration.schema import GridError
from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.identity import run_identity
from batchlab.core.latency import ParametricLatency, build_latency_model
from batchlab.core.latency_grid import GridLatency
from batchlab.core.latency_kernel import pack
from batchlab.core.memory import GB, MemoryModel
from batchlab.core.tensor_parallel import (
    ALLREDUCE_LATENCY_S,
    ScaledGridLatency,
    TensorParallel,
    TPParametricLatency,
)

GRID = load_bundled("qwen3-4b-sglang")
QWEN = dict(latency="grid:qwen3-4b-sglang", kv_layers=36, hidden_size=2560)   # Qwen3-4B's shape
CELLS = {col: list(zip(GRID.measured(col)["batch_size"], GRID.measured(col)["context_len"],
                       GRID.measured(col)[col])) for col in ("prefill_s", "decode_step_s")}


def tokens(col: str, b: int, c: int) -> int:
    return b * c if col == "prefill_s" else b


def query(m, col: str, b: int, c: int) -> float:
    return m.prefill_time(b, c) if col == "prefill_s" else m.decode_step_time(b, c)


def grid_text(tp: str | None, scale: float = 1.0) -> bytes:
    head = [f"# tp: {tp}"] if tp is not None else []
    rows = [f"{b},{c},{scale * 0.01 * b * c!r},{scale * (0.02 + 1e-4 * b)!r}" for b in (1, 8) for c in (64, 512)]
    return ("\n".join([*head, "batch_size,context_len,prefill_s,decode_step_s", *rows]) + "\n").encode()


# ---------------------------------------------------------------- memory

@pytest.mark.parametrize("tp, weights_gb, eta", [(1, 16.0, 54_931), (2, 16.0, 219_726), (4, 16.0, 549_316),
                                                  (2, 40.0, 54_931)])
def test_replica_capacity_adds_up_its_gpus_memory(tp, weights_gb, eta):
    # 24 GB a GPU, 10 % reserve, 131,072 KV bytes a token (2 x 32 layers x 8 KV heads x 128 x bf16):
    # free (tp x 24 - weights) GB: 8, 32, 80; 40 GB of weights fit only when split over 2 GPUs or more
    cfg = SimConfig(tp=tp, gpus=4, gpu_mem_gb=24.0, weights_gb=weights_gb)
    assert MemoryModel.from_config(cfg).kv_bytes_per_token == 131_072
    assert MemoryModel.from_config(cfg).eta == eta
    if tp == 1:
        with pytest.raises(ConfigError, match="weights_gb: must be below gpu_mem_gb x tp"):
            cfg.replace(weights_gb=40.0)


def test_memory_model_defaults_to_one_gpu():
    m = MemoryModel(19.0, 16.0, 0.1, 32, 8, 128, 2)
    assert m.tp == 1 and m.eta == int((19.0 - 16.0) * GB * 0.9 // m.kv_bytes_per_token)
    assert MemoryModel(19.0, 16.0, 0.1, 32, 8, 128, 2, tp=2).eta == int((38.0 - 16.0) * GB * 0.9 // 131072)


# ---------------------------------------------------------------- parametric scaling

def test_parametric_coefficients_at_tp4_follow_the_hand_formula():
    cfg = SimConfig(tp=4, gpus=8, kv_layers=32, hidden_size=4096, interconnect_gbps=100.0)
    m = build_latency_model(cfg)
    one = ParametricLatency()                        # the config's defaults: one GPU's coefficients
    # per token: 2 all-reduces x 32 layers, each 2(T-1)/T x 4096 x 2 bytes over 100e9 bytes/s
    k = 2 * 32 * (2 * 3 / 4) * 4096 * 2 / 100e9
    f = 2 * 32 * ALLREDUCE_LATENCY_S
    assert k == pytest.approx(7.86432e-6, rel=1e-12)
    assert isinstance(m, TPParametricLatency)
    assert m.prefill_base == pytest.approx(one.prefill_base / 4 + f, rel=1e-12)
    assert m.prefill_per_token == pytest.approx(one.prefill_per_token / 4 + k, rel=1e-12)
    assert m.decode_base == pytest.approx(one.decode_base / 4 + f, rel=1e-12)
    assert m.decode_per_seq == pytest.approx(one.decode_per_seq / 4 + k, rel=1e-12)
    assert m.decode_per_ctx_token == pytest.approx(one.decode_per_ctx_token / 4, rel=1e-12)
    # the time itself: a quarter of one GPU's plus the all-reduces over the iteration's tokens
    assert m.prefill_time(3, 700) == pytest.approx(one.prefill_time(3, 700) / 4 + f + k * 2100, rel=1e-12)
    assert m.decode_step_time(16, 900.0) == pytest.approx(one.decode_step_time(16, 900.0) / 4 + f + k * 16,
                                                           rel=1e-12)
    assert m.identity["tp_scaling"]["to_tp"] == 4 and m.run_notes()["tp_scaling"]["interconnect_gbps"] == 100.0


def test_the_compiled_form_carries_the_scaled_coefficients():
    m = build_latency_model(SimConfig(tp=2, gpus=2))
    p = pack(m, 8)
    assert (p.p0, p.p1, p.p2, p.p3, p.p4) == (m.prefill_base, m.prefill_per_token, m.decode_base, m.decode_per_seq,
                                              m.decode_per_ctx_token)


def test_tp_pays_off_on_a_fast_link_and_loses_on_a_very_slow_one():
    one = build_latency_model(SimConfig())
    fast = build_latency_model(SimConfig(tp=2, gpus=2, interconnect_gbps=450.0))    # NVLink 4, a direction
    slow = build_latency_model(SimConfig(tp=2, gpus=2, interconnect_gbps=0.1))
    for b, c in ((1, 100), (64, 2000)):
        assert fast.decode_step_time(b, c) < one.decode_step_time(b, c)
        assert fast.prefill_time(b, c) < one.prefill_time(b, c)
    assert slow.decode_step_time(64, 2000) > one.decode_step_time(64, 2000)
    assert slow.prefill_time(8, 2000) > one.prefill_time(8, 2000)


@settings(max_examples=100, deadline=None)
@given(tp=st.sampled_from([2, 4, 8]), b=st.integers(1, 512), c=st.integers(1, 32_000),
       g1=st.floats(0.1, 10_000), g2=st.floats(0.1, 10_000))
def test_time_never_grows_with_bandwidth(tp, b, c, g1, g2):
    lo, hi = sorted((g1, g2))
    slow = build_latency_model(SimConfig(tp=tp, gpus=tp, interconnect_gbps=lo))
    fast = build_latency_model(SimConfig(tp=tp, gpus=tp, interconnect_gbps=hi))
    assert fast.decode_step_time(b, c) <= slow.decode_step_time(b, c)
    assert fast.prefill_time(b, c) <= slow.prefill_time(b, c)
    assert fast.decode_time(b, c, 5) <= slow.decode_time(b, c, 5)


# ---------------------------------------------------------------- grids

def test_grid_tp_is_read_from_its_metadata_and_defaults_to_one():
    assert GRID.tp == 1 and GRID.meta["tp"] == "1"
    assert parse_grid(grid_text(None)).tp == 1
    assert parse_grid(grid_text("4")).tp == 4
    for bad in ("0", "two", "1.5", "2000"):
        with pytest.raises(GridError, match=r"line 1: metadata tp must be a whole number from 1 to 1,024"):
            parse_grid(grid_text(bad))


def test_the_measuring_tool_records_tp_one():
    from batchlab.calibration import measure

    torch = SimpleNamespace(__version__="0", get_num_threads=lambda: 1)
    meta = measure._meta(torch, "tiny", SimpleNamespace(type="cpu"), "float32", 1, 0, 1,
                         {"source": "random weights", "params": 1}, [], [])
    assert parse_grid(grid_text(meta["tp"])).tp == 1


def test_a_grid_of_another_tp_is_refused_with_the_fix_named():
    with pytest.raises(ConfigError) as e:
        build_latency_model(SimConfig(tp=2, gpus=2, **QWEN))
    assert e.value.field == "tp"
    assert str(e.value) == ("tp: grid 'qwen3-4b-sglang' was measured at tp 1, this run has tp 2: use a grid measured "
                            "at tp 2, or set scale_grid_tp to carry its times from tp 1 to tp 2 with the "
                            "tensor-parallel scaling model")
    at2 = parse_grid(grid_text("2"), name="at2")
    with pytest.raises(ConfigError, match="measured at tp 2, this run has tp 1"):
        build_latency_model(SimConfig(latency="grid:at2"), at2)
    m = build_latency_model(SimConfig(tp=2, gpus=2, latency="grid:at2"), at2)   # its own TP: as measured
    assert type(m) is GridLatency and m.prefill_time(8, 512) == 0.01 * 8 * 512


def test_a_scaled_grid_equals_the_scaling_model_at_its_own_cells():
    cfg = SimConfig(tp=2, gpus=4, scale_grid_tp=True, interconnect_gbps=32.0, **QWEN)
    m = build_latency_model(cfg)
    tpm = TensorParallel(36, 2560, 32.0)
    assert isinstance(m, ScaledGridLatency)
    for col, cells in CELLS.items():
        for b, c, v in cells:
            want = v / 2 + tpm.comm_time(2, tokens(col, b, c))
            assert query(m, col, b, c) == tpm.rescale(v, tokens(col, b, c), 1, 2)
            assert query(m, col, b, c) == pytest.approx(want, rel=1e-12)
    assert m.run_notes()["extrapolated_queries"] == 0
    # the identity names the measured grid and the scaling; the compiled form packs the scaled curves
    assert m.identity["sha256"] == GRID.sha256 and m.identity["tp_scaling"]["from_tp"] == 1
    assert m.run_notes()["tp_scaling"]["to_tp"] == 2 and m.grid.tp == 2 and m.grid.meta["scaled_from_tp"] == "1"
    assert pack(m, 64).grid


def test_scaling_there_and_back_returns_the_measured_grid():
    tpm = TensorParallel(36, 2560, 100.0)
    back = tpm.scale_grid(tpm.scale_grid(GRID, 4), 1)
    assert back.tp == 1
    for col in ("prefill_s", "decode_step_s"):
        np.testing.assert_allclose(back.table[col], GRID.table[col], rtol=1e-12, equal_nan=True)


def test_a_grid_faster_than_its_own_all_reduces_is_refused():
    at2 = parse_grid(grid_text("2", scale=1e-3), name="at2")   # cells of 20-640 us: below 2 x 32 x 10 us
    with pytest.raises(ConfigError, match=r"interconnect_gbps: grid 'at2' measured prefill_s = 0.00064 s at "
                                          r"batch_size 1, context_len 64, less than the .* s its tp 2 all-reduces "
                                          r"take at interconnect_gbps 32 \(with 32 layers, hidden_size 4096\)"):
        build_latency_model(SimConfig(tp=4, gpus=4, latency="grid:at2", scale_grid_tp=True), at2)


def test_the_link_changes_a_scaled_grids_run_even_at_tp_one():
    # at tp 1 the config's hash leaves interconnect_gbps out; the scaled grid's identity keeps it in
    at2 = parse_grid(grid_text("2"), name="at2")
    cfgs = [SimConfig(latency="grid:at2", scale_grid_tp=True, interconnect_gbps=g) for g in (32.0, 450.0)]
    assert cfgs[0].relevant_dict() == cfgs[1].relevant_dict()
    w = SimpleNamespace(identity={"label": "w"})
    ids = {run_identity(c, w, build_latency_model(c, at2)) for c in cfgs}
    assert len(ids) == 2


# ---------------------------------------------------------------- tp 1 as before

def test_tp_one_is_the_model_of_before_bit_for_bit():
    cfg = SimConfig()
    m = build_latency_model(cfg)
    assert type(m) is ParametricLatency
    assert m == ParametricLatency(cfg.prefill_base, cfg.prefill_per_token, cfg.decode_base, cfg.decode_per_seq,
                                  cfg.decode_per_ctx_token)
    old_eta = int((cfg.gpu_mem_gb - cfg.weights_gb) * GB * (1.0 - cfg.mem_reserve_frac)
                  // (2 * cfg.kv_layers * cfg.kv_heads * cfg.head_dim * cfg.kv_dtype_bytes))
    assert MemoryModel.from_config(cfg).eta == old_eta
    g = build_latency_model(SimConfig(**QWEN))
    assert type(g) is GridLatency
    assert g.identity == {"kind": "grid", "name": "qwen3-4b-sglang", "sha256": GRID.sha256, "method": "bilinear-pl-v1"}
    assert all(query(g, col, b, c) == v for col, cells in CELLS.items() for b, c, v in cells)
    # a tp-1 grid at tp 1 needs no scaling, and the setting changes nothing
    assert type(build_latency_model(SimConfig(scale_grid_tp=True, **QWEN))) is GridLatency


def test_tp_one_scaling_is_the_identity():
    one = ParametricLatency()
    assert TensorParallel(32, 4096, 32.0).parametric(one, 1) is one
    assert TensorParallel(32, 4096, 32.0).comm_time(1, 10_000) == 0.0


# ---------------------------------------------------------------- whole runs

@pytest.mark.parametrize("mode", ["static_fifo", "continuous_dynamic"])
def test_a_run_at_tp2_uses_the_replicas_memory_and_says_its_grid_was_scaled(mode):
    from batchlab.core import simulate
    from batchlab.workloads.workload import Workload

    rng = np.random.default_rng(5)
    n = 40
    w = Workload(np.sort(rng.uniform(0, 20, n)), rng.integers(10, 2000, n), rng.integers(1, 300, n),
                 rng.integers(1, 300, n))
    cfg = SimConfig(mode=mode, tp=2, replicas=1, gpu_mem_gb=19.0, weights_gb=16.0, scale_grid_tp=True, **QWEN)
    r = simulate(cfg, w)
    assert r.summary["eta_tokens"] == MemoryModel.from_config(cfg).eta == int(22e9 * 0.9 // (2 * 36 * 8 * 128 * 2))
    assert r.meta["latency"]["tp_scaling"] == {"model": "tp-ring-v1", "from_tp": 1, "to_tp": 2, "layers": 36,
                                               "hidden_size": 2560, "interconnect_gbps": 32.0,
                                               "allreduce_latency_s": ALLREDUCE_LATENCY_S}
    assert r.summary["latency_notes"]["tp_scaling"]["to_tp"] == 2 and r.summary["latency_notes"]["queries"] > 0


def test_the_scaled_parametric_model_is_a_value():
    a, b = (build_latency_model(SimConfig(tp=2, gpus=2)) for _ in range(2))
    assert a == b and hash(a) == hash(b)
    assert a != build_latency_model(SimConfig(tp=2, gpus=2, interconnect_gbps=450.0))
