"""The roofline latency model (core/roofline.py, docs/hardware.md#latency-the-roofline)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.hardware import gpu_spec, model_arch
from batchlab.core.latency import build_latency_model
from batchlab.core.roofline import (
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    GRID_BATCHES,
    GRID_CONTEXTS,
    ITERATION_OVERHEAD_S,
    Roofline,
    RooflineLatency,
)
from batchlab.core.simulation import latency_label
from batchlab.core.tensor_parallel import TensorParallel

H100 = gpu_spec("h100")
BW = H100.bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY
FLOPS = H100.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY


def roof(model="llama-3.1-8b", gpu="h100", tp=1):
    cfg = SimConfig(model=model, gpu=gpu, tp=tp, latency="roofline")
    return Roofline.from_config(cfg)


def non_embedding_bytes(arch, params):
    """Weight bytes an iteration reads: every parameter but the input embedding (a lookup)."""
    return (params - arch.vocab_size * arch.hidden_size) * arch.dtype_bytes


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen3-30b-a3b"])
def test_monotone_in_batch_and_context(model):
    r = roof(model)
    lat = RooflineLatency(r)
    b = np.array([1, 2, 3, 5, 8, 17, 64, 100, 256, 1000])
    c = np.array([1, 2, 10, 100, 512, 1000, 4096, 20000, 100000])
    for f in (r.prefill_time, r.decode_step_time):
        t = f(b[:, None], c[None, :])
        assert np.all(np.diff(t, axis=0) > 0) and np.all(np.diff(t, axis=1) >= 0)
        assert np.all(np.diff(t[:, -1]) > 0) and np.all(np.diff(t[-1]) > 0)
    for f in (lat.prefill_time, lat.decode_step_time):   # the grid the engines read keeps the order
        t = np.array([[f(int(bi), int(ci)) for ci in c] for bi in b])
        assert np.all(np.diff(t, axis=0) > 0) and np.all(np.diff(t, axis=1) >= 0)


def test_grid_serves_the_roofline_at_its_points():
    r = roof()
    lat = RooflineLatency(r)
    for b, c in [(1, 1), (4, 96), (64, 2048), (GRID_BATCHES[-1], GRID_CONTEXTS[3])]:
        assert lat.prefill_time(b, c) == pytest.approx(float(r.prefill_time(b, c)), rel=1e-12)
        assert lat.decode_step_time(b, c) == pytest.approx(float(r.decode_step_time(b, c)), rel=1e-12)
    assert lat.grid.meta["source"] == "roofline" and lat.grid.tp == 1


def test_decode_at_batch_one_is_memory_bound():
    r = roof()
    arch = model_arch("llama-3.1-8b")
    hand = non_embedding_bytes(arch, arch.params) / BW + ITERATION_OVERHEAD_S
    assert float(r.decode_step_time(1, 16)) == pytest.approx(hand, rel=0.01)
    # every operator's bytes time exceeds its FLOPs time
    for flops, nbytes in r.layer_operators("decode", 1, 16).values():
        assert nbytes / BW > flops / FLOPS


def test_long_prefill_is_compute_bound():
    r = roof()
    a = model_arch("llama-3.1-8b")
    b, p = 2, 8192
    layer_params = (a.params - a.vocab_size * a.hidden_size * 2 - a.hidden_size) / a.num_layers
    flops = a.num_layers * (2 * layer_params * b * p + 2 * b * p * p * a.num_heads * a.head_dim)
    lm_head = a.vocab_size * a.hidden_size * a.dtype_bytes / BW   # one token a prompt: memory-bound
    hand = flops / FLOPS + lm_head + ITERATION_OVERHEAD_S
    assert float(r.prefill_time(b, p)) == pytest.approx(hand, rel=0.01)
    assert float(r.prefill_time(b, p)) > 5 * float(r.decode_step_time(b, p))


@pytest.mark.parametrize("phase,n", [("prefill", lambda b, c: b * c), ("decode", lambda b, c: b)])
def test_tensor_parallel_halves_the_operators_and_adds_the_allreduces(phase, n):
    one, two = roof(tp=1), roof(tp=2)
    cfg = SimConfig(model="llama-3.1-8b", gpu="h100", tp=2, gpus=2, latency="roofline")
    tpm = TensorParallel.from_config(cfg)
    assert (tpm.layers, tpm.hidden_size, tpm.interconnect_gbps) == (32, 4096, 450.0)
    f1 = one.prefill_time if phase == "prefill" else one.decode_step_time
    f2 = two.prefill_time if phase == "prefill" else two.decode_step_time
    b, c = 16, 1024
    comm = 2 * 32 * (10e-6 + 2 * (2 - 1) / 2 * n(b, c) * 4096 * 2 / 450e9)   # documented comm_T(n)
    expected = ITERATION_OVERHEAD_S + (float(f1(b, c)) - ITERATION_OVERHEAD_S) / 2 + comm
    assert float(f2(b, c)) == pytest.approx(expected, rel=1e-12)
    assert float(f2(b, c)) < float(f1(b, c))
    lat = build_latency_model(cfg)
    assert lat.identity["tp"] == 2 and lat.grid.tp == 2
    assert lat.decode_step_time(b, c) == pytest.approx(float(two.decode_step_time(b, c)), rel=1e-12)


def test_moe_decode_reads_only_the_active_experts():
    moe, dense = roof("qwen3-30b-a3b"), roof("qwen3-32b")
    a = model_arch("qwen3-30b-a3b")
    assert a.num_experts == 128 and a.experts_per_tok == 8
    hand = non_embedding_bytes(a, a.active_params) / BW + ITERATION_OVERHEAD_S
    assert float(moe.decode_step_time(1, 16)) == pytest.approx(hand, rel=0.01)
    assert float(moe.decode_step_time(1, 16)) < 0.25 * float(dense.decode_step_time(1, 16))
    # experts' bytes: min(E, b x topk) experts' weights (all 128 from 16 sequences on) + activations
    w = 3 * a.hidden_size * a.moe_intermediate_size * a.dtype_bytes
    act = (2 * a.hidden_size + 3 * a.moe_intermediate_size) * 2
    for b in (1, 15, 16, 64):
        flops, nbytes = moe.layer_operators("decode", b, 16)["experts"]
        assert nbytes == pytest.approx(min(128, 8 * b) * w + 8 * b * act, rel=1e-12)
        assert flops == pytest.approx(2 * 8 * b * w / a.dtype_bytes, rel=1e-12)


def test_roofline_needs_model_and_gpu():
    for kwargs in ({}, {"model": "llama-3.1-8b"}, {"gpu": "h100"}):
        with pytest.raises(ConfigError) as e:
            SimConfig(latency="roofline", **kwargs)
        assert e.value.args and "model" in str(e.value) and "gpu" in str(e.value)
    with pytest.raises(ConfigError, match="roofline"):
        SimConfig(latency="rooftop")


def test_identity_label_and_notes():
    lat = build_latency_model(SimConfig(model="llama-3.1-8b", gpu="l4", latency="roofline"))
    label = "roofline estimate (llama-3.1-8b on l4, TP 1): no measurement for this pair"
    assert latency_label(lat.identity) == label and lat.run_notes()["roofline"] == label
    measured = build_latency_model(SimConfig(model="llama-3.1-8b", gpu="h100", latency="roofline"))
    label = ("roofline estimate (llama-3.1-8b on h100, TP 1): measured times ship as "
             "--latency grid:llama-3.1-8b@h100/tp1")
    assert latency_label(measured.identity) == label and measured.run_notes()["roofline"] == label
    other = build_latency_model(SimConfig(model="llama-3.1-8b", gpu="l40s", latency="roofline"))
    assert other.identity != lat.identity   # another GPU: another run hash
    assert other.decode_step_time(1, 100) < lat.decode_step_time(1, 100)   # more bandwidth (864 vs 300 GB/s)


def test_run_end_to_end_says_roofline_estimate():
    from click.testing import CliRunner

    from batchlab.cli import cli

    res = CliRunner().invoke(cli, ["run", "--model", "llama-3.1-8b", "--gpu", "h100", "--latency", "roofline",
                                    "--num-requests", "200", "--no-store"])
    assert res.exit_code == 0, res.output
    assert "roofline estimate (llama-3.1-8b on h100, TP 1): measured times ship as" in res.output
    assert "requests         200 of 200" in res.output


def test_the_roofline_against_the_bundled_measurement():
    """The roofline for Qwen3-4B on an A100-80GB against the bundled grid measured there (SGLang, 95 points,
    batch 1-64, context 1-16,384): median error of the decode step within 12 %, of prefill within 15 %, and
    within 10 % where the work is large (batch x context >= 4,096), where the fixed costs it leaves out stop
    mattering (docs/validation.md has the figures)."""
    import pandas as pd

    from batchlab.calibration.data import __file__ as data_init

    g = pd.read_csv(Path(data_init).parent / "qwen3-4b_sglang_grid.csv")
    r = Roofline.from_config(SimConfig(model="qwen3-4b", gpu="a100-80gb", latency="roofline"))
    b, c = g.batch_size.to_numpy(), g.context_len.to_numpy()
    pre = np.abs(np.asarray(r.prefill_time(b, c), float) / g.prefill_s.to_numpy() - 1)
    dec = np.abs(np.asarray(r.decode_step_time(b, c), float) / g.decode_step_s.to_numpy() - 1)
    large = b * c >= 4096
    assert np.median(dec) < 0.12 and np.median(pre) < 0.15
    assert np.median(pre[large]) < 0.10 and np.median(dec[large]) < 0.10
