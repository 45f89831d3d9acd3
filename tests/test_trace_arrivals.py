"""How a BurstGPT trace's arrivals are timed: recorded timestamps compressed by ``rps_scaling``, or
re-drawn (Poisson, Gamma) at the window's own mean rate times ``rps_scaling``, or at ``rate``."""
from __future__ import annotations

import numpy as np
import pytest

from batchlab.workloads import WorkloadSpec, build_workload

TRACE = "BurstGPT_1_first400"


def arrivals(**changes) -> np.ndarray:
    return build_workload(WorkloadSpec(workload="burstgpt", trace=TRACE, **changes)).arrival


def test_rps_scaling_compresses_the_recorded_timestamps():
    real = arrivals()
    assert real[0] == 0.0 and np.all(np.diff(real) >= 0)
    np.testing.assert_allclose(arrivals(rps_scaling=4.0), real / 4.0, rtol=1e-12)
    own = (len(real) - 1) / real[-1]
    np.testing.assert_allclose(arrivals(rate=3 * own), real / 3.0, rtol=1e-9)   # rate rescales time alike


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
def test_rps_scaling_multiplies_the_rate_of_re_drawn_arrivals(arrival):
    """Re-drawn arrivals come at the window's own mean rate, (n - 1) / span; rps_scaling 4 draws the same
    sequence at four times that rate, exactly what rate = 4 x own asks for."""
    real = arrivals()
    own = (len(real) - 1) / real[-1]
    base = arrivals(arrival=arrival)
    fast = arrivals(arrival=arrival, rps_scaling=4.0)
    np.testing.assert_allclose(fast, base / 4.0, rtol=1e-9)
    np.testing.assert_allclose(fast, arrivals(arrival=arrival, rate=4 * own), rtol=1e-9)
    np.testing.assert_allclose(base, arrivals(arrival=arrival, rate=own), rtol=1e-9)
    drawn = (len(base) - 1) / (base[-1] - base[0])
    assert drawn == pytest.approx(own, rel=0.3)   # one draw of 382 gaps (gamma: CV 1.41, ~7 % per sd)


def test_re_drawn_arrivals_and_prediction_noise_follow_the_workload_seed():
    a, b = (build_workload(WorkloadSpec(workload="burstgpt", trace=TRACE, arrival="poisson", predictor="noisy:0.5",
                                        workload_seed=seed)) for seed in (0, 1))
    np.testing.assert_array_equal(a.prompt, b.prompt)           # the trace's own rows, whatever the seed
    np.testing.assert_array_equal(a.output, b.output)
    assert not np.array_equal(a.arrival, b.arrival) and not np.array_equal(a.predicted, b.predicted)
    again = build_workload(WorkloadSpec(workload="burstgpt", trace=TRACE, arrival="poisson", predictor="noisy:0.5",
                                        workload_seed=1))
    np.testing.assert_array_equal(again.arrival, b.arrival)
    np.testing.assert_array_equal(again.predicted, b.predicted)
