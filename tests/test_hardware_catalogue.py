"""The model and GPU catalogues: sizes against hand-computed values, the config plumbing, local configs, errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batchlab.calibration.archs import bundled_archs, load_arch
from batchlab.cli import cli
from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.hardware import CatalogueError, bundled_models, gpu_catalogue, gpu_spec, model_arch
from batchlab.core.memory import MemoryModel
from batchlab.core.report import hardware_text


def test_llama_3_1_8b_by_hand():
    a = model_arch("llama-3.1-8b")
    emb = 128256 * 4096
    layer = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096   # q, o; k, v (GQA 8 x 128); MLP; norms
    assert a.params == 2 * emb + 32 * layer + 4096 == 8_030_261_248
    assert a.weights_gb() == pytest.approx(16.060522496)
    assert a.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert a.kv_bytes_per_token(1) == 64 * 1024 and a.weights_gb(1) == pytest.approx(8.030261248)


def test_qwen2_5_72b_gqa_with_qkv_bias_by_hand():
    a = model_arch("qwen2.5-72b")
    q, kv = 64 * 128, 8 * 128
    attn = 8192 * q + 2 * 8192 * kv + q * 8192 + (q + 2 * kv)   # + the q, k, v biases
    layer = attn + 3 * 8192 * 29568 + 2 * 8192
    assert a.params == 2 * 152064 * 8192 + 80 * layer + 8192   # untied lm_head
    assert round(a.params / 1e9, 1) == 72.7                      # the model card's 72.7B
    assert a.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2 == 327_680


def test_moe_by_hand():
    m = model_arch("mixtral-8x7b")
    attn, norms = 4096 * 4096 * 2 + 4096 * 1024 * 2, 2 * 4096
    experts = 8 * 3 * 4096 * 14336
    outer = 2 * 32000 * 4096 + 4096
    assert m.params == outer + 32 * (attn + experts + 4096 * 8 + norms) == 46_702_792_704
    assert m.active_params == outer + 32 * (attn + 2 * 3 * 4096 * 14336 + 4096 * 8 + norms)
    assert m.weights_gb() == pytest.approx(2 * 46.702792704)   # every expert stays in memory
    assert m.kv_bytes_per_token() == 131_072
    q = model_arch("qwen3-30b-a3b")   # 128 experts of 768, top 8, q/k norms, 4 KV heads of 128
    layer = (2048 * 4096 * 2 + 2048 * 512 * 2 + 2 * 128) + 128 * 3 * 2048 * 768 + 2048 * 128 + 2 * 2048
    assert q.params == 2 * 151936 * 2048 + 2048 + 48 * layer
    assert (round(q.params / 1e9, 1), round(q.active_params / 1e9, 1)) == (30.5, 3.4)
    assert q.kv_bytes_per_token() == 2 * 48 * 4 * 128 * 2
    s = model_arch("qwen1.5-moe-a2.7b")   # a shared expert with its gate
    assert round(s.params / 1e9, 1) == 14.3 and round(s.active_params / 1e9, 1) == 2.7


def test_every_catalogue_model_reads_and_is_a_calibration_arch():
    names = set(bundled_models())
    assert {"llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b",
            "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "mistral-7b-v0.3", "mixtral-8x7b",
            "qwen3-30b-a3b"} <= names
    assert names | {"tiny"} == set(bundled_archs())
    for name in names:
        a = model_arch(name)
        assert a.num_heads % a.num_kv_heads == 0 and a.sliding_window is None, name
        assert "model_type" in load_arch(name) and "_hf_id" not in load_arch(name)


def test_h100_with_llama_8b_memory_by_hand():
    c = SimConfig(model="llama-3.1-8b", gpu="h100")
    assert (c.gpu_mem_gb, c.weights_gb, c.interconnect_gbps) == (72.0, 16.060522, 450.0)
    assert (c.kv_layers, c.kv_heads, c.head_dim, c.kv_dtype_bytes, c.hidden_size) == (32, 8, 128, 2, 4096)
    eta = MemoryModel.from_config(c).eta
    assert eta == int((72 - 16.060522) * 1e9 * 0.9 // 131072) == 384_105
    assert c.token_budget == 8192   # vLLM's tier for an 80 GB device
    c8 = SimConfig(model="llama-3.1-8b", gpu="h100", gpu_memory_utilization=0.8)
    assert c8.gpu_mem_gb == pytest.approx(64.0) and c8.token_budget == 8192


def test_names_are_case_insensitive_and_canonical():
    c = SimConfig(model=" Llama-3.1-8B ", gpu="H100-SXM")
    assert (c.model, c.gpu) == ("llama-3.1-8b", "h100")
    assert gpu_spec("MI300X").memory_gb == 192 and gpu_spec("a100").name == "a100-80gb"
    assert {"l4", "a10g", "l40s", "a100-40gb", "a100-80gb", "h100", "h200", "b200", "mi300x"} == set(gpu_catalogue())


def test_explicit_values_the_catalogue_sets():
    assert SimConfig(model="llama-3.1-8b", weights_gb=16.060522).weights_gb == 16.060522   # its own value
    with pytest.raises(ConfigError, match=r"weights_gb.*model llama-3.1-8b.*not both"):
        SimConfig(model="llama-3.1-8b", weights_gb=8.0)
    with pytest.raises(ConfigError, match=r"gpu_mem_gb.*gpu h100.*not both"):
        SimConfig(gpu="h100", gpu_mem_gb=40.0)
    with pytest.raises(ConfigError, match=r"kv_layers.*model qwen3-8b"):
        SimConfig(model="qwen3-8b", kv_layers=40)
    # what the catalogue does not set stays the user's
    assert SimConfig(gpu="h100", weights_gb=30.0).weights_gb == 30.0


def test_replace_rederives_and_the_hash_follows():
    base = SimConfig()
    c = SimConfig(model="llama-3.1-8b", gpu="h100")
    other = c.replace(model="qwen2.5-7b", gpu="l40s")
    assert (other.kv_heads, other.hidden_size, other.gpu_mem_gb, other.interconnect_gbps) == (4, 3584, 43.2, 32.0)
    assert c.replace(mode="continuous_static").weights_gb == c.weights_gb
    assert c.replace(gpu_memory_utilization=0.5).gpu_mem_gb == 40.0
    assert SimConfig.from_dict(c.to_dict()) == c
    hashes = {json.dumps(x.relevant_dict(), sort_keys=True) for x in (base, c, other, c.replace(gpu="h200"))}
    assert len(hashes) == 4
    assert "model" in c.relevant_dict() and "gpu_memory_utilization" in c.relevant_dict()
    assert not {"model", "gpu", "gpu_memory_utilization"} & set(base.relevant_dict())   # old hashes unchanged
    # the same figures given by hand are the same simulation but not the same named run
    by_hand = SimConfig(gpu="h100", weights_gb=16.060522)
    assert by_hand.relevant_dict() == {k: v for k, v in c.relevant_dict().items() if k != "model"}


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"^model: unknown model 'gpt-17'; known: .*llama-3.1-8b.*qwen3-30b-a3b"):
        SimConfig(model="gpt-17")
    with pytest.raises(ConfigError, match=r"^gpu: unknown GPU 'h800'; known: l4, a10g, .*mi300x"):
        SimConfig(gpu="h800")
    with pytest.raises(ConfigError, match="URL"):
        SimConfig(model="https://huggingface.co/meta-llama/Llama-3.1-8B/config.json")


def test_too_big_for_the_gpu_names_the_settings():
    with pytest.raises(ConfigError, match=r"weights_gb: must be below gpu_mem_gb x tp \(72 GB\), got 141.1"):
        SimConfig(model="llama-3.1-70b", gpu="h100")
    assert MemoryModel.from_config(SimConfig(model="llama-3.1-70b", gpu="h100", tp=2, gpus=4)).eta > 0


def _write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_local_config_file_and_directory(tmp_path):
    shape = {"hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
             "intermediate_size": 2048, "vocab_size": 1000, "tie_word_embeddings": True}
    path = _write(tmp_path, shape)
    a = model_arch(str(path))
    layer = 1024 * 1024 * 2 + 1024 * 256 * 2 + 3 * 1024 * 2048 + 2 * 1024
    assert (a.head_dim, a.params) == (128, 1000 * 1024 + 1024 + 4 * layer)   # tied: one embedding matrix
    for given in (str(path), str(tmp_path) + "/"):
        c = SimConfig(model=given)
        assert (c.kv_layers, c.kv_heads, c.head_dim, c.hidden_size) == (4, 2, 128, 1024)
        assert c.weights_gb == round(a.params * 2 / 1e9, 6)
    assert hardware_text({"model": str(path), "gpu": "l4"}) == f"{tmp_path.name} on l4, "
    assert hardware_text({"model": None, "gpu": None}) == ""


@pytest.mark.parametrize("content,words", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ({"hidden_size": 64, "num_attention_heads": 4}, "has no 'num_hidden_layers'"),
    ({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": "2", "intermediate_size": 8,
      "vocab_size": 10}, "'num_hidden_layers' must be a whole number"),
    ({"hidden_size": 65, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 8,
      "vocab_size": 10}, "not a multiple of num_attention_heads"),
    ({"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3, "num_hidden_layers": 2,
      "intermediate_size": 8, "vocab_size": 10}, "not a multiple of num_key_value_heads"),
    ({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 8,
      "vocab_size": 10, "kv_lora_rank": 512}, "latent attention"),
    ({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 8,
      "vocab_size": 10, "torch_dtype": "int3"}, "torch_dtype 'int3'"),
])
def test_bad_config_json_is_a_clear_error(tmp_path, content, words):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError, match=r"^model: .*" + words):
        SimConfig(model=str(path))


def test_missing_local_path(tmp_path):
    with pytest.raises(CatalogueError, match="no such file"):
        model_arch(str(tmp_path / "nowhere" / "config.json"))
    with pytest.raises(ConfigError, match="no such file"):
        SimConfig(model=str(tmp_path))   # a folder without config.json


def test_cli_run_with_model_and_gpu():
    res = CliRunner().invoke(cli, ["run", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-requests", "200",
                                   "--no-store"])
    assert res.exit_code == 0, res.output
    assert "continuous_dynamic: llama-3.1-8b on h100, 4 GPU(s)" in res.output
    assert "of 384,105 tokens per replica" in res.output
    bad = CliRunner().invoke(cli, ["run", "--gpu", "h800", "--num-requests", "200", "--no-store"])
    assert bad.exit_code != 0 and "known: l4" in bad.output
    help_text = CliRunner().invoke(cli, ["run", "--help"]).output
    assert all(flag in help_text for flag in ("--model", "--gpu ", "--gpu-memory-utilization"))


def test_parameter_counts_equal_transformers_own():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    for name in ("llama-3.1-8b", "llama-3.2-1b", "qwen2.5-7b", "qwen3-8b", "mistral-7b-v0.3", "mixtral-8x7b",
                 "qwen3-30b-a3b", "qwen1.5-moe-a2.7b"):
        fields = load_arch(name)
        config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
        with torch.device("meta"):   # shapes only: no memory
            net = transformers.AutoModelForCausalLM.from_config(config)
        assert sum(p.numel() for p in net.parameters()) == model_arch(name).params, name
