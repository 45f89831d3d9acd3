"""SimConfig validation: every bad value is an error that names its field."""
from __future__ import annotations

import dataclasses
import re

import pytest

from batchlab.core import ConfigError, SimConfig


@pytest.mark.parametrize("changes,field", [
    ({"k_bins": 0}, "k_bins"),
    ({"k_bins": 1000}, "k_bins"),
    ({"gpus": 0}, "gpus"),
    ({"gpus": 1001}, "gpus"),
    ({"b_min": 10, "b_max": 5}, "b_min"),
    ({"b_min": 0}, "b_min"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_wait": -1.0}, "max_wait"),
    ({"d_sla_tbt": -0.05}, "d_sla_tbt"),
    ({"d_sla_ttft": 0.0}, "d_sla_ttft"),
    ({"mode": "magic"}, "mode"),
    ({"fill": "sometimes"}, "fill"),
    ({"bin_policy": "random"}, "bin_policy"),
    ({"gpu_mem_gb": float("nan")}, "gpu_mem_gb"),
    ({"weights_gb": 50.0}, "weights_gb"),
    ({"mem_factor": 1.5}, "mem_factor"),
    ({"latency": "grid:"}, "latency"),
    ({"latency": "table"}, "latency"),
    ({"decode_base": 0.0, "decode_per_seq": 0.0}, "decode_base"),
    ({"prefill_per_token": -1e-5}, "prefill_per_token"),
    ({"gpus": 2.5}, "gpus"),
    ({"gpus": True}, "gpus"),
    ({"d_sla_e2e": "soon"}, "d_sla_e2e"),
])
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        SimConfig(**changes)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_defaults_are_valid_and_frozen():
    cfg = SimConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gpus = 3  # type: ignore[misc]
    assert cfg.fill == "greedy"
    assert SimConfig(mode="multi_bin_fixed").fill == "full"  # Paper 1: a batch forms when a bin holds B


def test_a_disabled_deadline_decides_nothing():
    """With only the TBT deadline on, attainment is exactly the share meeting it (a one-token request has
    no TBT: it meets it, and the violation rate is over the others); with none on there is no attainment
    to report (not a vacuous 100 %)."""
    from batchlab.core import simulate
    from batchlab.workloads import WorkloadSpec, build_workload

    w = build_workload(WorkloadSpec(num_requests=600, rate=6.0))
    only_tbt = simulate(SimConfig(mode="static_fifo", batch_size=64, gpu_mem_gb=40.0, d_sla_ttft=None, d_sla_e2e=None,
                                  d_sla_tbt=0.04), w).summary
    assert only_tbt["sla_violation_rate_ttft"] is None and only_tbt["sla_violation_rate_e2e"] is None
    assert 0 < only_tbt["sla_violation_rate_tbt"] < 1
    gap = (w.output > 1).mean()
    assert only_tbt["rejected_requests"] == 0 and gap < 1
    assert only_tbt["sla_attainment"] == pytest.approx(1 - only_tbt["sla_violation_rate_tbt"] * gap)
    off = simulate(SimConfig(d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None), w).summary
    assert off["sla_attainment"] is None
    assert [off[f"sla_violation_rate_{k}"] for k in ("ttft", "tbt", "e2e")] == [None, None, None]


def test_relevant_dict_ignores_settings_a_mode_does_not_use():
    a = SimConfig(mode="static_fifo", b_max=64)
    b = SimConfig(mode="static_fifo", b_max=32)
    assert a.relevant_dict() == b.relevant_dict()
    assert SimConfig(mode="dynamic_no_bins", b_max=64).relevant_dict() != \
        SimConfig(mode="dynamic_no_bins", b_max=32).relevant_dict()
    assert "k_bins" not in SimConfig(mode="dynamic_no_bins").relevant_dict()


def test_from_dict_rejects_unknown_settings():
    with pytest.raises(ConfigError, match="colour"):
        SimConfig.from_dict({"colour": "blue"})
    assert SimConfig.from_dict(SimConfig(gpus=7).to_dict()) == SimConfig(gpus=7)


def test_replace_re_derives_the_mode_default_fill():
    assert SimConfig().replace(mode="multi_bin_fixed").fill == "full"
    assert SimConfig(mode="multi_bin_fixed").replace(mode="static_fifo").fill == "greedy"


@pytest.mark.parametrize("name,value", [
    ("decode_base", 1e308), ("prefill_base", 1e9), ("decode_per_ctx_token", 1.0), ("b_max", 10**30),
    ("batch_size", 10**12), ("gpu_mem_gb", 1e308), ("weights_gb", 1e308), ("sla_window", 10**15),
    ("d_sla_tbt", 1e-300), ("d_sla_ttft", 1e300), ("max_wait", 1e300), ("seed", 2**64), ("kv_layers", 10**9),
])
def test_absurd_values_are_refused_with_the_documented_range(name, value):
    f = next(f for f in dataclasses.fields(SimConfig) if f.name == name)
    lo, hi = f.metadata["range"]
    assert not lo <= value <= hi
    with pytest.raises(ConfigError, match="^" + re.escape(f"{name}: must be between {lo:g} and {hi:g}")):
        SimConfig(**{name: value})
    SimConfig(**{name: hi} if name not in ("weights_gb", "b_min") else {name: lo})  # the bounds themselves are fine


def test_every_numeric_setting_documents_a_range():
    for f in dataclasses.fields(SimConfig):
        if str(f.type).replace(" | None", "") in ("int", "float"):
            lo, hi = f.metadata["range"]
            assert lo <= (f.default if f.default is not None else lo) <= hi, f.name


@pytest.mark.parametrize("word", ["none", "off", "NONE", "auto"])
def test_deadlines_and_auto_settings_take_the_words_the_flags_take(word):
    cfg = SimConfig(d_sla_tbt=word, max_wait=word, fill=word)
    assert cfg.d_sla_tbt is None and cfg.max_wait is None and cfg.fill == "greedy"
    with pytest.raises(ConfigError, match="^gpus: must be an integer"):
        SimConfig(gpus="none")  # not optional: no word means None
