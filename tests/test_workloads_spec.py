"""WorkloadSpec: defaults, auto resolution, validation messages, (de)serialisation."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.workloads import SpecError, WorkloadError, WorkloadSpec, spec_fields


def test_defaults_resolve_per_workload():
    syn = WorkloadSpec().resolved()
    assert (syn.workload, syn.arrival, syn.rate, syn.num_requests) == ("synthetic", "gamma", 12.0, 10_000)
    assert (syn.gamma_shape, syn.predictor, syn.prompt_lengths, syn.workload_seed) == (0.5, "noisy:0.5", "burstgpt", 0)
    assert syn.real_timestamps is False
    trace = WorkloadSpec(workload="burstgpt").resolved()
    assert (trace.trace, trace.arrival, trace.rate, trace.num_requests) == ("BurstGPT_1_first400", "trace", None, None)
    assert trace.real_timestamps is True
    assert WorkloadSpec(workload="burstgpt", rps_scaling=2).resolved().real_timestamps is False
    assert WorkloadSpec(workload="burstgpt", rate=1.0).resolved().real_timestamps is False
    assert WorkloadSpec(workload="burstgpt", arrival="poisson").resolved().real_timestamps is False


@pytest.mark.parametrize("changes, field, fragment", [
    ({"rate": -1}, "rate", "must be between 1e-06 and 1e+06 req/s, got -1"),
    ({"rate": 0.0}, "rate", "between 1e-06"),
    ({"rate": 1e-300}, "rate", "between 1e-06"),
    ({"rate": 1e308}, "rate", "between 1e-06"),
    ({"rate": float("inf")}, "rate", "finite"),
    ({"rate": "fast"}, "rate", "number"),
    ({"num_requests": 0}, "num_requests", "between 1"),
    ({"num_requests": 2.5}, "num_requests", "integer"),
    ({"num_requests": True}, "num_requests", "integer"),
    ({"offset": -1}, "offset", "between 0"),
    ({"num_requests": 10**30}, "num_requests", "between 1"),
    ({"gamma_shape": 0}, "gamma_shape", "between 0.01"),
    ({"gamma_shape": 1e308}, "gamma_shape", "between 0.01 and 1000"),
    ({"rps_scaling": -2}, "rps_scaling", "between 1e-06"),
    ({"prompt_lengths": "lognormal:1:1e200"}, "prompt_lengths", "STD must be between 0 and 100 x MEAN"),
    ({"workload_seed": -1}, "workload_seed", "between 0"),
    ({"workload": "sharegpt"}, "workload", "synthetic, burstgpt"),
    ({"arrival": "weibull"}, "arrival", "poisson, gamma, trace"),
    ({"keep_failed": "yes"}, "keep_failed", "true or false"),
    ({"trace": ""}, "trace", "bundled"),
    ({"arrival": "trace"}, "arrival", "burstgpt"),
    ({"rps_scaling": 2.0}, "rps_scaling", "applies to traces only"),
    ({"real_timestamps": True}, "real_timestamps", "no timestamps"),
    ({"workload": "burstgpt", "rate": 1.0, "rps_scaling": 2.0}, "rps_scaling", "cannot be combined with rate"),
    ({"workload": "burstgpt", "rate": 1.0, "real_timestamps": True}, "real_timestamps", "rate=1"),
    ({"workload": "burstgpt", "arrival": "gamma", "real_timestamps": True}, "real_timestamps", "arrival=gamma"),
    ({"workload": "burstgpt", "real_timestamps": False}, "real_timestamps", "needs a rate or rps_scaling"),
])
def test_bad_values_name_the_field(changes, field, fragment):
    with pytest.raises(WorkloadError) as info:
        WorkloadSpec(**changes)
    assert str(info.value).startswith(f"{field}: ")
    assert fragment in str(info.value)
    assert isinstance(info.value, SpecError) and info.value.field == field


def test_rate_message_matches_documented_form():
    with pytest.raises(WorkloadError, match=r"^rate: must be between 1e-06 and 1e\+06 req/s, got -1$"):
        WorkloadSpec(rate=-1)


@pytest.mark.parametrize("word", ["none", "None", "auto", "off"])
def test_optional_settings_take_the_words_the_flags_take(word):
    assert WorkloadSpec(rate=word, num_requests=word).rate is None


@pytest.mark.parametrize("field, text", [
    ("prompt_lengths", "fixed"), ("prompt_lengths", "zipf:1.2"), ("prompt_lengths", "uniform:1"),
    ("prompt_lengths", "burstgpt:2"), ("prompt_lengths", ""), ("prompt_lengths", "lognormal:100"),
    ("output_lengths", "exponential:1:2"), ("predictor", "noisy"), ("predictor", "perfect"),
    ("predictor", "oracle:1"), ("predictor", "confusion"),
])
def test_malformed_spec_strings_show_the_accepted_forms(field, text):
    with pytest.raises(SpecError) as info:
        WorkloadSpec(**{field: text})
    msg = str(info.value)
    assert msg.startswith(f"{field}: ") and "accepted forms" in msg
    assert ("oracle" in msg) if field == "predictor" else ("lognormal:MEAN:STD" in msg)


@pytest.mark.parametrize("field, text, fragment", [
    ("prompt_lengths", "fixed:0", "between 1 and 16384"),
    ("prompt_lengths", "fixed:20000", "between 1 and 16384"),
    ("output_lengths", "fixed:5000", "between 1 and 4096"),
    ("prompt_lengths", "fixed:1.5", "not an integer"),
    ("prompt_lengths", "uniform:20:1", "LO <= HI"),
    ("prompt_lengths", "exponential:-3", "MEAN"),
    ("prompt_lengths", "exponential:abc", "not a number"),
    ("output_lengths", "lognormal:100:-1", "STD"),
    ("output_lengths", "lognormal:nan:1", "finite"),
    ("predictor", "noisy:-0.1", "SIGMA"),
    ("predictor", "noisy:x", "not a number"),
    ("predictor", "noisy:4", "SIGMA"),
    ("predictor", "confusion:0.6", "P must be between 0 and 0.5"),
    ("predictor", 3, "must be a string"),
])
def test_out_of_range_spec_values(field, text, fragment):
    with pytest.raises(SpecError, match=f"^{field}: ") as info:
        WorkloadSpec(**{field: text})
    assert fragment in str(info.value)


def test_spec_strings_are_canonicalised():
    a = WorkloadSpec(predictor=" Noisy:0.50 ", prompt_lengths="LogNormal:611.0:782", output_lengths="uniform:1:20")
    assert (a.predictor, a.prompt_lengths, a.output_lengths) == ("noisy:0.5", "lognormal:611:782", "uniform:1:20")
    b = WorkloadSpec(predictor="noisy:0.5", prompt_lengths="lognormal:611:782.0", output_lengths="uniform:1:20")
    assert a == b and a.relevant_dict() == b.relevant_dict()


def test_unknown_key_is_named():
    with pytest.raises(SpecError, match=r"^poisson_rate: unknown workload setting") as info:
        WorkloadSpec.from_dict({"rate": 1.0, "poisson_rate": 3.0})
    assert info.value.field == "poisson_rate" and "rate" in str(info.value)
    with pytest.raises(WorkloadError):
        WorkloadSpec.from_dict(["rate", 1.0])


def test_relevant_dict_drops_what_cannot_matter():
    syn = WorkloadSpec(arrival="poisson", offset=7, keep_failed=True, trace="elsewhere.csv")
    assert set(syn.relevant_dict()) == {"workload", "num_requests", "arrival", "rate", "prompt_lengths",
                                        "output_lengths", "predictor", "workload_seed"}
    # offset/trace do not change a synthetic workload; gamma_shape only matters for gamma arrivals
    assert syn.relevant_dict() == WorkloadSpec(arrival="poisson").relevant_dict()
    assert "gamma_shape" in WorkloadSpec().relevant_dict()
    oracle_trace = WorkloadSpec(workload="burstgpt", predictor="oracle")
    assert "workload_seed" not in oracle_trace.relevant_dict()  # nothing random left
    assert "workload_seed" in WorkloadSpec(workload="burstgpt").relevant_dict()  # noisy predictor draws
    assert "prompt_lengths" not in oracle_trace.relevant_dict()
    # auto and explicit values that mean the same thing are the same workload
    assert WorkloadSpec().relevant_dict() == WorkloadSpec(rate=12, num_requests=10_000, arrival="gamma").relevant_dict()


def test_spec_fields_carry_form_metadata():
    fields = spec_fields()
    assert [f.name for f in fields] == list(WorkloadSpec().to_dict())
    for f in fields:
        assert f.metadata["help"] and f.metadata["group"] in {"workload", "arrivals", "lengths"}
        assert "unit" in f.metadata
    by_name = {f.name: f for f in fields}
    assert by_name["arrival"].metadata["choices"] == ("poisson", "gamma", "trace")
    assert by_name["workload"].metadata["choices"] == ("synthetic", "burstgpt", "mooncake", "azure", "splitwise",
                                                     "vllm-bench", "csv", "trace")
    assert by_name["rate"].metadata["unit"] == "req/s"
    assert "BurstGPT_3_first400" in by_name["trace"].metadata["help"]


def test_ints_become_floats_so_hashes_agree():
    spec = WorkloadSpec(rate=3, gamma_shape=1)
    assert isinstance(spec.rate, float) and isinstance(spec.gamma_shape, float)
    assert spec.to_dict() == WorkloadSpec(rate=3.0, gamma_shape=1.0).to_dict()


def test_frozen_and_replace_revalidates():
    spec = WorkloadSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rate = 3.0  # type: ignore[misc]
    assert spec.replace(workload="burstgpt").resolved().arrival == "trace"
    with pytest.raises(SpecError, match="^rate: "):
        spec.replace(rate=-3.0)


valid_specs = st.builds(
    WorkloadSpec,
    workload=st.sampled_from(["synthetic", "burstgpt"]),
    num_requests=st.none() | st.integers(1, 10**6),
    offset=st.integers(0, 10**6),
    keep_failed=st.booleans(),
    arrival=st.sampled_from([None, "poisson", "gamma"]),
    rate=st.none() | st.floats(1e-3, 1e4),
    gamma_shape=st.floats(0.05, 20),
    prompt_lengths=st.sampled_from(["burstgpt", "fixed:100", "uniform:1:20", "exponential:50.5",
                                    "lognormal:611:782"]),
    predictor=st.sampled_from(["oracle", "noisy:0.3", "confusion:0.1"]),
    workload_seed=st.integers(0, 2**63 - 1),
)


@settings(max_examples=60, deadline=None)
@given(valid_specs)
def test_dict_round_trip(spec):
    again = WorkloadSpec.from_dict(spec.to_dict())
    assert again == spec
    resolved = spec.resolved()
    assert resolved.resolved() == resolved  # idempotent
    assert WorkloadSpec.from_dict(resolved.to_dict()).relevant_dict() == spec.relevant_dict()


sharing_specs = st.builds(
    WorkloadSpec,
    workload=st.just("synthetic"),
    system_prompts=st.none() | st.integers(1, 50),
    system_prompt_tokens=st.integers(1, 4096),
    system_zipf=st.floats(0, 10),
    conversation_turns=st.none() | st.integers(1, 1000),
    think_time=st.floats(0, 1e6),
) | st.builds(WorkloadSpec, workload=st.just("mooncake"), trace=st.just("t.jsonl"), hash_block=st.integers(1, 10**6),
              rps_scaling=st.floats(0.1, 10))


@settings(max_examples=40, deadline=None)
@given(sharing_specs)
def test_dict_round_trip_with_prefix_settings(spec):
    again = WorkloadSpec.from_dict(spec.to_dict())
    assert again == spec and WorkloadSpec.from_dict(spec.resolved().to_dict()).relevant_dict() == spec.relevant_dict()
    relevant = spec.relevant_dict()
    assert ("hash_block" in relevant) == (spec.workload == "mooncake")
    assert ("system_prompt_tokens" in relevant) == (spec.system_prompts is not None)
    assert ("conversation_turns" in relevant) == (spec.conversation_turns is not None)
