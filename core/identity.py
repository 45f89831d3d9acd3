"""Run identity: a run is the same run when config, workload, latency model and code agree."""
from __future__ import annotations

import hashlib
import json

# Bump when a change alters simulated results, so stored runs are not served stale.
SIM_VERSION = "5"  # 2: admission without an oracle, out-of-memory evictions, continuous batching;
#                    3: a request of output o emits o tokens (the first from its prefill), resume as vLLM;
#                    4: prefix caching (hit rate and tokens saved in every summary, cached KV in the series);
#                    5: a shared queue's replicas take requests least loaded first (continuous modes, 2+ GPUs)


# Settings that judge a run's results without changing them (core.slo_report): a run stored before is served
# from the store, not recomputed, when only these change.
JUDGEMENT_ONLY = ("slo", "classes")


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_hash(config_dict: dict, workload_identity: dict, latency_identity: dict) -> str:
    """sha256 over the relevant config, the workload and latency identities and SIM_VERSION."""
    blob = canonical_json({"config": config_dict, "workload": workload_identity,
                           "latency": latency_identity, "sim_version": SIM_VERSION})
    return hashlib.sha256(blob.encode()).hexdigest()


def run_identity(config, workload, latency) -> str:
    """The run hash of ``config`` on ``workload`` with the ``latency`` model."""
    simulated = {k: v for k, v in config.relevant_dict().items() if k not in JUDGEMENT_ONLY}
    return run_hash(simulated, workload.identity, latency.identity)
