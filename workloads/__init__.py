"""Request workloads: BurstGPT traces, synthetic generators, predictors, the disk memo layer."""
from .build import build_workload, load_trace_bytes
from .burstgpt import MAX_UPLOAD_BYTES, TraceData, bundled_traces, load_burstgpt
from .cache import cache_stats, clear_cache, memoize
from .spec import SpecError, WorkloadSpec, spec_fields
from .workload import Workload, WorkloadError

__all__ = [
    "MAX_UPLOAD_BYTES", "SpecError", "TraceData", "Workload", "WorkloadError", "WorkloadSpec",
    "build_workload", "bundled_traces", "cache_stats", "clear_cache", "load_burstgpt",
    "load_trace_bytes", "memoize", "spec_fields",
]
