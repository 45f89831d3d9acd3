"""Request workloads: BurstGPT and Mooncake traces, synthetic generators, predictors, the disk memo layer.

The names below are imported on first use (building a workload needs numpy; a flag does not).
"""
from .lazy import lazy_exports

_EXPORTS = {
    "build_workload": ".build", "load_trace_bytes": ".build", "MAX_UPLOAD_BYTES": ".burstgpt",
    "TraceData": ".burstgpt", "bundled_traces": ".burstgpt", "load_burstgpt": ".burstgpt", "cache_stats": ".cache",
    "clear_cache": ".cache", "memoize": ".cache", "SpecError": ".spec", "WorkloadSpec": ".spec",
    "spec_fields": ".spec", "Workload": ".workload", "WorkloadError": ".workload", "PrefixKeys": ".workload",
    "load_mooncake": ".mooncake",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
