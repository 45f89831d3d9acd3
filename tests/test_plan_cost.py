"""A plan across GPU types (``batchlab plan --gpus-from``): one plan per type, priced, the cheapest meeting
the target recommended; default prices from the catalogue, ``--gpu-cost`` overrides; bad inputs named."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batchlab.core import SimConfig
from batchlab.core.hardware import gpu_catalogue, gpu_prices
from batchlab.core.plan import plan
from batchlab.core.plan_options import PlanOptions, parse_gpu_costs
from batchlab.workloads import WorkloadSpec

# no TBT deadline and 2 req/s: on the roofline (each type's own speed) an L4 decodes llama-3.1-8b in about
# 70 ms a step, over the default 50 ms, and serves about 1 req/s: so both types can meet the target
BASE = ["plan", "--no-store", "--workers", "2", "--model", "llama-3.1-8b", "--num-requests", "300",
        "--modes", "continuous_static", "--batch-candidates", "8", "--max-gpus", "8", "--no-evidence",
        "--d-sla-tbt", "none", "--rate", "2"]


def run_cli(*args: str):
    from batchlab.cli import cli

    return CliRunner().invoke(cli, [*BASE, *args])


def check_costs(out: dict) -> dict:
    """Every row's cost is GPUs x price and per million requests at the planned rate; one cheapest, the least."""
    rate = out["rate_rps"]
    ok = [r for r in out["gpu_types"] if r["status"] == "ok"]
    for r in ok:
        assert r["cost_per_hour"] == pytest.approx(r["gpus"] * r["price_per_hour"])
        assert r["cost_per_million_requests"] == pytest.approx(r["cost_per_hour"] / (rate * 3600) * 1e6)
    best = [r for r in out["gpu_types"] if r["cheapest"]]
    assert len(best) == 1 and best[0]["gpu"] == out["cheapest"]
    assert best[0]["cost_per_hour"] == min(r["cost_per_hour"] for r in ok)
    assert out["gpus"] == best[0]["gpus"] and out["recommended"]["config"]["gpu"] == best[0]["gpu"]
    return best[0]


def test_every_catalogue_gpu_has_a_dated_sourced_price():
    prices = gpu_prices()
    assert set(prices) == set(gpu_catalogue())
    for p in prices.values():
        assert p.price_per_hour > 0 and p.price_source and p.price_date[:4].isdigit()
        assert p.approximate == p.price_source.startswith("approximate")


def test_two_gpu_types_name_the_cheaper_and_show_both_costs():
    r = run_cli("--gpus-from", "L4,H100", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [row["gpu"] for row in out["gpu_types"]] == ["l4", "h100"]
    best = check_costs(out)
    other = next(row for row in out["gpu_types"] if not row["cheapest"])
    prices = gpu_prices()
    assert all(row["price_per_hour"] == prices[row["gpu"]].price_per_hour for row in out["gpu_types"])
    s = out["sentence"]
    assert s.startswith(f"Cheapest: {best['gpus']} x {best['gpu'].upper()} at $")
    assert f"(vs {other['gpus']} x {other['gpu'].upper()} at $" in s
    text = run_cli("--gpus-from", "L4,H100")
    assert text.exit_code == 0 and text.stdout.splitlines()[0] == s and "GPU types" in text.stdout


def test_gpu_cost_overrides_change_the_recommendation():
    out = json.loads(run_cli("--gpus-from", "L4,H100", "--gpu-cost", "h100=0.01,l4=50", "--json").stdout)
    best = check_costs(out)
    assert best["gpu"] == "h100" and best["price_per_hour"] == 0.01 and best["price_source"].startswith("given")
    out = json.loads(run_cli("--gpus-from", "L4,H100", "--gpu-cost", "h100=50,l4=0.01", "--json").stdout)
    assert check_costs(out)["gpu"] == "l4"


def test_no_type_meeting_the_target_says_so_and_exits_3():
    r = run_cli("--gpus-from", "L4,H100", "--max-gpus", "1", "--target", "0.9", "--rate", "50")
    assert r.exit_code == 3
    assert r.stdout.startswith("No GPU type meets 90.0 %") and "L4 misses the target" in r.stdout


def test_a_type_that_cannot_hold_the_weights_is_reported_and_tp_lets_it_fit():
    # at 0.5 of its memory an L4 gives 12 GB: the 16 GB of llama-3.1-8b need TP 2; an H100 gives 40 GB
    cfg = SimConfig(model="llama-3.1-8b", gpu_memory_utilization=0.5, d_sla_tbt=None)
    spec = WorkloadSpec(num_requests=200)
    o = PlanOptions(modes=("continuous_static",), batch_values=(8,), max_gpus=8, evidence=False,
                    gpu_types=("l4", "h100"))
    out = plan(cfg, spec, o, workers=2).to_dict()
    l4, h100 = out["gpu_types"]
    assert l4["status"] == "does not fit" and "TP 1" in l4["error"] and h100["cheapest"]
    assert "L4 cannot hold the weights" in out["sentence"]
    out = plan(cfg, spec, PlanOptions(**{**o.to_dict(), "tp_values": (1, 2)}), workers=2).to_dict()
    l4 = out["gpu_types"][0]
    assert l4["tp_values"] == [2] and l4["status"] == "ok" and l4["gpus"] % 2 == 0


@pytest.mark.parametrize("args,message", [
    (["--gpus-from", "L4,X100"], "unknown GPU 'X100'; known: l4, a10g, l40s"),
    (["--gpus-from", "L4,l4"], "a GPU is listed twice"),
    (["--gpus-from", "L4", "--gpu-cost", "h100"], "'h100' is not NAME=PRICE"),
    (["--gpus-from", "L4", "--gpu-cost", "h100=cheap"], "the price of 'h100' must be a number"),
    (["--gpus-from", "L4", "--gpu-cost", "h100=-1"], "the price of 'h100' must be a positive number"),
    (["--gpus-from", "L4", "--gpu-cost", "v100=1"], "unknown GPU 'v100'"),
    (["--gpu-cost", "l4=1"], "give --gpus-from too"),
    (["--gpus-from", "L4", "--gpu", "h100"], "gpu: --gpus-from sets it per plan"),
])
def test_bad_gpu_inputs_are_one_line_errors(args, message):
    r = run_cli(*args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_gpus_from_needs_a_model():
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["plan", "--no-store", "--gpus-from", "L4"])
    assert r.exit_code != 0 and "--gpus-from needs --model" in r.output


def test_options_keep_their_keys_unless_used_and_round_trip():
    assert not {"gpu_types", "gpu_costs"} & set(PlanOptions().to_dict())
    o = PlanOptions(gpu_types=("l4", "h100"), gpu_costs=parse_gpu_costs("H100=2.5, l4=0.8"))
    d = json.loads(json.dumps(o.to_dict()))
    assert d["gpu_costs"] == {"h100": 2.5, "l4": 0.8} and PlanOptions.from_dict(d) == o


def test_web_form_cost_options():
    from batchlab.core.sweep import SweepError
    from batchlab.webapp.plan import cost_options, gpu_types_frame

    assert cost_options([], "") == {}
    assert cost_options(["l4", "h100"], "H100=2") == {"gpu_types": ("l4", "h100"), "gpu_costs": {"h100": 2.0}}
    for types, costs, message in ((["l4"], "h100=x", "must be a number"), ([], "l4=1", "choose GPU types too")):
        with pytest.raises(SweepError, match=message):
            cost_options(types, costs)
    frame = gpu_types_frame({"gpu_types": [{"gpu": "l4", "status": "does not fit", "price_per_hour": 0.8}]})
    assert list(frame["gpu"]) == ["l4"] and "cost_per_hour" in frame
