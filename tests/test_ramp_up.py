"""Ramp-up profiles of synthetic (and re-drawn) arrivals: the rate changes per request from START to END,
as vllm bench serve --ramp-up-strategy linear|exponential does."""
from __future__ import annotations

import numpy as np
import pytest

from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.spec import SpecError
from batchlab.workloads.synthetic import RampUp, arrival_times, parse_ramp_up
from batchlab.workloads.workload import WorkloadError


def vllm_rate(kind: str, start: float, end: float, i: int, n: int) -> float:
    """vLLM 0.33's _get_current_request_rate, written out."""
    progress = i / max(n - 1, 1)
    return start + (end - start) * progress if kind == "linear" else start * (end / start) ** progress


@pytest.mark.parametrize("kind", ["linear", "exponential"])
def test_each_request_has_vllms_rate(kind):
    n = 7
    rates = RampUp(kind, 2.0, 50.0).rates(n)
    np.testing.assert_allclose(rates, [vllm_rate(kind, 2.0, 50.0, i, n) for i in range(n)], rtol=1e-15)
    assert rates[0] == 2.0 and rates[-1] == pytest.approx(50.0, rel=1e-15)
    assert RampUp(kind, 3.0, 9.0).rates(1).tolist() == [3.0]


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
@pytest.mark.parametrize("kind", ["linear", "exponential"])
def test_mean_gaps_follow_the_profile(kind, arrival):
    """200,000 requests, one seed: the mean gap over the first and last tenth, and over every tenth, is
    the mean of 1 / rate over those requests' rates (exponential gaps: std of the mean = the rms of
    1 / rate over sqrt(count); gamma shape 0.5: sqrt(2) times that); within 4 standard errors."""
    n, start, end, shape = 200_000, 1.0, 20.0, 0.5
    ramp = RampUp(kind, start, end)
    t = arrival_times(arrival, n, 99.0, np.random.default_rng(11), shape, ramp=ramp)
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    gaps, expected = np.diff(t), 1.0 / ramp.rates(n)[1:]
    cv = 1.0 if arrival == "poisson" else 1 / np.sqrt(shape)
    tenth = len(gaps) // 10
    for k in range(10):
        part = slice(k * tenth, (k + 1) * tenth)
        se = cv * np.sqrt(np.mean(expected[part] ** 2) / tenth)
        assert abs(gaps[part].mean() - expected[part].mean()) < 4 * se, k
    # the rate at either end, from its first and last 2,000 gaps (1 %), is START and END within 4 standard
    # errors (cv / sqrt(2000): 2.2 %, gamma 3.2 %) plus the ramp's own change over those gaps
    m = 2000
    rates = ramp.rates(n)[1:]
    for window, target in ((slice(0, m), start), (slice(-m, None), end)):
        change = (rates[window].max() - rates[window].min()) / target
        assert 1 / gaps[window].mean() == pytest.approx(target, rel=4 * cv / np.sqrt(m) + change)
    # the two shapes: the linear ramp's rate is half-way at mid-run, the exponential one's is the
    # geometric mean (sqrt(20) = 4.5 req/s), so the middle tenth's mean gap tells them apart
    middle = 1 / gaps[5 * tenth:6 * tenth].mean()
    assert middle == pytest.approx(np.interp(0.55, [0, 1], [start, end]) if kind == "linear"
                                   else start * (end / start) ** 0.55, rel=0.05)


def test_a_ramped_workload_names_its_ramp_and_keeps_old_identities():
    old = WorkloadSpec(num_requests=50, rate=3.0)
    assert "ramp_up" not in old.relevant_dict()
    ramped = WorkloadSpec(num_requests=50, ramp_up=" Linear:1:20 ", arrival="poisson")
    assert ramped.ramp_up == "linear:1:20"
    assert "rate" not in ramped.relevant_dict() and ramped.relevant_dict()["ramp_up"] == "linear:1:20"
    w = build_workload(ramped)
    assert "linear ramp 1 -> 20 req/s" in w.identity["label"]
    assert w.identity != build_workload(ramped.replace(ramp_up="exponential:1:20")).identity
    trace = build_workload(WorkloadSpec(workload="burstgpt", arrival="gamma", ramp_up="exponential:2:8"))
    assert "exponential ramp 2 -> 8 req/s" in trace.identity["label"]
    gaps = np.diff(trace.arrival)
    assert gaps[: len(gaps) // 4].mean() > gaps[-len(gaps) // 4:].mean()


@pytest.mark.parametrize("changes,message", [
    ({"ramp_up": "linear:1"}, "ramp_up: malformed"),
    ({"ramp_up": "step:1:2"}, "ramp_up: malformed"),
    ({"ramp_up": "linear:a:2"}, "ramp_up: 'a'"),
    ({"ramp_up": "linear:0:5"}, "ramp_up: need 0 < START <= END"),
    ({"ramp_up": "exponential:9:5"}, "ramp_up: need 0 < START <= END"),
    ({"ramp_up": "linear:1:inf"}, "ramp_up: 'inf'"),
    ({"ramp_up": "linear:1:5", "rate": 3.0}, "ramp_up: .*rate=3"),
    ({"ramp_up": "linear:1:5", "conversation_turns": 3}, "ramp_up: .*conversation_turns"),
    ({"ramp_up": "linear:1:5", "workload": "burstgpt"}, "ramp_up: .*re-draw"),
    ({"ramp_up": "linear:1:5", "workload": "burstgpt", "arrival": "poisson", "rps_scaling": 2.0},
     "ramp_up: .*rps_scaling"),
])
def test_bad_ramps_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message) as err:
        WorkloadSpec(**changes)
    assert err.value.field == "ramp_up"


def test_a_ramp_too_slow_for_the_clock_is_refused():
    with pytest.raises(WorkloadError, match="ramp_up: .* would span"):
        arrival_times("poisson", 10_000, 1.0, np.random.default_rng(0), ramp=parse_ramp_up("linear:1e-6:1e-6"))


def test_capacity_refuses_a_ramp_and_a_plan_sizes_for_its_mean_rate():
    """A capacity search probes steady rates: a ramp is refused naming it. A plan (without the capacity
    evidence) is for the ramp's offered rate, (n - 1) / span of its arrivals."""
    from batchlab.core.capacity import check_capacity_inputs
    from batchlab.core.config import SimConfig
    from batchlab.core.plan import capacity_spec, offered_rate
    from batchlab.core.sweep import SweepError

    spec = WorkloadSpec(ramp_up="linear:2:14", num_requests=3000, arrival="poisson")
    with pytest.raises(SweepError, match="^ramp_up: capacity probes a steady arrival rate"):
        check_capacity_inputs(SimConfig(), spec, 0.9, 0.05, 1)
    with pytest.raises(SweepError, match="^ramp_up: a capacity search varies a steady arrival rate"):
        capacity_spec(spec, 5.0)
    t = build_workload(spec).arrival
    assert offered_rate(spec) == pytest.approx((len(t) - 1) / (t[-1] - t[0]))
    assert 2 < offered_rate(spec) < 14 and offered_rate(spec.replace(ramp_up=None, rate=7.0)) == 7.0
