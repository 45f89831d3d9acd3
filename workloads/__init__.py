"""Request workloads: traces (BurstGPT, Mooncake, Azure, Splitwise/Vidur, vllm bench, mapped CSVs) and their
export, synthetic generators, predictors, the disk memo layer.

The names below are imported on first use (building a workload needs numpy; a flag does not).
"""
from .lazy import lazy_exports

_EXPORTS = {
    "build_workload": ".build", "load_trace_bytes": ".build", "MAX_UPLOAD_BYTES": ".burstgpt",
    "TraceData": ".burstgpt", "bundled_traces": ".burstgpt", "load_burstgpt": ".burstgpt", "cache_stats": ".cache",
    "clear_cache": ".cache", "memoize": ".cache", "SpecError": ".spec", "WorkloadSpec": ".spec",
    "spec_fields": ".spec", "Workload": ".workload", "WorkloadError": ".workload", "PrefixKeys": ".workload",
    "load_mooncake": ".mooncake", "detect_format": ".trace_formats", "load_trace": ".trace_formats",
    "export_workload": ".export",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
