"""KV-cache memory: how many tokens a replica (one GPU, or tp GPUs) can hold (eta of Paper 2)."""
from __future__ import annotations

from dataclasses import dataclass

GB = 1e9  # memory sizes are decimal gigabytes, as GPU vendors quote them


@dataclass(frozen=True)
class MemoryModel:
    """Token capacity of one replica of ``tp`` GPUs from their memory and the model's shape.

    KV bytes per token = 2 (K and V) x layers x KV heads x head dim x bytes per element.
    eta = (tp x GPU memory - weights) x (1 - reserve) / KV bytes per token.

    ``weights_gb`` is the whole model's weights, split over the replica's GPUs; tensor
    parallelism also splits the KV heads, so the GPUs' free memory adds up
    (docs/cluster.md#tensor-parallelism). ``tp = 1``: one GPU, the formula of Paper 2.
    """

    gpu_mem_gb: float
    weights_gb: float
    reserve_frac: float
    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    tp: int = 1

    @classmethod
    def from_config(cls, cfg) -> MemoryModel:
        return cls(cfg.gpu_mem_gb, cfg.weights_gb, cfg.mem_reserve_frac, cfg.kv_layers,
                   cfg.kv_heads, cfg.head_dim, cfg.kv_dtype_bytes, cfg.tp)

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def eta(self) -> int:
        """KV tokens that fit on one otherwise idle replica."""
        free = (self.tp * self.gpu_mem_gb - self.weights_gb) * GB * (1.0 - self.reserve_frac)
        return int(free // self.kv_bytes_per_token)

    @staticmethod
    def padded_tokens(batch: int, max_prompt: int, max_output: int) -> int:
        """KV tokens a run-to-completion batch holds at its end: every sequence is padded."""
        return batch * (max_prompt + max_output)
