"""Bundled model architectures (``config.json``-style shapes) for the measuring tool.

Each ``NAME.json`` holds the shape fields of a public model's config
(``model_type``, hidden size, layers, heads, KV heads, intermediate size,
vocabulary, rope settings); keys starting with ``_`` are notes, not config.
"""
from __future__ import annotations

import json
from pathlib import Path

ARCH_DIR = Path(__file__).resolve().parent


def bundled_archs() -> dict[str, Path]:
    """Architecture names (e.g. ``"qwen2.5-0.5b"``, ``"tiny"``) and their JSON files."""
    return {p.stem: p for p in sorted(ARCH_DIR.glob("*.json"))}


def load_arch(name: str) -> dict:
    """The config fields of a bundled architecture (notes dropped)."""
    archs = bundled_archs()
    if name not in archs:
        raise KeyError(f"no bundled architecture {name!r}; bundled: {', '.join(archs)}")
    data = json.loads(archs[name].read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}
