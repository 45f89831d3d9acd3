"""Model architectures (``config.json`` shapes) for the measuring tool.

The real models are batchlab's model catalogue (``core/catalogue/models``, the same files
``--model`` reads: docs/hardware.md); this folder adds test-only shapes such as ``tiny``.
Keys starting with ``_`` are notes, not config.
"""
from __future__ import annotations

import json
from pathlib import Path

from batchlab.core.hardware import bundled_models

ARCH_DIR = Path(__file__).resolve().parent


def bundled_archs() -> dict[str, Path]:
    """Architecture names (e.g. ``"qwen2.5-0.5b"``, ``"tiny"``) and their JSON files: the model catalogue and
    this folder's test shapes."""
    return dict(sorted((bundled_models() | {p.stem: p for p in ARCH_DIR.glob("*.json")}).items()))


def load_arch(name: str) -> dict:
    """The config fields of a bundled architecture (notes dropped)."""
    archs = bundled_archs()
    if name not in archs:
        raise KeyError(f"no bundled architecture {name!r}; bundled: {', '.join(archs)}")
    data = json.loads(archs[name].read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}
