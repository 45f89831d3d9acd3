"""SimConfig validation: every bad value is an error that names its field."""
from __future__ import annotations

import dataclasses

import pytest

from core import ConfigError, SimConfig


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


def test_deadlines_can_be_disabled():
    cfg = SimConfig(d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None)
    assert cfg.d_sla_tbt is None


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
