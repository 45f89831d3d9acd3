"""The `batchlab run` / `compare` / `bench` interface: flags, JSON keys, config files, clear errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batchlab import cli

REQUIRED_KEYS = ("num_requests completed makespan_s throughput_rps throughput_tps latency_mean_s latency_p50_s "
                 "latency_p95_s latency_p99_s ttft_mean_s ttft_p99_s tbt_mean_s queue_delay_mean_s "
                 "sla_attainment sla_violation_rate_ttft sla_violation_rate_tbt sla_violation_rate_e2e "
                 "gpu_utilization mean_batch_size config_hash bins").split()
SMALL = ["--num-requests", "400", "--rate", "3"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_json_has_every_documented_key():
    res = invoke("run", *SMALL, "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    for key in REQUIRED_KEYS:
        assert key in s, key
    assert s["completed"] == s["num_requests"] == 400
    assert len(s["bins"]) == 4 and sum(b["requests"] for b in s["bins"]) == 400
    assert 0 <= s["sla_attainment"] <= 1


def test_run_without_flags_is_the_documented_default():
    res = invoke("run")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("multi_bin_dynamic: 4 GPU(s), 4 bin(s)")
    assert "10,000 of 10,000" in res.output and "SLA attainment" in res.output


def test_every_issue_flag_is_accepted():
    flags = ["--mode", "multi_bin_dynamic", "--gpus", "2", "--k-bins", "3", "--batch-size", "4", "--b-min", "2",
             "--b-max", "32", "--fill", "full", "--max-wait", "5", "--bin-policy", "longest",
             "--d-sla-ttft", "none", "--d-sla-tbt", "0.06", "--d-sla-e2e", "none", "--workload", "synthetic",
             "--num-requests", "300", "--seed", "3", "--arrival", "poisson", "--rate", "2", "--gamma-shape", "2",
             "--prompt-lengths", "uniform:10:500", "--output-lengths", "lognormal:100:80",
             "--predictor", "confusion:0.1", "--prefill-base", "0.01", "--prefill-per-token", "0.00004",
             "--decode-base", "0.02", "--decode-per-seq", "0.0003", "--decode-per-ctx-token", "0.0000001",
             "--gpu-mem-gb", "80", "--json"]
    res = invoke("run", *flags)
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["gpus"] == 2 and s["k_bins"] == 3 and s["num_requests"] == 300
    assert s["sla_violation_rate_ttft"] is None and s["sla_violation_rate_e2e"] is None


def test_trace_flags():
    res = invoke("run", "--workload", "burstgpt", "--trace", "BurstGPT_1_first400", "--rps-scaling", "100",
                 "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["num_requests"] == 383  # 400 rows less 17 failed ones
    res = invoke("run", "--workload", "burstgpt", "--real-timestamps", "--json")
    assert res.exit_code == 0, res.output


def test_config_file_toml_and_json_with_flag_override(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[sim]\nmode = "static_fifo"\ngpus = 3\n[workload]\nnum_requests = 200\n')
    s = json.loads(invoke("run", "--config", str(toml), "--json").output)
    assert (s["mode"], s["gpus"], s["num_requests"]) == ("static_fifo", 3, 200)
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"mode": "dynamic_no_bins", "num_requests": 150}))
    s = json.loads(invoke("run", "--config", str(js), "--gpus", "5", "--json").output)
    assert (s["mode"], s["gpus"], s["num_requests"]) == ("dynamic_no_bins", 5, 150)
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    res = CliRunner().invoke(cli, ["run", "--config", str(bad)])
    assert res.exit_code != 0 and "colour" in res.output


@pytest.mark.parametrize("args,field", [
    (["--rate", "-1"], "rate"),
    (["--k-bins", "0"], "k_bins"),
    (["--b-min", "9", "--b-max", "4"], "b_min"),
    (["--predictor", "psychic"], "predictor"),
    (["--workload", "burstgpt", "--trace", "/nonexistent.csv"], "trace"),
])
def test_bad_input_is_a_one_line_error_naming_the_field(args, field):
    res = CliRunner().invoke(cli, ["run", *args])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert field in res.output


def test_csv_lacking_a_column_is_a_clear_error(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("Timestamp,Model,Request tokens\n1,ChatGPT,10\n")
    res = CliRunner().invoke(cli, ["run", "--workload", "burstgpt", "--trace", str(csv)])
    assert res.exit_code != 0 and "Response tokens" in res.output


def test_compare_runs_three_schedulers_on_one_workload():
    res = invoke("compare", *SMALL, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["mode"] for r in rows] == ["static_fifo", "dynamic_no_bins", "multi_bin_dynamic"]
    assert len({r["num_requests"] for r in rows}) == 1
    table = invoke("compare", *SMALL).output
    assert "static_fifo" in table and "SLA attainment" in table


def test_compare_rejects_unknown_modes():
    res = CliRunner().invoke(cli, ["compare", "--modes", "static_fifo,warp"])
    assert res.exit_code != 0 and "warp" in res.output


def test_bench_reports_rates_and_memory():
    res = invoke("bench", "--requests", "2000", "--modes", "static_fifo", "--scenarios", "overload",
                 "--repeats", "1", "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)[0]
    assert row["requests"] == 2000 and row["sim_requests_per_s"] > 0 and row["peak_rss_mb"] > 0
