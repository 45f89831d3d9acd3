"""Model and GPU catalogues: a model's weights and KV shape from its ``config.json``, a GPU's datasheet.

Models are ``config.json`` files (bundled under ``core/catalogue/models``, or a user's local file
or directory); GPUs are ``core/catalogue/gpus.json``. docs/hardware.md has the tables, sources and
formulas. Everything here is pure data and arithmetic: no network, no torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from batchlab.core.memory import GB

CATALOGUE = Path(__file__).resolve().parent / "catalogue"
MODELS_DIR = CATALOGUE / "models"
GPUS_FILE = CATALOGUE / "gpus.json"
PRICES_FILE = CATALOGUE / "gpu_prices.json"
MAX_CONFIG_BYTES = 1 << 20
WEB_ENV = "BATCHLAB_WEB"   # set in the web app's processes: a model is a bundled name, never a server path
# torch_dtype of a config.json -> bytes per element (weights and, by default, the KV cache)
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8_e4m3fn": 1, "float8_e5m2": 1}


class CatalogueError(ValueError):
    """An unknown model or GPU name, or a config.json that cannot be read as a model."""


def bundled_models() -> dict[str, Path]:
    """Catalogue model names (e.g. ``"llama-3.1-8b"``) and their ``config.json`` files."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.json"))}


def is_model_path(model: str) -> bool:
    """A ``--model`` value names a local file or directory when it has a path separator or ends in ``.json``;
    otherwise it is a catalogue name."""
    return "/" in model or "\\" in model or model.endswith(".json") or model.startswith("~")


def read_model_config(model: str) -> dict:
    """The fields of ``model``'s config.json (keys starting with ``_`` are notes and are dropped).

    ``model``: a catalogue name (case-insensitive), or a local ``config.json`` or a directory holding one.
    """
    if "://" in model:
        raise CatalogueError(f"model {model!r} is a URL: give a catalogue name or a local config.json "
                             "(batchlab never downloads)")
    if is_model_path(model) and os.environ.get(WEB_ENV):
        raise CatalogueError(f"a web page takes a bundled model by name ({', '.join(bundled_models())}), never "
                             "a path on the server")
    if is_model_path(model):
        path = Path(model).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise CatalogueError(f"model {model!r}: no such file {str(path)!r} (a local config.json or a "
                                 "directory with one)")
    else:
        models = bundled_models()
        path = models.get(model.strip().lower())
        if path is None:
            raise CatalogueError(f"unknown model {model!r}; known: {', '.join(models)} (or a local path to a "
                                 "config.json or its directory)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CatalogueError(f"{str(path)!r} is over {MAX_CONFIG_BYTES:,} bytes: not a model's config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"{str(path)!r} must hold a JSON object (a model's config.json)")
    if "text_config" in data and isinstance(data["text_config"], dict):   # multimodal wrappers
        data = {**data["text_config"], **{k: v for k, v in data.items() if k == "torch_dtype"}}
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass(frozen=True)
class ModelArch:
    """The shape facts of a decoder-only transformer that fix its weights and its KV cache."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    num_experts: int = 0            # routed experts per MoE layer (0: dense MLP)
    experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0   # one shared expert with a sigmoid gate (Qwen MoE)
    sliding_window: int | None = None          # recorded; capacity is computed as full attention
    dtype_bytes: int = 2

    @classmethod
    def from_config(cls, name: str, cfg: dict) -> ModelArch:
        """Read the shape from a config.json's fields; CatalogueError naming a missing or bad field."""
        def num(key: str, default=None, low: int = 1) -> int:
            value = cfg.get(key)
            value = default if value is None else value
            if value is None:
                raise CatalogueError(f"model {name!r}: config.json has no {key!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise CatalogueError(f"model {name!r}: {key!r} must be a whole number >= {low}, got {value!r}")
            return value

        hidden, heads = num("hidden_size"), num("num_attention_heads")
        head_dim = cfg.get("head_dim")
        if head_dim is None:
            if hidden % heads:
                raise CatalogueError(f"model {name!r}: no 'head_dim' and hidden_size {hidden} is not a multiple "
                                     f"of num_attention_heads {heads}")
            head_dim = hidden // heads
        experts = cfg.get("num_local_experts", cfg.get("num_experts")) or 0
        if cfg.get("kv_lora_rank") or cfg.get("n_routed_experts"):
            raise CatalogueError(f"model {name!r}: multi-head latent attention / DeepSeek MoE configs are not "
                                 "modelled (their KV cache is not 2 x layers x heads x head_dim)")
        if cfg.get("mlp_only_layers") or cfg.get("decoder_sparse_step", 1) != 1:
            raise CatalogueError(f"model {name!r}: MoE configs mixing dense and sparse layers are not modelled")
        dtype = cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))
        if dtype not in DTYPE_BYTES:
            raise CatalogueError(f"model {name!r}: torch_dtype {dtype!r} not one of {', '.join(DTYPE_BYTES)}")
        window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
        arch = cls(
            name=name, hidden_size=hidden, num_layers=num("num_hidden_layers"), num_heads=heads,
            num_kv_heads=num("num_key_value_heads", heads), head_dim=num("head_dim", head_dim),
            intermediate_size=num("intermediate_size"), vocab_size=num("vocab_size"),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") in ("qwen2", "qwen2_moe"))),
            qk_norm=cfg.get("model_type") in ("qwen3", "qwen3_moe"),
            num_experts=num("num_local_experts" if "num_local_experts" in cfg else "num_experts", 0, 0),
            experts_per_tok=num("num_experts_per_tok", 0, 0) if experts else 0,
            moe_intermediate_size=(num("moe_intermediate_size", cfg.get("intermediate_size"))
                                   if experts else 0),
            shared_expert_intermediate_size=num("shared_expert_intermediate_size", 0, 0) if experts else 0,
            sliding_window=window if isinstance(window, int) and not isinstance(window, bool) else None,
            dtype_bytes=DTYPE_BYTES[dtype])
        if heads % arch.num_kv_heads:
            raise CatalogueError(f"model {name!r}: num_attention_heads {heads} is not a multiple of "
                                 f"num_key_value_heads {arch.num_kv_heads}")
        if experts and not 1 <= arch.experts_per_tok <= experts:
            raise CatalogueError(f"model {name!r}: num_experts_per_tok must be from 1 to the {experts} experts, "
                                 f"got {arch.experts_per_tok}")
        return arch

    # ----------------------------------------------------------- parameters
    def _layer_params(self, experts: int) -> int:
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if self.qkv_bias else 0)
        attn += 2 * self.head_dim if self.qk_norm else 0
        if self.num_experts:
            mlp = experts * 3 * h * self.moe_intermediate_size + h * self.num_experts   # experts + router
            if self.shared_expert_intermediate_size:
                mlp += 3 * h * self.shared_expert_intermediate_size + h               # shared expert + its gate
        else:
            mlp = 3 * h * self.intermediate_size   # gate, up, down
        return attn + mlp + 2 * h                  # two RMSNorms

    def _outer_params(self) -> int:
        emb = self.vocab_size * self.hidden_size
        return emb * (1 if self.tie_word_embeddings else 2) + self.hidden_size   # + lm_head, final norm

    @property
    def params(self) -> int:
        """Parameters in all: embeddings, attention (GQA), MLP or experts and router, norms, lm_head unless tied."""
        return self.num_layers * self._layer_params(self.num_experts) + self._outer_params()

    @property
    def active_params(self) -> int:
        """Parameters one token uses (MoE: its top-k experts; dense: all)."""
        k = self.experts_per_tok if self.num_experts else 0
        return self.num_layers * self._layer_params(k) + self._outer_params()

    def weights_gb(self, dtype_bytes: int | None = None) -> float:
        """Weight memory in GB (1e9 bytes) at ``dtype_bytes`` per parameter (default: the config's dtype)."""
        return self.params * (dtype_bytes or self.dtype_bytes) / GB

    def kv_bytes_per_token(self, dtype_bytes: int | None = None) -> int:
        """2 (K and V) x layers x KV heads x head_dim x bytes, as if every layer attended to the full context."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * (dtype_bytes or self.dtype_bytes)


def model_arch(model: str) -> ModelArch:
    """The :class:`ModelArch` of a catalogue name or a local config.json / directory."""
    label = model if is_model_path(model) else model.strip().lower()
    return ModelArch.from_config(label, read_model_config(model))


@dataclass(frozen=True)
class GPU:
    """One GPU's datasheet figures (dense, no sparsity). ``fp8_tflops`` is None where the GPU has no FP8."""

    name: str
    label: str
    memory_gb: float
    bandwidth_gbps: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect_gbps: float     # per direction, per GPU
    interconnect: str
    source: str

    def usable_gb(self, utilization: float) -> float:
        """vLLM's budget for weights, activations and KV cache: gpu_memory_utilization x total memory."""
        return utilization * self.memory_gb


def gpu_catalogue() -> dict[str, GPU]:
    """Every catalogue GPU by its lower-case name."""
    rows = json.loads(GPUS_FILE.read_text())["gpus"]
    return {r["name"]: GPU(**r) for r in rows}


GPU_ALIASES = {"h100-sxm": "h100", "h100-80gb": "h100", "a100": "a100-80gb", "mi300": "mi300x"}


def gpu_spec(name: str) -> GPU:
    """The catalogue GPU ``name`` (case-insensitive; aliases: h100-sxm, a100 = a100-80gb)."""
    gpus = gpu_catalogue()
    key = name.strip().lower()
    key = GPU_ALIASES.get(key, key)
    if key not in gpus:
        raise CatalogueError(f"unknown GPU {name!r}; known: {', '.join(gpus)}")
    return gpus[key]



@dataclass(frozen=True)
class GpuPrice:
    """A catalogue GPU's default on-demand price in USD per GPU-hour, where it comes from and when."""

    name: str
    price_per_hour: float
    price_source: str
    price_date: str
    approximate: bool


def gpu_prices() -> dict[str, GpuPrice]:
    """Every catalogue GPU's default price by its lower-case name (``core/catalogue/gpu_prices.json``)."""
    rows = json.loads(PRICES_FILE.read_text())["prices"]
    return {r["name"]: GpuPrice(**r) for r in rows}
