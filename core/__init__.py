"""batchlab's simulator: configuration, latency and memory models, controllers, engine, metrics."""
from .config import MODES, ConfigError, SimConfig
from .result import RunResult
from .simulation import build_latency_model, run_identity, simulate

__all__ = ["MODES", "ConfigError", "RunResult", "SimConfig", "build_latency_model", "run_identity", "simulate"]
