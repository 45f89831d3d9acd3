"""batchlab's simulator: configuration, latency and memory models, controllers, engines, metrics.

The names below are imported on first use, so a command that only needs the
configuration does not pay for the engines.
"""
from batchlab.workloads.lazy import lazy_exports

_EXPORTS = {"MODES": ".config", "ConfigError": ".config", "SimConfig": ".config", "RunResult": ".result",
            "build_latency_model": ".latency", "run_identity": ".identity", "simulate": ".simulation"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
