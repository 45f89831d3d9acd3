"""batchlab: a simulator and web explorer of batching schedulers for LLM inference.

The packages: :mod:`batchlab.core` (the engines, metrics, capacity, sweeps, planner),
:mod:`batchlab.workloads` (traces and synthetic traffic), :mod:`batchlab.calibration` (latency grids
measured on a GPU), :mod:`batchlab.store` (the results store) and :mod:`batchlab.webapp` (the explorer);
:mod:`batchlab.cli` is the command line (``batchlab`` or ``python -m batchlab``).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchlab")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
