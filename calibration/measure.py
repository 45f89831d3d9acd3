"""Measure a latency grid on this machine with torch + transformers.

For every (batch size, context length) cell the tool builds ``batch x context``
random token ids and times, after ``warmup`` untimed runs, ``repeats`` runs of:

* **prefill**: one forward pass over all the prompts (logits for the last
  position only, as serving engines do), producing the KV cache;
* **decode**: ``decode_steps`` further forward passes of one token per
  sequence with that cache. A run's decode time is the median of its steps,
  whose cache holds ``context .. context+decode_steps-1`` tokens (a slight
  upward bias for the cell's context when ``decode_steps`` is large).

Each timed region is bracketed by device synchronisation
(``torch.cuda.synchronize()`` on CUDA); a cell's value is the median over the
repeats. On CUDA ``peak_mem_gib`` is ``torch.cuda.max_memory_allocated`` during
the cell's timed runs (weights included); on CPU it is left empty.
``kv_cache_gib`` is computed from the model shape for ``context + decode_steps``
tokens per sequence. A cell that runs out of memory is recorded as missing;
so is every cell with both batch and context at least those of a failed cell
(skipped, as it would fail too), and the sweep goes on.

``model`` is a local model directory (``config.json``; weights are loaded if
present, else random) or a bundled architecture (:mod:`calibration.archs`,
random weights: latency does not depend on weight values). Nothing is ever
downloaded: ``HF_HUB_OFFLINE=1`` is set when unset, before transformers is
imported, and files are opened with ``local_files_only``.

torch and transformers are imported inside the functions here only.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from batchlab.workloads.fields import shown

from .archs import bundled_archs, load_arch
from .schema import MAX_BATCH_SIZE, MAX_CONTEXT_LEN, Grid
from .validate import grid_from_table

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16)
DEFAULT_CONTEXT_LENS = (128, 256, 512, 1024, 2048)
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def measure_grid(model: str, device: str = "cpu", dtype: str = "float32",
                 batch_sizes: list[int] | None = None, context_lens: list[int] | None = None,
                 repeats: int = 3, warmup: int = 1, threads: int | None = None,
                 decode_steps: int = 8, progress: bool = True, name: str | None = None,
                 seed: int = 0) -> Grid:
    """Time prefill and decode steps over ``batch_sizes x context_lens`` and return the grid.

    ``device`` is ``"cpu"`` or ``"cuda"``/``"cuda:N"``; ``dtype`` one of :data:`DTYPES`;
    ``threads`` sets ``torch.set_num_threads`` for the sweep (restored afterwards).
    Defaults: :data:`DEFAULT_BATCH_SIZES` x :data:`DEFAULT_CONTEXT_LENS`. The grid's
    metadata records its name (``name``, default :func:`default_grid_name`), the model,
    device, dtype, ``tp`` (1: one device), versions, time and settings.
    Raises ``ValueError`` for bad arguments, :class:`TorchMissing` without torch or
    transformers, :class:`~calibration.schema.GridError` if too few cells could be measured.
    """
    batch_sizes, context_lens = check_arguments(model, device, dtype, batch_sizes, context_lens, repeats, warmup,
                                                threads, decode_steps)
    require_torch()
    import torch

    dev = _device(torch, device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(seed)
        net, info = load_model(model, dev, getattr(torch, DTYPES[dtype]), seed)
        rows, failed, skipped = _sweep(torch, net, dev, batch_sizes, context_lens, repeats, warmup,
                                       decode_steps, info, progress)
        meta = _meta(torch, model, dev, DTYPES[dtype], repeats, warmup, decode_steps, info, failed, skipped)
    finally:
        torch.set_num_threads(old_threads)
    table = pd.DataFrame(rows)
    if table["peak_mem_gib"].isna().all():
        table = table.drop(columns="peak_mem_gib")
    name = name or default_grid_name(model, dev.type, dtype)
    return grid_from_table(table, {"name": name, **meta}, name)


LIMITS = {"repeats": (1, 1000), "warmup": (0, 1000), "decode_steps": (1, 4096), "threads": (1, 1024)}
DEVICE_RE = re.compile(r"cpu|cuda(:\d{1,3})?")


def check_arguments(model: str, device: str, dtype: str, batch_sizes=None, context_lens=None, repeats: int = 3,
                    warmup: int = 1, threads: int | None = None, decode_steps: int = 8) -> tuple[list, list]:
    """Check :func:`measure_grid`'s arguments without importing torch (so a typo costs no model
    load and no measuring); returns the sorted batch sizes and context lengths. ValueError names
    the first bad argument."""
    check_model(model)
    if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {shown(device)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {shown(dtype)}")
    values = {"repeats": repeats, "warmup": warmup, "decode_steps": decode_steps}
    if threads is not None:  # None: torch's own choice
        values["threads"] = threads
    for label, value in values.items():
        low, high = LIMITS[label]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{label} must be a whole number from {low:,} to {high:,}, got {shown(value)}")
    return (_sizes(batch_sizes or DEFAULT_BATCH_SIZES, "batch_sizes", MAX_BATCH_SIZE),
            _sizes(context_lens or DEFAULT_CONTEXT_LENS, "context_lens", MAX_CONTEXT_LEN))


def check_model(model: str) -> None:
    """ValueError unless ``model`` is a local directory with config.json or a bundled architecture."""
    path = Path(model).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long to be a path
        is_dir = False
    if is_dir:
        if not (path / "config.json").is_file():
            raise ValueError(f"{shown(str(path))} has no config.json")
    elif model not in bundled_archs():
        raise ValueError(f"model {shown(model)} is neither a local directory with config.json nor a bundled "
                         f"architecture ({', '.join(bundled_archs())})")


def default_grid_name(model: str, device: str, dtype: str) -> str:
    """MODEL-DEVICE-DTYPE, e.g. ``tiny-cpu-float32`` (the directory name for a local model;
    ``cuda:1`` counts as ``cuda``; ``dtype`` aliases as in :data:`DTYPES`)."""
    return f"{Path(model).name}-{device.split(':')[0]}-{DTYPES.get(dtype, dtype)}"


class TorchMissing(RuntimeError):
    """torch or transformers cannot be imported; the message says how to install them."""


INSTALL_HINT = "pip install -e '.[calibrate]'"


def require_torch() -> None:
    """Import torch and transformers (offline: ``HF_HUB_OFFLINE=1`` unless set), or raise
    :class:`TorchMissing` naming the missing packages and :data:`INSTALL_HINT`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    missing = []
    for module in ("torch", "transformers"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise TorchMissing(f"the calibration tool needs {' and '.join(missing)} (batchlab[calibrate]), not installed "
                           f"in this Python: pip install 'batchlab[calibrate]' (in a checkout: {INSTALL_HINT})")


def _sizes(values, label: str, high: int) -> list[int]:
    if any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
        raise ValueError(f"{label} must be whole numbers >= 1, got {shown(list(values))}")
    if max(values) > high:
        raise ValueError(f"{label} must be at most {high:,} (the grid format's limit), got {max(values):,}")
    out = sorted({int(v) for v in values})
    if len(out) < 2:
        raise ValueError(f"{label} needs at least 2 distinct values (a grid needs 2 x 2 cells), got {out}")
    return out


def _device(torch, device: str):
    """The torch device of a checked ``device`` string (:data:`DEVICE_RE`), if this machine has it."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device} requested but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s), numbered from 0")
    return dev


# ---------------------------------------------------------------- model

def load_model(model: str, device, dtype, seed: int = 0):
    """Build the network on ``device`` in eval mode; returns (module, facts dict).

    A local directory's weights are loaded when present (``*.safetensors`` or
    ``pytorch_model*.bin``); otherwise the architecture is initialised with
    random normal(0, 0.02) weights (norm weights 1, biases 0).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    check_model(model)
    path = Path(model).expanduser()
    if path.is_dir():
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
        source = f"local directory {path}, " + ("weights loaded" if weights else "random weights")
    else:
        fields = load_arch(model)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        weights = False
        source = f"bundled architecture {model}, random weights"
    if weights:
        net = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **{dtype_kw: dtype}).to(device)
    else:
        with torch.device(device), _no_init_weights():
            net = AutoModelForCausalLM.from_config(config, **{dtype_kw: dtype})
        gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            for pname, p in net.named_parameters():
                if p.ndim > 1:
                    p.normal_(0.0, 0.02, generator=gen)
                elif "norm" in pname:
                    p.fill_(1.0)
                else:
                    p.zero_()
    net.eval()
    return net, {"source": source, "params": sum(p.numel() for p in net.parameters()),
                 "kv_bytes_per_token": _kv_bytes_per_token(net.config, dtype),
                 "vocab_size": int(net.config.vocab_size), "forward": _forward_names(net)}


def _no_init_weights():
    """transformers' context that skips weight initialisation (random fill follows), if available."""
    for module in ("transformers.initialization", "transformers.modeling_utils"):
        with contextlib.suppress(ImportError, AttributeError):
            return __import__(module, fromlist=["no_init_weights"]).no_init_weights()
    return contextlib.nullcontext()


def _kv_bytes_per_token(config, dtype) -> int | None:
    """Bytes of K and V per token per sequence over all layers, from the config shape."""
    import torch

    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return 2 * cfg.num_hidden_layers * kv_heads * head_dim * torch.finfo(dtype).bits // 8
    except AttributeError:
        return None


def _forward_names(net) -> dict:
    """Keyword names for the KV cache and last-logits-only arguments (they differ across versions)."""
    import inspect

    params = inspect.signature(net.forward).parameters
    cache = "cache" if "cache" in params else "past_key_values"
    logits = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    return {"cache": cache, "logits": logits}


# ---------------------------------------------------------------- timing

def _sweep(torch, net, dev, batch_sizes, context_lens, repeats, warmup, decode_steps, info, progress):
    from tqdm.auto import tqdm

    rows, failed, skipped = [], [], []
    cells = [(b, c) for b in batch_sizes for c in context_lens]
    with tqdm(total=len(cells), disable=not progress, desc="calibrating", unit="cell") as bar:
        for b, c in cells:
            bar.set_postfix_str(f"batch {b} x context {c}")
            row = {"batch_size": b, "context_len": c, "prefill_s": None, "decode_step_s": None,
                   "peak_mem_gib": None, "kv_cache_gib": None}
            kv = info["kv_bytes_per_token"]
            if kv:
                row["kv_cache_gib"] = b * (c + decode_steps) * kv / 2**30
            if any(b >= fb and c >= fc for fb, fc in failed):
                skipped.append((b, c))
            else:
                result = _try_cell(torch, net, dev, b, c, repeats, warmup, decode_steps, info)
                if result is None:
                    failed.append((b, c))
                    _free(torch, dev)
                else:
                    row["prefill_s"], row["decode_step_s"], row["peak_mem_gib"] = result
            rows.append(row)
            bar.update()
    return rows, failed, skipped


def _try_cell(torch, net, dev, b, c, repeats, warmup, decode_steps, info):
    """(prefill s, decode step s, peak GiB or None), or None when the cell ran out of memory."""
    try:
        return _time_cell(torch, net, dev, b, c, repeats, warmup, decode_steps, info)
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not _is_oom(torch, e):
            raise
    return None  # outside the except block, so the traceback's tensors can be freed


def _is_oom(torch, e: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", ())
    text = str(e).lower()
    return isinstance(e, oom_type) or "out of memory" in text or "can't allocate memory" in text


def _free(torch, dev) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _time_cell(torch, net, dev, b, c, repeats, warmup, decode_steps, info):
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    names = info["forward"]
    extra = {names["logits"]: 1} if names["logits"] else {}
    ids = torch.randint(0, info["vocab_size"], (b, c), device=dev)
    nxt = torch.randint(0, info["vocab_size"], (decode_steps, b, 1), device=dev)

    def run():
        sync()
        t0 = time.perf_counter()
        out = net(input_ids=ids, use_cache=True, **extra)
        sync()
        prefill = time.perf_counter() - t0
        cache = out[names["cache"]]
        del out
        steps = []
        for s in range(decode_steps):
            t0 = time.perf_counter()
            out = net(input_ids=nxt[s], use_cache=True, **{names["cache"]: cache}, **extra)
            sync()
            steps.append(time.perf_counter() - t0)
            cache = out[names["cache"]]
            del out
        del cache
        return prefill, statistics.median(steps)

    with torch.inference_mode():
        for _ in range(warmup):
            run()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        timed = [run() for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return statistics.median(t[0] for t in timed), statistics.median(t[1] for t in timed), peak


# ---------------------------------------------------------------- metadata

def _meta(torch, model, dev, dtype, repeats, warmup, decode_steps, info, failed, skipped) -> dict:
    import transformers

    cells = lambda cs: "; ".join(f"{b}x{c}" for b, c in cs) or "none"  # noqa: E731
    return {
        "model": model,
        "model_source": info["source"],
        "params": str(info["params"]),
        "device": _device_name(torch, dev),
        "device_type": dev.type,
        "dtype": dtype,
        "tp": "1",   # one device: this tool does not measure tensor-parallel replicas
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()) if dev.type == "cpu" else "n/a",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": str(repeats),
        "warmup": str(warmup),
        "decode_steps": str(decode_steps),
        "oom_cells": cells(failed),
        "skipped_cells": cells(skipped),
        "source": "batchlab calibration.measure (torch + transformers, eager forward passes)",
        "notes": ("prefill_s: median over repeats of one forward of batch x context random ids (last-position "
                  "logits); decode_step_s: median over repeats of the median of decode_steps one-token steps "
                  "with the KV cache; peak_mem_gib: torch.cuda.max_memory_allocated (cuda only); "
                  "kv_cache_gib: computed for context+decode_steps tokens"),
    }


def _device_name(torch, dev) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"
