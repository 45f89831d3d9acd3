"""The Run and Compare pages' opening hints, read from the configuration so they name the real defaults."""
from __future__ import annotations

from batchlab.core.config import SimConfig
from batchlab.webapp.state import DEFAULT_COMPARE
from batchlab.workloads.spec import SYNTHETIC_RATE, SYNTHETIC_REQUESTS


def _modes(modes) -> str:
    names = [f"`{m}`" for m in modes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def run_hint() -> str:
    """What the Run page's default settings simulate."""
    sim = SimConfig()
    return (f"Choose the settings and press **Run simulation**. The defaults simulate {SYNTHETIC_REQUESTS:,} "
            f"BurstGPT-like requests at {SYNTHETIC_RATE:g} req/s on {sim.gpus} GPUs with {_modes([sim.mode])}.")


def compare_hint() -> str:
    """What the Compare page's default comparison runs."""
    return (f"Pick scheduler modes and press **Run comparison** (defaults: {_modes(DEFAULT_COMPARE)} on "
            f"{SYNTHETIC_REQUESTS:,} synthetic requests at {SYNTHETIC_RATE:g} req/s), or compare runs "
            "already in the store.")
