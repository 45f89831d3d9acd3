"""The measuring tool: a real (tiny) sweep on CPU, OOM handling, argument checks, bundled archs."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchlab.calibration import measure, parse_grid
from batchlab.calibration.archs import bundled_archs, load_arch

REPO = Path(__file__).resolve().parents[1]
FAST = dict(batch_sizes=[1, 2], context_lens=[8, 16], repeats=2, warmup=1, decode_steps=3, progress=False)


def need_torch():
    pytest.importorskip("torch", reason="torch is not installed (pip install torch); the measuring tool needs it")
    pytest.importorskip("transformers", reason="transformers is not installed; the measuring tool needs it")


def test_bundled_architectures_have_real_shapes():
    archs = bundled_archs()
    assert {"tiny", "qwen2.5-0.5b", "qwen2.5-1.5b", "llama-3.2-1b", "qwen3-4b"} <= set(archs)
    q = load_arch("qwen2.5-0.5b")
    assert (q["hidden_size"], q["num_hidden_layers"], q["num_attention_heads"], q["num_key_value_heads"],
            q["intermediate_size"], q["vocab_size"]) == (896, 24, 14, 2, 4864, 151936)
    assert load_arch("llama-3.2-1b")["rope_scaling"]["rope_type"] == "llama3"
    assert not any(k.startswith("_") for k in load_arch("tiny"))
    for path in archs.values():
        assert "model_type" in json.loads(path.read_text())
    with pytest.raises(KeyError, match="tiny"):
        load_arch("gpt-17")


@pytest.mark.parametrize("kwargs,words", [
    (dict(batch_sizes=[1]), "at least 2 distinct"),
    (dict(context_lens=[8, 0]), "whole numbers >= 1"),
    (dict(context_lens=[8, 100_000_001]), "at most 100,000,000"),
    (dict(batch_sizes=[1, 1_000_001]), "at most 1,000,000"),
    (dict(batch_sizes=[1, 2.5]), "whole numbers >= 1"),
    (dict(repeats=0), "repeats must be"),
    (dict(decode_steps=0), "decode_steps must be"),
    (dict(dtype="int8"), "dtype must be"),
    (dict(threads=0), "threads must be"),
])
def test_bad_arguments_fail_before_any_work(kwargs, words):
    with pytest.raises(ValueError, match=words):
        measure.measure_grid("tiny", **{**FAST, **kwargs})


def test_package_and_core_import_without_torch():
    code = ("import sys, calibration, calibration.measure, calibration.schema, core.latency_grid; "
            "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_tiny_model_on_cpu_gives_a_valid_grid(monkeypatch):
    need_torch()
    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    threads = torch.get_num_threads()
    grid = measure.measure_grid("tiny", device="cpu", threads=1, **FAST)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert torch.get_num_threads() == threads  # restored
    data = grid.to_csv_bytes()
    assert grid.sha256 == hashlib.sha256(data).hexdigest()
    again = parse_grid(data)
    t = again.table
    assert list(zip(t["batch_size"], t["context_len"])) == [(1, 8), (1, 16), (2, 8), (2, 16)]
    assert t["prefill_s"].notna().all() and t["decode_step_s"].notna().all()  # every cell measured (in range)
    assert "peak_mem_gib" not in t.columns  # not measured on CPU
    # tiny: 2 layers x 2 KV heads x head_dim 16 x K,V x 4 bytes = 512 bytes per token
    assert t["kv_cache_gib"].tolist() == [b * (c + 3) * 512 / 2**30 for b, c in zip(t["batch_size"], t["context_len"])]
    meta = again.meta
    for key in ("model", "device", "dtype", "torch", "transformers", "measured_at", "repeats", "warmup",
                "decode_steps", "params"):
        assert meta[key], key
    assert meta["model"] == "tiny" and meta["dtype"] == "float32" and meta["threads"] == "1"
    assert meta["params"] == str(sum(p.numel() for p in measure.load_model("tiny", torch.device("cpu"),
                                                                            torch.float32)[0].parameters()))
    assert meta["oom_cells"] == "none" and meta["torch"] == torch.__version__
    assert grid.name == "tiny-cpu-float32" and meta["name"] == "tiny-cpu-float32"  # the file carries its name


def test_out_of_memory_cells_are_missing_and_the_sweep_goes_on(monkeypatch):
    need_torch()
    real = measure._time_cell
    seen = []

    def fake(torch, net, dev, b, c, *rest):
        seen.append((b, c))
        if b == 4 and c == 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(torch, net, dev, b, c, *rest)

    monkeypatch.setattr(measure, "_time_cell", fake)
    grid = measure.measure_grid("tiny", **{**FAST, "batch_sizes": [1, 2, 4], "context_lens": [8, 16]})
    assert (4, 16) not in seen  # skipped: at least as large as a failed cell
    t = grid.table
    missing = t[t["prefill_s"].isna()]
    assert list(zip(missing["batch_size"], missing["context_len"])) == [(4, 8), (4, 16)]
    assert grid.meta["oom_cells"] == "4x8" and grid.meta["skipped_cells"] == "4x16"
    assert t["decode_step_s"].notna().sum() == 4

    def broken(*args):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(measure, "_time_cell", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        measure.measure_grid("tiny", **FAST)


def test_local_model_directory_random_and_loaded_weights(tmp_path):
    need_torch()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = load_arch("tiny")
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    shape_only = tmp_path / "shape"
    config.save_pretrained(shape_only)
    grid = measure.measure_grid(str(shape_only), **FAST)
    assert grid.meta["model_source"].endswith("random weights") and grid.name == "shape-cpu-float32"

    with_weights = tmp_path / "weights"
    AutoModelForCausalLM.from_config(config).save_pretrained(with_weights)
    net, info = measure.load_model(str(with_weights), torch.device("cpu"), torch.float32)
    assert info["source"].endswith("weights loaded")
    saved = AutoModelForCausalLM.from_pretrained(with_weights)
    assert torch.equal(net.model.embed_tokens.weight, saved.model.embed_tokens.weight)

    with pytest.raises(ValueError, match="neither a local directory"):
        measure.measure_grid(str(tmp_path / "nothing-here"), **FAST)


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(measure.TorchMissing, match=r"needs torch\b.*pip install -e '\.\[calibrate\]'"):
        measure.measure_grid("tiny", **FAST)


@pytest.mark.parametrize("args, name", [
    (("tiny", "cpu", "float32"), "tiny-cpu-float32"),
    (("tiny", "cuda:1", "bf16"), "tiny-cuda-bfloat16"),
    (("/models/Qwen2.5-1.5B", "cuda", "fp16"), "Qwen2.5-1.5B-cuda-float16"),
])
def test_default_grid_name(args, name):
    assert measure.default_grid_name(*args) == name
