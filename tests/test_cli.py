"""The `batchlab run` / `compare` / `bench` interface: flags, JSON keys, config files, clear errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batchlab.cli import cli

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
    s = json.loads(res.stdout)
    for key in REQUIRED_KEYS:
        assert key in s, key
    assert s["completed"] == s["num_requests"] == 400
    assert len(s["bins"]) == s["k_bins"] and sum(b["requests"] for b in s["bins"]) == 400
    assert 0 <= s["sla_attainment"] <= 1


def test_run_without_flags_is_the_documented_default():
    res = invoke("run", "--json", "--no-store")
    s = json.loads(res.stdout)
    assert (s["mode"], s["gpus"], s["num_requests"], s["eta_tokens"]) == ("continuous_dynamic", 4, 10_000, 20_599)
    assert (s["replicas"], s["tp"], s["router"]) == (4, 1, "least_outstanding")
    text = invoke("run").stdout
    assert text.startswith("continuous_dynamic: 4 GPU(s), router least_outstanding, 1 bin(s) | synthetic 10,000 req, "
                           "gamma(shape 0.5) at 12 req/s")
    assert "latency model    parametric" in text.splitlines()[1]


def run_json(*flags) -> dict:
    res = invoke("run", *flags, "--json", "--no-store")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_the_default_run_gives_both_controllers_work():
    """The claims about the default run (docs/default-run.md): every Algorithm 2 branch fires and
    Algorithm 1 binds at times; Algorithm 2 does its job on each of the five workload seeds: fewer
    requests miss the TBT deadline than without it (by at least 0.4 points; 0.7-1.5 measured), more
    meet the whole SLA (0.4-1.5 points measured), and the requests' mean gap is shorter."""
    s = run_json()
    counts = s["sla_branch_counts"]
    assert counts["over"] > 0 and counts["within"] > 0 and counts["under"] > 0
    assert 0 < s["b_mem_binding_share"] < 1
    assert run_json("--no-sla-control")["sla_branch_counts"]["off"] > 0
    for seed in ("0", "1", "2", "3", "4"):
        on = run_json("--workload-seed", seed)
        off = run_json("--workload-seed", seed, "--no-sla-control")
        assert on["sla_violation_rate_tbt"] <= off["sla_violation_rate_tbt"] - 0.004, seed
        assert on["sla_attainment"] > off["sla_attainment"], seed
        assert on["tbt_mean_s"] < off["tbt_mean_s"], seed


def test_algorithm_1_spares_memory_where_it_is_tight():
    """The default workload on 18 GB GPUs (eta = 13,732 tokens): Algorithm 1 keeps batches within memory,
    on every workload seed. Continuous batching with its CLT margin preempts under half as often as without
    Algorithm 1 (a quarter measured); run-to-completion batching with the default factor margin evicts under
    two thirds as many requests (about half measured) and wastes less GPU time."""
    for seed in ("0", "1", "2"):
        tight = ("--gpu-mem-gb", "18", "--workload-seed", seed)
        free = run_json(*tight, "--no-memory-control")
        clt = run_json(*tight, "--mem-margin", "clt")
        assert 0 < clt["preemptions"] < free["preemptions"] / 2, seed
        batch = ("--mode", "dynamic_no_bins", *tight)
        free, factor = run_json(*batch, "--no-memory-control"), run_json(*batch)
        assert 0 < factor["evicted_requests"] < free["evicted_requests"] * 2 / 3, seed
        assert factor["wasted_gpu_s"] < free["wasted_gpu_s"], seed


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
    s = json.loads(res.stdout)
    assert s["gpus"] == 2 and s["k_bins"] == 3 and s["num_requests"] == 300
    assert s["sla_violation_rate_ttft"] is None and s["sla_violation_rate_e2e"] is None


def test_trace_flags():
    res = invoke("run", "--workload", "burstgpt", "--trace", "BurstGPT_1_first400", "--rps-scaling", "100",
                 "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_requests"] == 383  # 400 rows less 17 failed ones
    res = invoke("run", "--workload", "burstgpt", "--real-timestamps", "--json")
    assert res.exit_code == 0, res.output


def test_config_file_toml_and_json_with_flag_override(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[sim]\nmode = "static_fifo"\ngpus = 3\n[workload]\nnum_requests = 200\n')
    s = json.loads(invoke("run", "--config", str(toml), "--json").stdout)
    assert (s["mode"], s["gpus"], s["num_requests"]) == ("static_fifo", 3, 200)
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"mode": "dynamic_no_bins", "num_requests": 150}))
    s = json.loads(invoke("run", "--config", str(js), "--gpus", "5", "--json").stdout)
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
    rows = json.loads(res.stdout)
    assert [r["mode"] for r in rows] == ["static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic"]
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
    row = json.loads(res.stdout)[0]
    assert row["requests"] == 2000 and row["sim_requests_per_s"] > 0 and row["peak_rss_mb"] > 0


# ------------------------------------------------- config files and settings --
@pytest.mark.parametrize("text,fragment", [
    ("[1, 2]", "top level must be a table of settings, got list"),
    ("null", "got NoneType"),
    ('"gpus"', "got str"),
    ('{"sim": [1]}', "sim: in"),
])
def test_config_json_that_is_not_a_table_is_a_one_line_error(tmp_path, text, fragment):
    path = tmp_path / "c.json"
    path.write_text(text)
    res = CliRunner().invoke(cli, ["run", "--config", str(path)])
    assert res.exit_code != 0 and fragment in res.output and "Traceback" not in res.output


def test_config_that_is_not_utf8_or_too_big_is_refused_without_reading_it_all(tmp_path):
    bad = tmp_path / "latin.toml"
    bad.write_bytes("mode = 'static_fifo' # caf\xe9\n".encode("latin-1"))
    res = CliRunner().invoke(cli, ["run", "--config", str(bad)])
    assert res.exit_code != 0 and "not UTF-8" in res.output
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as fh:
        fh.truncate(1 << 30)  # a sparse gigabyte
    res = CliRunner().invoke(cli, ["run", "--config", str(huge)])
    assert res.exit_code != 0 and "larger than 1024 KiB" in res.output


def test_toml_can_switch_a_deadline_off_and_keeps_both_seeds(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sim]\nd_sla_tbt = "none"\nseed = 5\n[workload]\nseed = 9\nnum_requests = 300\n')
    from batchlab.cli import build_inputs

    cfg, spec, _ = build_inputs(str(path))
    assert cfg.d_sla_tbt is None and cfg.seed == 5 and spec.workload_seed == 9
    res = invoke("run", "--config", str(path), "--json", "--no-store")
    assert json.loads(res.stdout)["sla_violation_rate_tbt"] is None
    wrong = tmp_path / "w.toml"
    wrong.write_text("[sim]\nrate = 3\n")
    res = CliRunner().invoke(cli, ["run", "--config", str(wrong)])
    assert res.exit_code != 0 and "rate: belongs in [workload]" in res.output


def test_the_two_seeds_are_distinct_flags():
    from batchlab.cli import build_inputs

    cfg, spec, _ = build_inputs(None, seed=3, workload_seed=8)
    assert (cfg.seed, spec.workload_seed) == (3, 8)
    base = json.loads(invoke("run", "--num-requests", "300", "--json", "--no-store").stdout)
    other = json.loads(invoke("run", "--num-requests", "300", "--workload-seed", "1", "--json",
                              "--no-store").stdout)
    assert other["config_hash"] != base["config_hash"]


def test_a_trace_implies_the_burstgpt_workload():
    res = CliRunner().invoke(cli, ["run", "--trace", "nosuch.csv"])
    assert res.exit_code != 0 and "nosuch.csv" in res.output  # the path is checked, not ignored
    res = invoke("run", "--trace", "BurstGPT_1_first400", "--rps-scaling", "100", "--json", "--no-store")
    assert res.exit_code == 0 and json.loads(res.stdout)["num_requests"] == 383
    res = CliRunner().invoke(cli, ["run", "--trace", "BurstGPT_1_first400", "--workload", "synthetic"])
    assert res.exit_code != 0
    assert ("trace: applies to the trace workloads (burstgpt, mooncake, azure, splitwise, vllm-bench, csv, trace) "
            "only, but workload is 'synthetic'") in res.output


def mooncake_trace(path, rows: int = 40):
    """A Mooncake JSONL trace whose requests share their first blocks of 512 tokens (the last id of each
    names a partly filled block)."""
    lines = [json.dumps({"timestamp": 500 * i, "input_length": 512 * (1 + i % 3) + 7, "output_length": 5 + i % 7,
                         "hash_ids": [1, 2, 3, 4][: 2 + i % 3]}) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_mooncake_trace_runs_and_shares_prefill(tmp_path):
    trace = mooncake_trace(tmp_path / "mooncake_trace.jsonl")
    s = run_json("--workload", "mooncake", "--trace", trace)
    assert s["num_requests"] == s["completed"] == 40
    assert 0 < s["prefix_hit_rate"] <= 1 and s["prefill_tokens_saved"] > 0
    assert s["prefill_tokens_saved"] % 512 == 0          # hits are whole blocks of hash_block tokens
    implied = run_json("--trace", trace)                 # a .jsonl trace means mooncake
    assert implied["config_hash"] == s["config_hash"] and implied["prefix_hit_rate"] == s["prefix_hit_rate"]
    off = run_json("--trace", trace, "--no-enable-prefix-caching")
    assert off["prefix_hit_rate"] is None and off["prefill_tokens_saved"] == 0
    assert off["ttft_mean_s"] > s["ttft_mean_s"]          # the hits skip prefill
    res = CliRunner().invoke(cli, ["run", "--workload", "mooncake", "--trace", trace, "--hash-block", "2000"])
    assert res.exit_code != 0 and "field hash_ids: 2 ids, but input_length 519 fills at most 1 block" in res.output


def test_a_mooncake_workload_needs_a_trace_path_and_hash_block_needs_mooncake(tmp_path):
    res = CliRunner().invoke(cli, ["run", "--workload", "mooncake"])
    assert res.exit_code != 0 and "needs the path of a Mooncake JSONL trace" in res.output
    res = CliRunner().invoke(cli, ["run", "--hash-block", "64"])
    assert res.exit_code != 0 and "hash_block: applies to mooncake traces only" in res.output
    res = CliRunner().invoke(cli, ["run", "--trace", str(tmp_path / "none.jsonl")])
    assert res.exit_code != 0 and "no such Mooncake trace file" in res.output


def test_shared_system_prompts_hit_the_prefix_cache_unless_it_is_off():
    shared = ("--num-requests", "200", "--rate", "3", "--system-prompts", "4", "--system-prompt-tokens", "512")
    on = run_json(*shared)
    assert 0.3 < on["prefix_hit_rate"] <= 1 and on["prefill_tokens_saved"] >= 512 * 100
    off = run_json(*shared, "--no-enable-prefix-caching")
    assert off["prefix_hit_rate"] is None and off["prefill_tokens_saved"] == 0
    plain = run_json("--num-requests", "200", "--rate", "3")
    assert plain["prefix_hit_rate"] is None and plain["prefill_tokens_saved"] == 0
    batch = run_json(*shared, "--mode", "dynamic_no_bins")      # batch modes have no prefix cache
    assert batch["prefix_hit_rate"] is None and batch["prefill_tokens_saved"] == 0


def test_conversation_turns_reuse_the_earlier_turns():
    """Turns of 200 + 100 tokens: turn t's prompt (300 t - 100 tokens) holds the 300 (t - 1) earlier ones, of
    which floor(300 (t - 1) / 16) whole blocks can hit: at most 880 of every 1500 tokens looked up."""
    s = run_json("--num-requests", "150", "--rate", "2", "--conversation-turns", "3", "--think-time", "1",
                 "--prompt-lengths", "fixed:200", "--output-lengths", "fixed:100", "--gpus", "1")
    assert s["num_requests"] == 150 and 0.3 < s["prefix_hit_rate"] <= 880 / 1500
    assert 0 < s["prefill_tokens_saved"] <= 50 * 880 and s["prefill_tokens_saved"] % 16 == 0
    res = CliRunner().invoke(cli, ["run", "--workload", "burstgpt", "--conversation-turns", "3"])
    assert res.exit_code != 0 and "conversation_turns: applies to synthetic workloads" in res.output


def test_a_setting_that_does_nothing_in_this_mode_gets_a_note():
    res = invoke("run", "--num-requests", "200", "--batch-size", "4", "--arrival", "poisson", "--gamma-shape", "3",
                 "--json", "--no-store")
    assert res.exit_code == 0
    assert "note: --batch-size has no effect" in res.stderr and "note: --gamma-shape has no effect" in res.stderr
    assert "note:" not in invoke("run", "--num-requests", "200", "--mode", "static_fifo", "--batch-size", "4",
                                 "--json", "--no-store").stderr
    compare = invoke("compare", "--num-requests", "200", "--batch-size", "4", "--json", "--no-store")
    assert "--batch-size" not in compare.stderr  # static_fifo, one of the compared modes, uses it


@pytest.mark.parametrize("args,fragment", [
    (["--decode-base", "1e308"], "decode_base: must be between 0 and 10 s"),
    (["--gamma-shape", "1e308"], "gamma_shape: must be between"),
    (["--rate", "1e-300"], "rate: must be between"),
    (["--b-max", str(10**30)], "b_max: must be between"),
    (["--gpu-mem-gb", "1e308"], "gpu_mem_gb: must be between"),
    (["--prompt-lengths", "lognormal:1:1e200"], "prompt_lengths: STD must be between"),
])
def test_absurd_numbers_are_one_line_errors_and_nothing_is_stored(args, fragment):
    res = CliRunner().invoke(cli, ["run", *args])
    assert res.exit_code != 0 and fragment in res.output and "Traceback" not in res.output
    listed = CliRunner().invoke(cli, ["runs", "list", "--json"])
    assert json.loads(listed.stdout) == []


def test_help_says_auto_not_none_and_shows_ranges():
    text = invoke("run", "--help").output
    assert "(default: None)" not in text and "(default: auto)" in text
    assert "Range: 1e-06 to 1e+06 req/s" in " ".join(text.split())


def test_bench_shows_progress_within_and_across_cases(capfd):
    from batchlab.core.bench import run_bench

    rows = run_bench(2000, ["static_fifo", "continuous_static"], ["overload"], 1, 2, echo=None, show_progress=True)
    err = capfd.readouterr().err
    assert "case 1/2 (overload static_fifo), run 1/1" in err and "case 2/2 (overload continuous_static)" in err
    assert "overload continuous_static: 100.0 % simulated" in err
    assert [r["mode"] for r in rows] == ["static_fifo", "continuous_static"] and rows[1]["log_rows"] > 0


def test_bench_loaded_scenario_scales_with_gpus_and_takes_a_router():
    from batchlab.core.bench import LOADED_PER_GPU, run_bench, scenario_rate

    assert scenario_rate("loaded", 100) == 100 * LOADED_PER_GPU and scenario_rate("light", 100) == 0.2
    rows = run_bench(2000, ["continuous_static", "static_fifo"], ["loaded"], 1, 3, echo=None, router="round_robin")
    assert [r["router"] for r in rows] == ["round_robin", "shared_queue"]   # batch-level modes keep theirs
    assert all(r["e2e_requests_per_s"] <= r["sim_requests_per_s"] for r in rows)
