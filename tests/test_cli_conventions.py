"""CLI conventions (docs/cli.md#output-formats-and-exit-status): --version, one --format text|json|csv
on every command that prints a result (--json its alias), exit status 0/1/2/3."""
from __future__ import annotations

import csv
import io
import json
from importlib.metadata import version

import click
import pytest
from click.testing import CliRunner

from batchlab.cli import FORMATS, cli

FILE_FORMATS = {("runs", "export")}   # --format names the exported file's format there


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def options(cmd: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_version_prints_the_installed_version():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output == f"batchlab {version('batchlab')}\n"


def test_every_command_with_json_output_offers_the_same_formats():
    with_format = 0
    for path, cmd in commands():
        opts = options(cmd)
        if "--json" in opts:
            assert "--format" in opts, f"{' '.join(path)}: --json without --format"
        if "--format" in opts and path not in FILE_FORMATS:
            with_format += 1
            offered = set(opts["--format"].type.choices)
            assert set(FORMATS) <= offered, f"{' '.join(path)} offers {sorted(offered)}"
            assert "--json" in opts, f"{' '.join(path)}: --format without its --json alias"
    assert with_format >= 12


def test_json_and_a_different_format_is_a_usage_error():
    r = invoke("grids", "list", "--json", "--format", "csv")
    assert r.exit_code == 2 and "--json asks for json but --format asks for csv" in r.output
    assert invoke("grids", "list", "--json", "--format", "json").exit_code == 0
    r = invoke("grids", "show", "tiny-cpu-fp32", "--csv", "--format", "json")
    assert r.exit_code == 2 and "--csv asks for csv" in r.output


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_three_formats_say_the_same(tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    listed = json.loads(invoke("grids", "list", "--format", "json", "--db", db).output)
    as_csv = rows(invoke("grids", "list", "--format", "csv", "--db", db).output)
    assert [r["name"] for r in as_csv] == [g["name"] for g in listed] and len(listed) >= 8
    assert [int(r["rows"]) for r in as_csv] == [g["rows"] for g in listed]
    assert json.loads(invoke("grids", "list", "--json", "--db", db).output) == listed
    text = invoke("grids", "list", "--db", db).output
    assert all(g["name"] in text for g in listed)
    # a record: one CSV row whose nested settings are spread into columns
    run = ["run", "--mode", "static_fifo", "--num-requests", "50", "--db", db]
    assert invoke(*run).exit_code == 0
    shown = json.loads(invoke("runs", "show", "1", "--format", "json", "--db", db).output)
    (row,) = rows(invoke("runs", "show", "1", "--format", "csv", "--db", db).output)
    assert row["id"] == "1" and row["config.mode"] == shown["config"]["mode"] == "static_fifo"
    assert float(row["summary.throughput_rps"]) == pytest.approx(shown["summary"]["throughput_rps"])
    (listed_run,) = rows(invoke("runs", "list", "--format", "csv", "--db", db).output)
    assert listed_run["hash"] == shown["hash"]


def test_roofline_json_holds_the_csv_points():
    as_csv = rows(invoke("grids", "roofline", "llama-3.1-8b@h100/tp1", "--format", "csv").output)
    as_json = json.loads(invoke("grids", "roofline", "llama-3.1-8b@h100/tp1", "--format", "json").output)
    assert len(as_csv) == len(as_json) > 50
    assert [float(r["measured_s"]) for r in as_csv] == pytest.approx([r["measured_s"] for r in as_json])
    assert invoke("grids", "roofline", "llama-3.1-8b@h100/tp1", "--csv").output == \
        invoke("grids", "roofline", "llama-3.1-8b@h100/tp1", "--format", "csv").output


def test_capacity_below_the_lowest_rate_exits_3_and_a_failure_1():
    base = ["capacity", "--no-store", "--workers", "1", "--mode", "static_fifo", "--num-requests", "200",
            "--d-sla-ttft", "0.001", "--tolerance", "0.2"]
    r = invoke(*base, "--format", "csv")
    assert r.exit_code == 3, r.output
    (row,) = rows(r.stdout)
    assert row["status"] == "unreachable" and float(row["capacity_rps"]) == 0
    r = invoke(*base[:-4], "--tolerance", "0.2", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] in ("ok", "unbounded")


def test_usage_errors_exit_2_and_input_errors_1():
    assert invoke("run", "--no-such-flag").exit_code == 2
    assert invoke("sweep", "--format", "yaml").exit_code == 2
    assert invoke("runs", "show").exit_code == 2          # RUN missing
    r = invoke("run", "--no-store", "--gpus", "0")        # a setting out of its range: an input error
    assert r.exit_code == 1 and r.output == "Error: gpus: must be between 1 and 1000, got 0\n"


def test_csv_spreads_nested_mappings_and_keeps_lists_in_one_cell():
    import math

    from batchlab.core.report import to_csv

    text = to_csv([{"a": {"b": {"c": 1}, "d": math.nan}, "l": [1, 2.5]}, {"z": None, "l": []}])
    assert text.splitlines()[0] == "a.b.c,a.d,l,z"
    assert rows(text) == [{"a.b.c": "1", "a.d": "", "l": "[1, 2.5]", "z": ""},
                          {"a.b.c": "", "a.d": "", "l": "[]", "z": ""}]
    with pytest.raises(TypeError, match="a mapping or a list of mappings"):
        to_csv([1, 2])
