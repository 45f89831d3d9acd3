"""Bad input to any command ends in one bounded 'Error:' line, before any work, with nothing
stored or half-written: config files, --vary ranges, output paths, bench, full disks, long values.
Each case here was a traceback, a hang, a 100 KB line or work thrown away before (issue 22, part 5)."""
from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from batchlab.cli import MAX_ERROR_CHARS, MAX_TOKEN_CHARS, cli, one_line
from batchlab.core.settings_text import MAX_VALUES, SettingError
from batchlab.core.sweep import parse_vary
from batchlab.workloads.fields import SHOWN_CHARS, shown

REPO = Path(__file__).resolve().parents[1]
LONG = "a" * 100_000
SMALL = ["--num-requests", "100"]
LINE_LIMIT = len("Error: ") + MAX_ERROR_CHARS + len("... (1,000,000 characters)")


def check_one_line(stderr: str, *words: str) -> str:
    """The single non-empty line of ``stderr``: an 'Error:' line of bounded length holding ``words``."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[:3000]
    assert len(lines[0]) <= LINE_LIMIT, len(lines[0])
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def refused(args, *words: str) -> str:
    """Run the CLI in this process: a failure (no uncaught exception) with one bounded error line."""
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code not in (0, None), res.output[:3000]
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    return check_one_line(res.stderr, *words)


def run_cli(*args, timeout: float = 120, **streams) -> subprocess.CompletedProcess:
    """The CLI as a user starts it (a hang becomes a TimeoutExpired, i.e. a failure)."""
    streams = streams or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run([sys.executable, "-m", "batchlab", *map(str, args)], cwd=REPO, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **streams)


def stored_runs() -> list:
    return json.loads(CliRunner().invoke(cli, ["runs", "list", "--json"]).stdout)


# ------------------------------------------------------------- config files --
@pytest.mark.parametrize("name,text,words", [
    ("big.toml", "gpus = " + "9" * 5000 + "\n", ["more than 4,300 digits", "(line 1, column 8)"]),
    ("big.json", '{"gpus": ' + "9" * 5000 + "}", ["more than 4,300 digits", "(line 1, column 10)"]),
    ("third.toml", 'mode = "static_fifo"\n\nseed = ' + "1_" * 4400 + "1\n", ["(line 3, column 8)"]),
    ("deep.toml", "gpus = " + "[" * 50_000 + "]" * 50_000 + "\n", ["nested too deeply"]),
    ("deep.json", '{"gpus": ' + "[" * 50_000 + "]" * 50_000 + "}", ["nested too deeply"]),
])
def test_a_config_python_cannot_read_is_a_one_line_error_naming_the_file(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    refused(["run", "--config", path, *SMALL], f"config: {shown(str(path))}: not valid", *words)
    assert stored_runs() == []


def test_a_config_that_is_not_a_regular_file_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)  # no writer: reading it would wait for ever
    res = run_cli("run", "--config", fifo, "--no-store", timeout=60)
    assert res.returncode == 1
    check_one_line(res.stderr, "is a FIFO, not a config file")
    refused(["run", "--config", "/dev/null", "--no-store"], "'/dev/null' is a character device")


def test_an_unknown_config_key_of_any_length_is_named_in_bounded_words(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({LONG: 1}))
    refused(["run", "--config", path], "(100,000 characters): unknown setting")
    path.write_text(json.dumps({"colour": "blue"}))
    refused(["run", "--config", path], "colour: unknown setting")


# --------------------------------------------------------------- --vary -----
@pytest.mark.parametrize("vary,words", [
    ("rate=nan:1:1", "START, STOP and STEP must be finite numbers, got 'nan:1:1'"),
    ("rate=1:inf:1", "START, STOP and STEP must be finite numbers, got '1:inf:1'"),
    ("rate=-inf:1:1", "START, STOP and STEP must be finite numbers, got '-inf:1:1'"),
    ("rate=0:1e308:1e-308", "more than 100,000 values in '0:1e308:1e-308'"),
    ("rate=-1e308:1e308:1", "more than 100,000 values in '-1e308:1e308:1'"),
    (f"gpus=1:{10 ** 400}:1", "more than 100,000 values"),
    ("rate=1:1.00000000000001:1e-16", "STEP is below the resolution of the values"),
])
def test_a_vary_range_that_is_no_grid_is_a_one_line_error(vary, words):
    refused(["sweep", "--vary", vary, *SMALL], f"--vary {vary.split('=')[0]}: {words}")
    assert stored_runs() == []


PART = st.one_of(st.floats(), st.floats(-10, 10), st.sampled_from(["0", "1", "1e-300", "1e308", "nan", "-inf"]))


@given(PART, PART, PART)
def test_a_vary_range_is_distinct_finite_values_from_start_to_stop_or_a_setting_error(start, stop, step):
    text = f"rate={start}:{stop}:{step}"
    try:
        _, values = parse_vary(text)
    except SettingError as exc:
        assert len(str(exc)) < 300
        return
    lo, hi = float(start), float(stop)
    assert 1 <= len(values) <= MAX_VALUES and len(set(values)) == len(values)
    assert all(math.isfinite(v) for v in values) and values == sorted(values)
    assert values[0] == round(lo, 12) and values[-1] <= round(hi, 12) + abs(float(step)) * 1e-6


# ------------------------------------------------------------- output paths --
@pytest.mark.parametrize("where,words", [
    ("missing/out.csv", "does not exist"),
    (".", "is a folder, not a file"),
    ("notes.txt/out.csv", "is not a folder"),
    ("", "the path is empty"),
])
def test_sweep_out_that_cannot_be_written_is_refused_before_any_run(tmp_path, monkeypatch, where, words):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine")
    refused(["sweep", "--vary", "rate=1,2", *SMALL, "--out", where], "--out", words)
    assert stored_runs() == []  # checked first: nothing was simulated
    assert sorted(os.listdir()) == ["notes.txt"] and Path("notes.txt").read_text() == "mine"


def test_sweep_out_to_a_fifo_nobody_reads_is_refused_at_once(tmp_path):
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    res = run_cli("sweep", "--vary", "rate=1,2", *SMALL, "--out", fifo, timeout=60)
    check_one_line(res.stderr, "is a FIFO or socket that no process reads")
    assert stored_runs() == []


@pytest.mark.parametrize("where,words", [
    ("missing/deeper", "folder"), ("notes.txt", "is not a folder"), ("/dev/null", "is not a folder"),
])
def test_suite_out_that_is_not_a_folder_is_refused_before_any_run(tmp_path, monkeypatch, where, words):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine")
    refused(["suite", "--step", "1", "--max-requests", "100", "--out", where], "--out", words)
    assert stored_runs() == [] and sorted(os.listdir()) == ["notes.txt"]


def test_runs_export_out_into_a_missing_folder_is_refused(tmp_path):
    refused(["runs", "export", "--out", tmp_path / "missing" / "runs.csv"], "--out: folder", "does not exist")


# --------------------------------------------------------------- full disks --
def test_a_full_disk_under_an_output_file_is_one_line():
    refused(["sweep", "--vary", "rate=1,2", *SMALL, "--no-store", "--out", "/dev/full"],
            "disk full while writing '/dev/full'")
    assert CliRunner().invoke(cli, ["run", *SMALL]).exit_code == 0
    refused(["runs", "export", "--out", "/dev/full"], "disk full while writing '/dev/full'")


def test_a_full_disk_under_standard_output_is_one_line():
    with open("/dev/full", "w") as full:
        res = run_cli("run", *SMALL, "--no-store", "--json", stdout=full, stderr=subprocess.PIPE)
    assert res.returncode == 1
    assert res.stderr.strip() == "Error: disk full while writing standard output"  # no 'Exception ignored'


def test_an_export_the_disk_cannot_hold_leaves_the_old_file_whole(tmp_path, monkeypatch):
    from batchlab.store import export

    for seed in (1, 2):
        CliRunner().invoke(cli, ["run", *SMALL, "--seed", str(seed)])
    out = tmp_path / "runs.csv"
    out.write_text("last week's export\n")
    cells = iter(range(100))

    def fills_up(value):
        if next(cells) == 60:  # the disk fills in the middle of the second row
            raise OSError(errno.ENOSPC, "No space left on device")
        return value

    monkeypatch.setattr(export, "csv_cell", fills_up)
    refused(["runs", "export", "--out", out], f"disk full while writing {shown(str(out))}")
    assert out.read_text() == "last week's export\n" and os.listdir(tmp_path) == ["runs.csv"]


def _sqlite_full():
    import sqlite3

    return sqlite3.OperationalError("database or disk is full")


def _postgresql_full():
    import psycopg.errors

    return psycopg.errors.DiskFull('could not extend file "base/16384/2619": No space left on device')


@pytest.mark.parametrize("driver_error", [_sqlite_full, _postgresql_full])
def test_a_full_disk_under_the_store_is_one_line_and_no_run_is_done(monkeypatch, driver_error):
    from sqlalchemy.exc import OperationalError

    from batchlab.store.repo import Store

    def full(self, *args, **kwargs):
        raise OperationalError("INSERT INTO run_data ...", {}, driver_error())

    monkeypatch.setattr(Store, "_store_done", full)
    refused(["run", *SMALL], "disk full while writing the results store")
    assert [r["status"] for r in stored_runs()] == ["failed"]


# -------------------------------------------------------------------- bench --
BENCH = ["bench", "--requests", "100", "--modes", "static_fifo", "--scenarios", "overload", "--repeats", "1"]


@pytest.mark.parametrize("args,words", [
    (["--requests", "0"], "'--requests': 0 is not in the range"),
    (["--requests", "100000000"], "--requests"),
    (["--gpus", "0"], "'--gpus': 0 is not in the range"),
    (["--repeats", "0"], "--repeats"),
    (["--modes", ""], "--modes: unknown mode(s) (none)"),
    (["--scenarios", ""], "scenarios: give at least one"),
    (["--scenarios", "heavy"], "scenario: unknown 'heavy'"),
])
def test_bench_checks_every_argument_before_a_child_starts(monkeypatch, args, words):
    monkeypatch.setattr("batchlab.core.bench.measure_once", lambda *a, **k: pytest.fail("a measurement started"))
    refused([*BENCH, *args], words)


@pytest.mark.parametrize("args,words", [
    ((0, ["static_fifo"], ["overload"], 1, 4), "num_requests"),
    ((100, ["static_fifo"], ["overload"], 1, 0), "gpus"),
    ((100, ["static_fifo"], ["overload"], 0, 4), "repeats"),
    ((100, [], ["overload"], 1, 4), "modes"),
    ((100, ["warp"], ["overload"], 1, 4), "mode"),
])
def test_run_bench_refuses_bad_arguments_in_the_parent(monkeypatch, args, words):
    from batchlab.core.bench import run_bench

    monkeypatch.setattr("batchlab.core.bench.measure_once", lambda *a, **k: pytest.fail("a measurement started"))
    with pytest.raises(ValueError, match=words):
        run_bench(*args, echo=None)


# -------------------------------------------------------- long input, capped --
@pytest.mark.parametrize("args", [
    ["grids", "show", LONG], ["runs", "show", LONG], ["runs", "delete", LONG, "--yes"], ["runs", "export", LONG],
    ["runs", "list", "--sort", LONG], ["sweep", "--vary", f"rate={LONG}"], ["sweep", "--vary", f"{LONG}=1"],
    ["sweep", "--vary", f"mode={LONG}", *SMALL], ["sweep", "--vary", "rate=1", "--name", LONG],
    ["run", "--mode", LONG], ["run", "--trace", LONG], ["run", "--db", LONG], ["run", "--prompt-lengths", LONG],
    ["run", "--latency", f"grid:{LONG}"], ["run", "--gpus", "9" * 5000], ["run", "--seed", str(10 ** 400)],
    ["compare", "--modes", LONG], ["plan", "--modes", LONG], ["capacity", "--mode", LONG],
    ["calibrate", "--model", "tiny", "--name", LONG], ["calibrate", "--model", LONG], [LONG],
])
def test_no_error_echoes_more_than_a_bounded_part_of_the_input(args):
    line = refused(args)
    assert "a" * (MAX_TOKEN_CHARS + 1) not in line and "9" * (MAX_TOKEN_CHARS + 1) not in line
    assert stored_runs() == []


@given(st.text(max_size=3000))
def test_one_line_makes_any_message_one_bounded_line(message):
    line = one_line(message)
    assert len(line.splitlines()) <= 1 and len(line) <= MAX_ERROR_CHARS + len("... (1,000,000 characters)")
    words = message.split()
    if sum(map(len, words)) + len(words) <= MAX_ERROR_CHARS and all(len(w) <= MAX_TOKEN_CHARS for w in words) \
            and message == " ".join(words):
        assert line == message  # a message already short and on one line is left as it is


@given(st.one_of(st.text(max_size=500), st.text(min_size=SHOWN_CHARS + 1, max_size=3000),
                 st.integers(-10 ** 6000, 10 ** 6000), st.floats(),
                 st.lists(st.text(max_size=300), max_size=50), st.dictionaries(st.text(max_size=5), st.integers())))
def test_shown_quotes_any_value_in_bounded_words(value):
    text = shown(value)
    assert len(text) <= 10 * SHOWN_CHARS + 40  # a character may need 10 to be written (\U000e0000)
    if isinstance(value, str) and len(value) <= SHOWN_CHARS:
        assert text == repr(value)
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        head = repr(value[:SHOWN_CHARS])  # its first SHOWN_CHARS characters, then the length
        assert text == f"{head[:-1]}...{head[-1]} ({len(value):,} characters)"
