"""Synthetic arrivals, length specs and predictors: the statistics they promise."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.predictors import parse_predictor, predict
from batchlab.workloads.spec import SpecError
from batchlab.workloads.synthetic import (
    BURSTGPT_OUTPUT,
    BURSTGPT_PROMPT,
    OUTPUT_MAX,
    PROMPT_MAX,
    arrival_times,
    lognormal_params,
    parse_length_spec,
    sample_lengths,
)

N = 200_000


def gaps(kind, rate, shape=0.5, seed=1, n=N):
    t = arrival_times(kind, n, rate, np.random.default_rng(seed), shape)
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    return np.diff(t)


@pytest.mark.parametrize("rate", [0.5, 2.0, 40.0])
def test_poisson_mean_rate_and_cv(rate):
    g = gaps("poisson", rate)
    assert 1 / g.mean() == pytest.approx(rate, rel=0.02)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("shape", [0.25, 0.5, 1.0, 4.0])
def test_gamma_cv_is_one_over_sqrt_shape(shape):
    g = gaps("gamma", 3.0, shape)
    assert 1 / g.mean() == pytest.approx(3.0, rel=0.02)
    assert g.std() / g.mean() == pytest.approx(1 / math.sqrt(shape), rel=0.04)


def test_built_workload_hits_the_target_rate():
    w = build_workload(WorkloadSpec(num_requests=50_000, rate=7.0, predictor="oracle"))
    assert len(w) == 50_000 and w.arrival[0] == 0.0
    assert w.mean_rate == pytest.approx(7.0, rel=0.03)
    single = build_workload(WorkloadSpec(num_requests=1))
    assert len(single) == 1 and single.arrival[0] == 0.0


def length_sample(text, maximum=PROMPT_MAX, fit=BURSTGPT_PROMPT, seed=3, n=N):
    spec = parse_length_spec(text, "prompt_lengths", maximum, fit)
    return spec, sample_lengths(spec, n, np.random.default_rng(seed), maximum)


@pytest.mark.parametrize("text, mean, std, rel_std", [
    ("fixed:137", 137, 0, 0),
    ("uniform:1:20", 10.5, math.sqrt((20**2 - 1) / 12), 0.02),
    ("exponential:300", 300, 300, 0.03),
    ("geometric:200", 200, math.sqrt(200 * 199), 0.03),
    ("lognormal:500:400", 500, 400, 0.05),
])
def test_length_specs_match_their_moments(text, mean, std, rel_std):
    spec, x = length_sample(text)
    assert x.dtype == np.int64 and x.min() >= 1
    assert spec.moments() == pytest.approx((mean, std))
    assert x.mean() == pytest.approx(mean, rel=0.02)
    assert x.std() == pytest.approx(std, rel=rel_std, abs=1e-9)


def test_uniform_is_inclusive():
    _, x = length_sample("uniform:3:7", n=5000)
    assert set(np.unique(x)) == {3, 4, 5, 6, 7}


@pytest.mark.parametrize("fit, maximum", [(BURSTGPT_PROMPT, PROMPT_MAX), (BURSTGPT_OUTPUT, OUTPUT_MAX)])
def test_burstgpt_lengths_follow_the_whole_trace_figures(fit, maximum):
    _, x = length_sample("burstgpt", maximum, fit)
    assert x.max() <= maximum
    assert x.mean() == pytest.approx(fit[0], rel=0.03)
    assert x.std() == pytest.approx(fit[1], rel=0.15) and x.std() < fit[1]  # a heavy tail clipped at the maximum
    assert np.median(x) < fit[0]  # right-skewed like the trace


def test_lognormal_moment_conversion():
    mu, sigma = lognormal_params(611.0, 782.0)
    assert math.exp(mu + sigma**2 / 2) == pytest.approx(611.0)
    assert math.sqrt((math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2)) == pytest.approx(782.0)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["exponential", "lognormal"]), mean=st.floats(1, 9000),
       cv=st.floats(0, 5), seed=st.integers(0, 2**32))
def test_lengths_are_clipped_integers(kind, mean, cv, seed):
    text = f"exponential:{mean}" if kind == "exponential" else f"lognormal:{mean}:{mean * cv}"
    _, x = length_sample(text, OUTPUT_MAX if mean <= OUTPUT_MAX else PROMPT_MAX, seed=seed, n=2000)
    assert x.dtype == np.int64 and x.min() >= 1 and x.max() <= PROMPT_MAX


@pytest.mark.parametrize("sigma", [0.2, 0.5, 1.0])
def test_noisy_predictor_is_median_unbiased_with_spread_sigma(sigma):
    true = np.full(N, 2000, dtype=np.int64)
    pred, p = predict(parse_predictor(f"noisy:{sigma}"), true, np.random.default_rng(5))
    ratio = pred / true
    assert p == 0.0 and pred.min() >= 1
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    assert np.log(ratio).std() == pytest.approx(sigma, rel=0.03)


def test_oracle_and_confusion_predictors():
    true = np.array([0, 1, 5, 300], dtype=np.int64)
    pred, p = predict(parse_predictor("oracle"), true, np.random.default_rng(0))
    assert pred.tolist() == [1, 1, 5, 300] and p == 0.0
    pred, p = predict(parse_predictor("confusion:0.2"), true, np.random.default_rng(0))
    assert pred.tolist() == [1, 1, 5, 300] and p == 0.2
    w = build_workload(WorkloadSpec(num_requests=500, predictor="confusion:0.25"))
    assert w.confusion_p == 0.25 and np.array_equal(w.predicted, w.output)


def small(**kw):
    return build_workload(WorkloadSpec(num_requests=2000, **kw))


def test_same_seed_same_arrays_different_seed_different():
    a, b, c = small(workload_seed=11), small(workload_seed=11), small(workload_seed=12)
    for name in ("arrival", "prompt", "output", "predicted"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    assert a.key == b.key != c.key


def test_columns_draw_from_independent_streams():
    base = small(workload_seed=4)
    new_prompt = small(workload_seed=4, prompt_lengths="uniform:1:50")
    assert not np.array_equal(base.prompt, new_prompt.prompt)
    for name in ("arrival", "output", "predicted"):  # the prediction never looks at the prompt
        assert np.array_equal(getattr(base, name), getattr(new_prompt, name))
    new_output = small(workload_seed=4, output_lengths="fixed:64")
    assert np.array_equal(base.arrival, new_output.arrival) and np.array_equal(base.prompt, new_output.prompt)
    poisson = small(workload_seed=4, arrival="poisson")
    assert np.array_equal(base.prompt, poisson.prompt) and np.array_equal(base.predicted, poisson.predicted)
    assert not np.array_equal(base.arrival, poisson.arrival)


def test_workload_arrays_are_read_only_and_labelled():
    w = small()
    with pytest.raises(ValueError):
        w.prompt[0] = 5
    assert w.identity["spec"] == WorkloadSpec(num_requests=2000).relevant_dict()
    assert w.identity["trace_sha256"] is None
    assert "synthetic 2,000 req" in w.describe()["label"]


def test_a_workload_without_identity_is_identified_by_its_content():
    """Two different array workloads never share cached bin edges or a run hash (issue: identity = {})."""
    from batchlab.core import SimConfig, simulate
    from batchlab.core.bins import equal_mass_edges
    from batchlab.workloads.workload import Workload

    n = 400
    rng = np.random.default_rng(0)
    arrival = np.sort(rng.uniform(0, 100, n))
    short = Workload(arrival, np.full(n, 50), np.full(n, 20), rng.integers(1, 40, n))
    long = Workload(arrival, np.full(n, 50), np.full(n, 900), rng.integers(500, 2000, n))
    same = Workload(arrival, np.full(n, 50), np.full(n, 20), short.predicted.copy())
    assert short.key != long.key and same.key == short.key and short.identity["kind"] == "arrays"
    cfg = SimConfig(mode="multi_bin_dynamic", k_bins=4)
    a, b = simulate(cfg, short), simulate(cfg, long)  # b would reuse a's cached edges if keys collided
    assert a.run_hash != b.run_hash
    np.testing.assert_allclose(b.bin_edges, equal_mass_edges(long.predicted, 4))
    assert np.bincount(b.requests["bin"], minlength=4).min() > 50
    assert simulate(cfg, same).run_hash == a.run_hash


def test_prediction_noise_has_its_own_stream_whatever_draws_the_outputs():
    """fixed:500 draws no output lengths and uniform:400:600 draws one per request; the predictor's own
    stream gives request i the same multiplicative error in both (up to rounding to whole tokens)."""
    a = small(workload_seed=4, output_lengths="fixed:500")
    b = small(workload_seed=4, output_lengths="uniform:400:600")
    assert len(np.unique(b.output)) > 100
    error_a, error_b = np.log(a.predicted / a.output), np.log(b.predicted / b.output)
    assert np.std(error_a) == pytest.approx(0.5, rel=0.1)          # the default predictor, noisy:0.5
    np.testing.assert_allclose(error_a, error_b, atol=0.02)         # rounding to whole tokens, each side


# ----------------------------------------------------------------- priority mix --
def test_a_priority_mix_draws_each_class_with_its_share_and_leaves_the_other_columns_alone():
    plain = build_workload(WorkloadSpec(num_requests=20_000, workload_seed=4))
    mixed = build_workload(WorkloadSpec(num_requests=20_000, workload_seed=4, priority_mix="2:0.25, 0:0.1,1:0.65"))
    assert plain.priority is None
    shares = {v: float(np.mean(mixed.priority == v)) for v in (0, 1, 2)}
    for v, share in ((0, 0.1), (1, 0.65), (2, 0.25)):
        assert abs(shares[v] - share) < 4 * np.sqrt(share * (1 - share) / 20_000), (v, shares)
    assert set(np.unique(mixed.priority).tolist()) == {0, 1, 2}
    for name in ("arrival", "prompt", "output", "predicted"):
        np.testing.assert_array_equal(getattr(mixed, name), getattr(plain, name), err_msg=name)


def test_a_priority_mix_is_canonical_and_absent_from_the_identity_when_unset():
    a, b = WorkloadSpec(priority_mix="1:0.9, 0:0.1"), WorkloadSpec(priority_mix="0:0.1,1:0.90")
    assert a.priority_mix == b.priority_mix == "0:0.1,1:0.9" and a.relevant_dict() == b.relevant_dict()
    assert "priority_mix" not in WorkloadSpec().relevant_dict()


@pytest.mark.parametrize("text, message", [
    ("0:0.5", "the shares must sum to 1, got 0.5"), ("a:1", "'a:1' is not VALUE:SHARE"),
    ("0:0.5,0:0.5", "priority 0 is given twice"), ("0:0,1:1", "the share of priority 0 must be in \\(0, 1\\]"),
    ("0.5:1", "'0.5:1' is not VALUE:SHARE"), ("9999999999:1", "'9999999999:1' is not VALUE:SHARE with a 32-bit integer VALUE"),
])
def test_a_bad_priority_mix_is_refused_naming_what_is_wrong(text, message):
    with pytest.raises(SpecError, match="^priority_mix: " + message):
        WorkloadSpec(priority_mix=text)


def test_a_trace_takes_its_priorities_from_its_column_not_a_mix():
    with pytest.raises(SpecError, match="priority_mix: applies to synthetic workloads"):
        WorkloadSpec(workload="burstgpt", priority_mix="0:1")
