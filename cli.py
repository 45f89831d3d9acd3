"""batchlab command line: thin glue above core, workloads, calibration and store.

Nothing imports this module. Every SimConfig and WorkloadSpec field is a flag
(``--k-bins``, ``--d-sla-tbt none``, ...); ``--config FILE`` (TOML or JSON, flat
or with [sim]/[workload] tables) supplies defaults that flags override; its values, like
``--vary``'s, are read by :mod:`core.settings_text`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import sys
import time
import tomllib
from pathlib import Path

import click

from batchlab.core.config import COMPARE_MODES, MAX_GPUS, MODES, ROUTERS, ConfigError, SimConfig, config_fields
from batchlab.core.plan_options import B_MAX_VALUES, BATCH_VALUES, K_VALUES
from batchlab.core.plan_options import DEFAULT_MAX_GPUS as PLAN_MAX_GPUS
from batchlab.core.plan_options import DEFAULT_MODES as PLAN_MODES
from batchlab.core.plan_options import RULES as PLAN_RULES
from batchlab.core.report import format_compare_table, format_summary, to_csv, to_json
from batchlab.core.settings_text import SettingError, parse_mapping, parse_setting
from batchlab.workloads.export import EXPORT_FORMATS, export_workload
from batchlab.workloads.fields import plain, range_text, shown, unused_settings
from batchlab.workloads.spec import TRACE_WORKLOADS, WorkloadSpec, spec_fields
from batchlab.workloads.workload import WorkloadError

# ----------------------------------------------------------- flag builders --
EXPLICIT_NONE = type("ExplicitNone", (), {"__repr__": lambda self: "none"})()  # a flag given as 'none'


class _Setting(click.ParamType):
    """A setting's flag, read by the one settings parser (as in URLs, --vary and config files)."""

    def __init__(self, f: dataclasses.Field):
        self.field = f.name
        choices = f.metadata.get("choices")
        kind = str(f.type)
        self.name = f"[{'|'.join(choices)}]" if choices else kind.replace(" | None", "|none").replace("str|", "text|")

    def get_metavar(self, param, ctx=None):
        return self.name

    def convert(self, value, param, ctx):
        if value is None or value is EXPLICIT_NONE:
            return value
        try:
            parsed = parse_setting(self.field, value)
        except SettingError as e:
            raise click.ClickException(str(e)) from None  # 'Error: NAME: ...', as from a config file
        return EXPLICIT_NONE if parsed is None else parsed


def _field_option(f: dataclasses.Field, seen: set[str]):
    """A click option for one dataclass field; its default None means 'not given'."""
    if f.name in seen:
        return None
    seen.add(f.name)
    flag = "--" + f.name.replace("_", "-")
    kind = str(f.type)
    help_text = f.metadata.get("help", "")
    unit = f.metadata.get("unit")
    help_text += f" [{unit}]" if unit else ""
    if f.metadata.get("range"):
        help_text += f" Range: {range_text(f, 'to')}."
    none_word = "none" if "none =" in help_text else "auto"
    help_text += f" (default: {none_word if f.default is None else f.default})"
    if kind.startswith("bool"):
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
    if f.metadata.get("repeatable"):   # --slo A --slo B: one comma-separated setting
        return click.option(flag, f.name, type=_Setting(f), multiple=True, callback=_joined,
                            help=help_text + " Repeatable.")
    return click.option(flag, f.name, type=_Setting(f), default=None, help=help_text)


def _joined(ctx, param, values: tuple):
    """A repeatable setting's values as one comma-separated text (None when not given)."""
    if not values:
        return None
    if any(v is EXPLICIT_NONE for v in values):
        if len(values) > 1:
            raise _error(f"--{param.name.replace('_', '-')}: 'none' cannot be combined with other values")
        return EXPLICIT_NONE
    return ",".join(values)


def _field_range(name: str) -> click.ParamType:
    """The documented range of a numeric SimConfig or WorkloadSpec setting, as a click type."""
    f = next(f for f in config_fields() + spec_fields() if f.name == name)
    low, high = f.metadata["range"]
    return click.IntRange(low, high) if str(f.type).startswith("int") else click.FloatRange(low, high)


def sim_options(func):
    """Attach every SimConfig and WorkloadSpec field as a flag, plus --config."""
    seen: set[str] = set()
    opts = [_field_option(f, seen) for f in config_fields() + spec_fields()]
    for opt in reversed([o for o in opts if o is not None]):
        func = opt(func)
    return click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                        help="TOML or JSON file of settings (flags override it).")(func)


MAX_CONFIG_BYTES = 1 << 20
TABLES = {"sim": "simulation", "workload": "workload"}
FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _read_small_file(path: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file ``path``. Opened without waiting (a FIFO
    with no writer would block for ever) and refused unless it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {shown(path)}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in FILE_KINDS if test(mode)), "not a regular file")
            raise ConfigError("config", f"{shown(path)} is {kind}, not a config file")
        return fh.read(limit + 1)


def _long_integer_at(text: str) -> str:
    """' (line L, column C)' of the first integer too long for Python to read, if one is found."""
    match = re.search(rf"\d[\d_]{{{sys.get_int_max_str_digits()},}}", text)
    if match is None:
        return ""
    start = match.start()
    line, column = text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
    return f" (line {line}, column {column})"


def _parse_config(path: str, kind: str, text: str):
    try:
        return json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("config", f"{shown(path)}: not valid {kind}: {exc}") from None
    except RecursionError:
        raise ConfigError("config", f"{shown(path)}: not valid {kind}: nested too deeply") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise ConfigError("config", f"{shown(path)}: not valid {kind}: an integer of more than "
                                    f"{sys.get_int_max_str_digits():,} digits{_long_integer_at(text)}") from None


def _read_config_file(path: str | None) -> tuple[dict, dict, dict]:
    """(flat, sim, workload) settings of a TOML or JSON config file.

    Top-level keys are flat settings (either kind); a ``[sim]`` or ``[workload]``
    table holds only its own kind (``seed`` in ``[workload]`` is the workload's seed).
    """
    if not path:
        return {}, {}, {}
    kind = "JSON" if path.endswith(".json") else "TOML"
    raw = _read_small_file(path, MAX_CONFIG_BYTES)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"{shown(path)} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("config", f"{shown(path)} is not UTF-8 text (byte {exc.start})") from None
    data = _parse_config(path, kind, text)
    if not isinstance(data, dict):
        raise ConfigError("config", f"{shown(path)}: the top level must be a table of settings, "
                                    f"got {type(data).__name__}")
    flat = {k: v for k, v in data.items() if k not in TABLES}
    tables = []
    for name in TABLES:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, f"in {shown(path)} must be a table of settings, got {type(table).__name__}")
        tables.append(dict(table))
    sim, workload = tables
    if "seed" in workload:
        workload.setdefault("workload_seed", workload.pop("seed"))
    return flat, sim, workload


def build_inputs(config_file: str | None, **flags) -> tuple[SimConfig, WorkloadSpec, set[str]]:
    """Merge the config file and the given flags into a SimConfig and a WorkloadSpec.

    Also returns the names of the settings the user gave (for :func:`unused_notes`).
    A trace without a workload implies a trace workload (:func:`trace_workload`).
    """
    flat, sim_table, spec_table = (parse_mapping(t) for t in _read_config_file(config_file))
    sim_names = {f.name for f in config_fields()}
    spec_names = {f.name for f in spec_fields()}
    for table, own, other in ((sim_table, sim_names, "[workload]"), (spec_table, spec_names, "[sim]")):
        for key in sorted(set(table) - own):
            raise ConfigError(key, f"belongs in {other}, not here")
    given = {k: (None if v is EXPLICIT_NONE else v) for k, v in flags.items() if v is not None}
    sim = {k: v for k, v in {**flat, **sim_table, **given}.items() if k in sim_names}
    spec = {k: v for k, v in {**flat, **spec_table, **given}.items() if k in spec_names}
    if "trace" in spec and "workload" not in spec:
        spec["workload"] = "csv" if spec.get("trace_columns") else trace_workload(spec["trace"])
    elif "trace" in spec and spec["workload"] not in TRACE_WORKLOADS:
        raise ConfigError("trace", f"applies to the trace workloads ({', '.join(TRACE_WORKLOADS)}) only, "
                                   f"but workload is {shown(spec['workload'])}")
    return SimConfig(**sim), WorkloadSpec(**spec), set(sim) | set(spec)


def trace_workload(trace) -> str:
    """The workload a trace given without one means: the format of the file, detected from its content
    (:mod:`workloads.trace_formats`); a bundled excerpt is burstgpt. A path that is no file means mooncake
    when it ends in ``.jsonl``, else burstgpt (whose reader then says the file is missing)."""
    from batchlab.workloads.burstgpt import bundled_traces
    from batchlab.workloads.trace_formats import detect_format

    if not isinstance(trace, str):
        return "burstgpt"
    if trace.removesuffix(".csv") not in bundled_traces() and Path(trace).expanduser().is_file():
        return detect_format(Path(trace).expanduser())
    return "mooncake" if trace.lower().endswith(".jsonl") else "burstgpt"


def unused_notes(configs: list[SimConfig], spec: WorkloadSpec, given: set[str]) -> list[str]:
    """One note per given setting that changes none of ``configs`` (nor the workload)."""
    unused = set.intersection(*(set(unused_settings(c, given)) for c in configs))
    contexts = {n: f"mode {', '.join(sorted({c.mode for c in configs}))}" for n in unused}
    r = spec.resolved()
    contexts.update({n: f"{r.workload} workload, arrival {r.arrival}" for n in unused_settings(spec, given)})
    return [f"note: --{name.replace('_', '-')} has no effect with these settings ({context}); ignored"
            for name, context in sorted(contexts.items())]


# ---------------------------------------------------------------- helpers --
class _Progress:
    """A tqdm bar on a terminal (never in a pipe or a log) that appears only when a run takes more
    than half a second. tqdm is loaded at the first progress report, so a run served from the
    store never imports it."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None

    def __call__(self, fraction: float) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, desc=self.label, delay=0.5, leave=False, file=sys.stderr, disable=None,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.bar.update(int(fraction * 1000) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _compile_echo(text: str) -> None:
    """Say on stderr that the continuous engine compiles, and when it has (core.continuous_engine.ensure_compiled)."""
    click.echo(text, err=True)


def _echo_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(note, err=True)


MAX_TOKEN_CHARS = 200  # a longer run of non-blank characters in an error (input echoed by any code) is cut
MAX_ERROR_CHARS = 1000  # the longest error line the CLI prints


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def one_line(message: str) -> str:
    """``message`` as one line of bounded length, whatever it quotes: its lines joined, each run of
    more than MAX_TOKEN_CHARS non-blank characters cut, then the whole cut at MAX_ERROR_CHARS."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    line = re.sub(rf"\S{{{MAX_TOKEN_CHARS + 1},}}", lambda m: _cut(m.group(), MAX_TOKEN_CHARS), line)
    return _cut(line, MAX_ERROR_CHARS)


def _error(message: str, exit_code: int = 1) -> click.ClickException:
    """An error that prints ``message`` as one bounded line (:func:`one_line`)."""
    exc = click.ClickException(one_line(message))
    exc.exit_code = exit_code
    return exc


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _output_file(ctx, param, value: str | None) -> str | None:
    """An --out file, checked when the command line is read (before any work): its folder exists
    and is writable, it is not a folder ('-' = standard output)."""
    from batchlab.core.output import check_file

    if value is not None and value != "-":
        try:
            check_file(value, param.opts[0])
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    return value


def _output_folder(ctx, param, value: str | None) -> str | None:
    """An --out folder, checked when the command line is read: it exists and is writable, or its
    parent folder does (then it is created)."""
    from batchlab.core.output import check_folder

    if value is not None:
        try:
            check_folder(value, param.opts[0])
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    return value


FORMATS = ("text", "json", "csv")
EXIT_CODES = {"ok": 0, "error": 1, "usage": 2, "target_not_met": 3}   # docs/cli.md#output-formats-and-exit-status


def format_options(what: str):
    """``--format text|json|csv`` (``table``: an older name of text) and ``--json``, kept as its alias."""
    def attach(func):
        func = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")(func)
        return click.option("--format", "fmt", type=click.Choice(FORMATS + ("table",)), default=None,
                            help=f"Print {what} as text (the default), json or csv.")(func)
    return attach


def _chosen_format(fmt: str | None, as_json: bool) -> str:
    """The output format --format and its --json alias ask for (a usage error when they disagree)."""
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json asks for json but --format asks for {fmt}: give one of them")
    return "json" if as_json else "text" if fmt in (None, "table") else fmt


def _emit(fmt: str, data, text) -> None:
    """Print ``data`` (a record or a list of records) as JSON or CSV, or ``text()`` for text."""
    if fmt == "json":
        click.echo(to_json(data))
    elif fmt == "csv":
        click.echo(to_csv(data), nl=False)
    else:
        click.echo(text())


class _Group(click.Group):
    """Prints every error as one bounded line (:func:`one_line`), and turns the errors a command
    can meet mid-way into such a line instead of a traceback: a full disk, a store error, a database
    error (a read-only store, a lock held too long, a dropped connection)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:  # a group without its command: the help text
            raise
        except click.ClickException as exc:  # a usage error's usage and help lines are left out
            raise _error(exc.format_message(), exc.exit_code) from None
        except OSError as exc:
            from batchlab.core.output import OutputError, disk_full

            if isinstance(exc, OutputError):
                raise _error(str(exc)) from None
            if not disk_full(exc):
                raise
            # the writers of files name them (core.output): a full disk without a name is standard output
            where = "standard output" if exc.filename is None else shown(exc.filename)
            raise _error(f"disk full while writing {where}") from None
        except Exception as exc:
            if "batchlab.store.errors" in sys.modules:  # only a command that opened the store can get here
                from batchlab.store.errors import StoreError, describe_db_error

                if isinstance(exc, StoreError):
                    raise _error(str(exc)) from None
                if type(exc).__module__.startswith("sqlalchemy"):
                    raise _error(describe_db_error(exc)) from None
            raise


# --------------------------------------------------------------- commands --
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", is_flag=True, help="Log details to stderr.")
@click.version_option(None, "--version", package_name="batchlab", prog_name="batchlab",
                      message="%(prog)s %(version)s")
def cli(verbose: bool) -> None:
    """batchlab: simulate and compare batching schedulers for LLM inference."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _store_errors() -> tuple:
    from batchlab.core.validity import SimulationError
    from batchlab.store import StoreError

    return (ConfigError, WorkloadError, SimulationError, OSError, StoreError)


def _open_store(db: str | None):
    """The results store (``--db`` > BATCHLAB_DB_URL > default); errors become one-line messages."""
    from batchlab.store import StoreError, open_store

    try:
        store = open_store(db)
    except StoreError as exc:
        _fail(exc)
    click.get_current_context().call_on_close(store.close)
    return store


def _latency_grid(latency: str, db: str | None, store):
    """The Grid ``--latency grid:REF`` names (None for parametric): a CSV path, a bundled grid or a
    stored one (calibration.resolve), read from ``store`` or, under --no-store, from the store at ``db``."""
    if not latency.startswith("grid:"):
        return None
    from batchlab.calibration.resolve import resolve_grid
    from batchlab.calibration.schema import GridError

    try:
        return resolve_grid(latency, stored=lambda name: _stored_grid(name, db, store))
    except GridError as exc:
        _fail(exc)


def _stored_grid(name: str, db: str | None, store):
    """A stored grid from ``store``, or (--no-store) from the store at ``db`` if there is one:
    looking for a grid never creates a SQLite store."""
    if store is None:
        from batchlab.store.db import resolve_url, sqlite_path

        path = sqlite_path(resolve_url(db)[0])
        if path is not None and not path.exists():
            return None
        store = _open_store(db)
    return store.get_grid(name)


def _quick_hit(cfg: SimConfig, spec: WorkloadSpec, db: str | None):
    """(workload, summary, "store", run id) when a plain SQLite store holds this parametric run
    done, read without opening the store (:mod:`store.quick`); else None."""
    if cfg.latency != "parametric" or cfg.slo or cfg.classes:   # a judgement needs the per-request arrays
        return None
    from batchlab.core.identity import run_identity
    from batchlab.core.latency import build_latency_model
    from batchlab.store.quick import done_summary
    from batchlab.workloads import build_workload

    workload = build_workload(spec)
    found = done_summary(db, run_identity(cfg, workload, build_latency_model(cfg)))
    return None if found is None else (workload, found[1], "store", found[0])


def _simulate(cfg: SimConfig, spec: WorkloadSpec, label: str, store=None, workload=None, grid=None):
    """(workload, summary, source, run_id, detail): through the store unless it is None (--no-store).
    ``detail`` holds the per-request arrays: the RunResult when simulated here, else the StoredRun."""
    from batchlab.core import simulate
    from batchlab.core.config import CONTINUOUS_MODES
    from batchlab.core.continuous_engine import announce_if_uncompiled, compile_watch
    from batchlab.workloads import build_workload

    simulated = []

    def keep(*args, **kwargs):   # the store's simulation, its result kept for the output's arrays
        simulated.append(simulate(*args, **kwargs))
        return simulated[-1]

    with compile_watch(_compile_echo) as watch:  # a first continuous run says it compiles the engine, first
        if cfg.mode in CONTINUOUS_MODES:
            announce_if_uncompiled(watch)  # at once: the workload and numba take a second to load
        workload = workload or build_workload(spec)
        bar = _Progress(label)
        try:
            if store is None:
                result = simulate(cfg, workload, grid=grid, progress=bar)
                out = workload, result.summary, "simulated", None, result
            else:
                run, hit = store.get_or_run(cfg, workload, grid=grid, progress=bar, simulate_fn=keep)
                out = workload, run.summary, "store" if hit else "simulated", run.id, run if hit else simulated[-1]
        finally:
            bar.close()
    if watch.announced and not watch.seconds:  # served from the store, or a compiled form found elsewhere
        _compile_echo("no compile was needed after all")
    return out


def _run_arrays(cfg: SimConfig, spec: WorkloadSpec, workload, detail, run_id, db, grid, need_log: bool):
    """(requests, engine log) of a run: from the RunResult simulated here, else from the store when it
    kept them whole (not sampled; a continuous run's span log is never kept), else simulated again
    (not stored twice). ``detail`` None: a quick store hit, whose record is read now."""
    from batchlab.core.config import CONTINUOUS_MODES

    if detail is None and run_id is not None:
        detail = _open_store(db).get_run(run_id)
    if detail is not None and not hasattr(detail, "sampled"):   # a RunResult
        return detail.requests, detail.batches
    if detail is not None and not detail.sampled and not (need_log and cfg.mode in CONTINUOUS_MODES):
        return detail.requests(), detail.batches()
    result = _simulate(cfg, spec, cfg.mode, None, workload, grid)[4]
    return result.requests, result.batches


def _source_text(source: str, run_id: int | None) -> str:
    if run_id is None:
        return "simulated (not stored: --no-store)"
    return f"served from store (run {run_id})" if source == "store" else f"simulated and stored (run {run_id})"


store_options = [
    click.option("--db", default=None, metavar="URL",
                 help="Results store: a SQLAlchemy URL (sqlite:///FILE, postgresql://...). "
                      "Default: BATCHLAB_DB_URL, else batchlab.db in BATCHLAB_HOME."),
    click.option("--no-store", is_flag=True, help="Simulate without reading or writing stored runs "
                 "(a stored grid named by --latency is still read)."),
]


def with_store_options(func):
    for opt in reversed(store_options):
        func = opt(func)
    return func


# ------------------------------------------------- run / compare output --
RUN_FORMATS = (*FORMATS, "vllm-bench", "table")


def _percentiles(ctx, param, value: str | None):
    """--percentiles as a tuple of numbers in (0, 100); a usage error naming the flag otherwise."""
    from batchlab.core.bench_serve import OptionError, parse_percentiles

    if value is None:
        return None
    try:
        return parse_percentiles(value, "--percentiles")
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def _goodput_limits(given: tuple[str, ...], rest: tuple[str, ...]) -> dict[str, float] | None:
    """vLLM's ``--goodput KEY:VALUE ...``: the pairs after --goodput (``rest`` holds the 2nd, 3rd, ...)."""
    from batchlab.core.bench_serve import OptionError, parse_goodput

    if rest and not given:
        raise click.UsageError(f"Got unexpected extra argument ({rest[0]})")
    if not given:
        return None
    try:
        return parse_goodput([*given, *rest], "--goodput")
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def _table_kind(path: str | None, flag: str) -> str | None:
    from batchlab.core.output import OutputError
    from batchlab.core.request_table import table_format

    try:
        return None if path is None else table_format(path, flag)
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None


def _with_percentiles(summary: dict, pcts, arrays) -> dict:
    """``summary`` plus the chosen percentiles of each family (core.bench_serve.summary_percentiles),
    from the per-request arrays when the stored summary lacks any of them."""
    from batchlab.core.bench_serve import SUMMARY_ARRAYS, summary_key, summary_percentiles

    if not pcts or all(summary_key(stem, p) in summary for stem in SUMMARY_ARRAYS for p in pcts):
        return dict(summary, percentiles=list(pcts)) if pcts else summary
    return dict(summary, **summary_percentiles(arrays()[0], pcts), percentiles=list(pcts))


output_options = [
    click.option("--format", "fmt", type=click.Choice(RUN_FORMATS), default=None,
                 help="Output: text (default), json (the summary), csv (one row), vllm-bench (one JSON object "
                      "with vllm bench serve's result fields: docs/cli.md#results-as-vllm-bench-serve-writes-them)."),
    click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
    click.option("--percentiles", callback=_percentiles, metavar="P1,P2,...",
                 help="Percentiles to report, each in (0, 100), e.g. 50,90,99.9 (default: the summary's 50, 95 "
                      "and 99; vllm-bench: 99, as vLLM's --metric-percentiles)."),
    click.option("--goodput", multiple=True, metavar="KEY:MS ...",
                 help="vLLM's goodput limits in ms, keys ttft, tpot, e2el (--goodput ttft:500 tpot:50): "
                      "request_goodput = served requests meeting all of them / duration."),
    click.option("--save-detailed", is_flag=True,
                 help="vllm-bench: add the per-request lists (input_lens, output_lens, ttfts, itls, latencies, "
                      "start_times, errors), as vLLM's --save-detailed."),
    click.option("--requests-out", type=click.Path(), callback=_output_file, default=None, metavar="FILE",
                 help="Also write the per-request table to FILE (.csv, or .parquet with pyarrow)."),
    click.option("--timeline", type=click.Path(), callback=_output_file, default=None, metavar="FILE",
                 help="Also write the engine's timeline as a Chrome trace-event JSON (open it in ui.perfetto.dev "
                      "or chrome://tracing)."),
    click.argument("goodput_rest", nargs=-1, metavar=""),
]


def with_output_options(func):
    for opt in reversed(output_options):
        func = opt(func)
    return func


@cli.command()
@sim_options
@with_store_options
@with_output_options
def run(config_file, db, no_store, fmt, as_json, percentiles, goodput, save_detailed, requests_out, timeline,
        goodput_rest, **flags):
    """Simulate one scheduler on one workload (no flags: the documented default run).

    A run already in the results store (same config, workload, latency model and
    code version) is served from it instead of being simulated again.
    """
    from batchlab.core.bench_serve import VLLM_PERCENTILES

    fmt = _chosen_format(fmt, as_json)
    limits = _goodput_limits(goodput, goodput_rest)
    if save_detailed and fmt != "vllm-bench":
        raise click.UsageError("--save-detailed goes with --format vllm-bench")
    table_kind = _table_kind(requests_out, "--requests-out")
    try:
        cfg, spec, given = build_inputs(config_file, **flags)
        _echo_notes(unused_notes([cfg], spec, given))
        hit = None if no_store else _quick_hit(cfg, spec, db)
        grid = None
        if hit is not None:
            workload, summary, source, run_id = hit
            detail = None
        else:
            store = None if no_store else _open_store(db)
            grid = _latency_grid(cfg.latency, db, store)
            workload, summary, source, run_id, detail = _simulate(cfg, spec, cfg.mode, store, grid=grid)
        cache: list = []

        def arrays():
            if not cache:
                cache.append(_run_arrays(cfg, spec, workload, detail, run_id, db, grid, bool(timeline)))
            return cache[0]

        summary = dict(summary, source=source, run_id=run_id)
        if fmt != "vllm-bench":
            summary = _with_percentiles(summary, percentiles, arrays)
        if limits:
            from batchlab.core.bench_serve import goodput_summary

            summary.update(goodput_summary(arrays()[0], limits))
        if requests_out:
            from batchlab.core.request_table import write_requests

            n = write_requests(arrays()[0], requests_out, table_kind)
            click.echo(f"wrote {n:,} request rows to {requests_out}", err=True)
        if timeline:
            _write_timeline(cfg, arrays(), timeline)
        if fmt == "vllm-bench":
            from batchlab.core.bench_serve import bench_serve_result, run_metadata

            requests = arrays()[0]
            meta = run_metadata(workload.identity, len(workload), cfg.model, cfg.max_concurrency,
                                requests["arrival"])
            meta.update(batchlab_mode=cfg.mode, batchlab_source=source, batchlab_run_id=run_id)
            result = bench_serve_result(requests, meta, percentiles or VLLM_PERCENTILES, limits, save_detailed)
    except _store_errors() as exc:
        _fail(exc)
    if fmt == "vllm-bench":
        click.echo(json.dumps(result))
    elif fmt == "json":
        click.echo(to_json(summary))
    elif fmt == "csv":
        click.echo(to_csv(summary), nl=False)
    else:
        from batchlab.core.bench_serve import goodput_text, percentiles_text
        from batchlab.core.slo_report import assessment_text

        click.echo(format_summary(dict(summary, model=cfg.model, gpu=cfg.gpu, max_concurrency=cfg.max_concurrency),
                                  workload.identity.get("label", "workload"), _source_text(source, run_id)))
        if percentiles:
            click.echo(percentiles_text(summary, percentiles))
        if limits:
            click.echo(goodput_text(summary))
        if judgement := assessment_text(summary):
            click.echo(judgement)


def _write_timeline(cfg: SimConfig, arrays: tuple, path: str) -> None:
    from batchlab.core.output import write_text
    from batchlab.core.timeline import trace_events

    requests, log = arrays
    replicas = max(cfg.n_replicas, int(log["gpu"].max()) + 1 if len(log["gpu"]) else 0)
    trace = trace_events(log, replicas, float(requests["arrival"].min()), cfg.tp)
    write_text(path, json.dumps(trace))
    click.echo(f"wrote {len(log['start']):,} {'spans' if 'iterations' in log else 'batches'} to {path}", err=True)


@cli.command()
@sim_options
@click.option("--modes", default=",".join(COMPARE_MODES), show_default=True,
              help="Comma-separated scheduler modes to compare.")
@with_store_options
@click.option("--format", "fmt", type=click.Choice((*FORMATS, "table")), default=None,
              help="Output: text (default: a table), json (a list of summaries) or csv (one row per mode).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--percentiles", callback=_percentiles, metavar="P1,P2,...",
              help="Percentiles to report, each in (0, 100), e.g. 50,90,99.9 (default: the summary's).")
def compare(config_file, modes, db, no_store, fmt, as_json, percentiles, **flags):
    """Run several scheduler modes on the same workload and tabulate them."""
    fmt = _chosen_format(fmt, as_json)
    names = _mode_list(modes, "--modes")
    try:
        base, spec, given = build_inputs(config_file, **flags)
        configs = [base.replace(mode=mode) for mode in names]
        _echo_notes(unused_notes(configs, spec, given - {"mode"}))
        store = None if no_store else _open_store(db)
        grid = _latency_grid(base.latency, db, store)
        rows, workload = [], None
        for cfg in configs:
            workload, summary, source, run_id, detail = _simulate(cfg, spec, cfg.mode, store, workload, grid)

            def arrays(cfg=cfg, workload=workload, detail=detail, run_id=run_id):
                return _run_arrays(cfg, spec, workload, detail, run_id, db, grid, False)

            rows.append(_with_percentiles(dict(summary, source=source, run_id=run_id), percentiles, arrays))
    except _store_errors() as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(to_json(rows))
        return
    if fmt == "csv":
        click.echo(to_csv(rows), nl=False)
        return
    click.echo(f"workload: {workload.identity.get('label', 'workload')} ({len(workload):,} requests)")
    click.echo(format_compare_table(rows))
    if percentiles:
        from batchlab.core.bench_serve import percentiles_table

        click.echo(percentiles_table(rows, percentiles))
    if not no_store:
        hits = sum(r["source"] == "store" for r in rows)
        click.echo(f"{hits} served from store, {len(rows) - hits} simulated and stored")


VALIDATE_REQUESTS = 1000  # validate's workload size unless --num-requests says otherwise


@cli.group()
def validate():
    """Compare batchlab's engine with the real systems it models, request by request."""


@validate.command("vllm")
@sim_options
@click.option("--prefix-caching/--no-prefix-caching", default=None,
              help="Prefix caching on both sides (default: --enable-prefix-caching, on). Without prefix keys "
                   "in the workload batchlab caches nothing; vLLM's cache then matters after a preemption.")
@format_options("the comparison")
def validate_vllm(config_file, prefix_caching, fmt, as_json, **flags):
    """Run one workload through batchlab's continuous_static engine and vLLM 0.33's own scheduler
    (batchlab[vllm]) on one GPU, each step timed by the same latency model, and print per-request
    differences of TTFT and E2E, preemptions, iterations, the worst requests and the known
    differences that apply. Settings map to vLLM: batch_size -> max_num_seqs,
    max_num_batched_tokens, block_size, kv_watermark -> watermark, KV capacity -> its blocks,
    queue_policy and preempt_policy (both fcfs/newest or both priority) -> its scheduling policy.
    The mode defaults to continuous_static, gpus to 1 and num_requests to 1000. Exit code 0 for a
    completed comparison, whatever it found."""
    from batchlab.core.latency import build_latency_model
    from batchlab.core.vllm_compare import check_config, compare, comparison_json, format_comparison
    from batchlab.core.vllm_reference import VllmUnavailable, check_vllm
    from batchlab.workloads import build_workload

    fmt = _chosen_format(fmt, as_json)
    try:
        cfg, spec, given = build_inputs(config_file, **flags)
        cfg = cfg.replace(**{k: v for k, v in (("mode", "continuous_static"), ("gpus", 1)) if k not in given})
        if "num_requests" not in given:
            spec = spec.replace(num_requests=VALIDATE_REQUESTS)
        _echo_notes(unused_notes([cfg], spec, given))
        check_config(cfg)
        check_vllm()
        latency = build_latency_model(cfg, _latency_grid(cfg.latency, None, None))
        result = compare(cfg, build_workload(spec), latency, prefix_caching=prefix_caching)
    except (*_store_errors(), VllmUnavailable) as exc:
        _fail(exc)
    _emit(fmt, comparison_json(result), lambda: format_comparison(result))


@cli.command()
@click.option("--requests", "num_requests", type=_field_range("num_requests"), default=1_000_000,
              show_default=True, help="Requests per run.")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Comma-separated modes.")
@click.option("--scenarios", default="overload,light", show_default=True,
              help="overload (GPUs always busy, big batches), light (every request its own batch), loaded "
                   "(2.5 req/s a GPU: many busy replicas, short queues).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per case (at most 1,000); the median is reported.")
@click.option("--gpus", type=_field_range("gpus"), default=4, show_default=True)
@click.option("--router", type=click.Choice(ROUTERS), default=None,
              help="The continuous modes' router (default: the settings' default, least_outstanding).")
@format_options("the table (text: line by line as each case ends)")
def bench(num_requests, modes, scenarios, repeats, gpus, router, fmt, as_json):
    """Measure simulated requests per second and peak memory (each run in a fresh process)."""
    from batchlab.core.bench import run_bench

    fmt = _chosen_format(fmt, as_json)
    names = _mode_list(modes, "--modes")
    try:  # run_bench checks every argument before it starts a child process
        rows = run_bench(num_requests, names, [s.strip() for s in scenarios.split(",") if s.strip()], repeats,
                         gpus, echo=click.echo if fmt == "text" else None, show_progress=sys.stderr.isatty(),
                         router=router)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    if fmt != "text":
        _emit(fmt, rows, str)


# ------------------------------------------------------------ results store --
db_option = click.option("--db", default=None, metavar="URL",
                         help="Results store URL (default: BATCHLAB_DB_URL, else batchlab.db in BATCHLAB_HOME).")


@cli.group()
def runs():
    """List, show, export and delete stored runs."""


@runs.command("list")
@db_option
@click.option("--mode", type=click.Choice(MODES), help="Only runs of this scheduler mode.")
@click.option("--status", type=click.Choice(("done", "failed", "running", "stale")), help="Only runs in this state.")
@click.option("--search", help="Substring of the workload label or mode, or a hash prefix.")
@click.option("--sort", "order_by", default="created_at", show_default=True,
              help="Column to sort by (e.g. created_at, throughput_rps, latency_p99_s, sla_attainment).")
@click.option("--asc", is_flag=True, help="Ascending order (default: descending).")
@click.option("--limit", default=50, show_default=True, help="Rows to show (0 = all).")
@click.option("--offset", default=0, show_default=True, help="Rows to skip.")
@format_options("the rows (json and csv: every field)")
def runs_list(db, mode, status, search, order_by, asc, limit, offset, fmt, as_json):
    """List stored runs, newest first: settings that tell them apart, key metrics, workload."""
    import shutil

    from batchlab.store import StoreError
    from batchlab.store.format import DEFAULT_WIDTH, describe_filters, format_runs_table
    from batchlab.store.keys import check_count

    fmt = _chosen_format(fmt, as_json)
    store = _open_store(db)
    try:
        check_count("--limit", limit)
        check_count("--offset", offset)
        filters = {"mode": mode, "status": status, "search": search}
        rows = store.list_runs(**filters, order_by=order_by, descending=not asc, limit=limit or None, offset=offset)
        if fmt != "text":
            _emit(fmt, [r.to_dict() for r in rows], str)
            return
        total = store.count_runs(**filters)
        words = describe_filters(**filters)
        in_store = store.count_runs() if words and not rows else None
    except StoreError as exc:
        _fail(exc)
    width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    click.echo(format_runs_table(rows, total, width=width, filters=words, in_store=in_store))


def _get_run(store, key: str):
    from batchlab.store import StoreError

    try:
        run = store.get_run(key)
    except StoreError as exc:
        _fail(exc)
    if run is None:
        raise click.ClickException(f"no run {shown(key)} in {store.url}")
    return run


@runs.command("show")
@db_option
@click.argument("run_key", metavar="RUN")
@format_options("the whole record")
def runs_show(db, run_key, fmt, as_json):
    """Show one run (RUN: its id or a hash prefix of at least 4 characters) with its settings."""
    import shutil

    from batchlab.store.format import DEFAULT_WIDTH, format_run_header

    fmt = _chosen_format(fmt, as_json)
    run = _get_run(_open_store(db), run_key)
    if fmt != "text":
        _emit(fmt, run.to_dict(), str)
        return
    click.echo(format_run_header(run, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns))
    if run.summary is not None:
        click.echo(format_summary(run.summary, run.label or "workload", f"run {run.id}"))
    elif run.error:
        click.echo("\n" + run.error)


@runs.command("export")
@db_option
@click.argument("run_keys", metavar="[RUN]...", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(("csv", "json", "parquet")), default="csv", show_default=True,
              help="parquet: only with --per-request (needs pyarrow, the parquet extra, and --out FILE).")
@click.option("--out", type=click.Path(), callback=_output_file, default="-", show_default=True,
              help="Output file ('-' = standard output).")
@click.option("--per-request", "--requests", "per_request", is_flag=True,
              help="Export one run's per-request table (CSV or Parquet) instead of run summaries.")
def runs_export(db, run_keys, fmt, out, per_request):
    """Export runs (all, or the given ids / hash prefixes) as CSV or JSON, or one run's requests."""
    from batchlab.store import StoreError
    from batchlab.store.export import requests_csv, requests_parquet

    if per_request and (len(run_keys) != 1 or fmt == "json"):
        raise click.UsageError("--per-request exports exactly one RUN, as csv or parquet")
    if fmt == "parquet" and not per_request:
        raise click.UsageError("--format parquet is for --per-request tables")
    if fmt == "parquet" and out == "-":
        raise click.UsageError("--format parquet is binary: give --out FILE")
    store = _open_store(db)
    try:
        if per_request:
            run = _get_run(store, run_keys[0])
            n = requests_parquet(run, out) if fmt == "parquet" else requests_csv(run, out)
            what = "request rows"
        else:
            n = store.export_runs(list(run_keys) or None, fmt, out)
            what = "runs"
    except (StoreError, OSError) as exc:
        _fail(exc)
    if out != "-":
        click.echo(f"wrote {n:,} {what} to {out}", err=True)


@runs.command("delete")
@db_option
@click.argument("run_keys", metavar="[RUN]...", nargs=-1)
@click.option("--failed", is_flag=True, help="Also delete every failed and stale run.")
@click.option("--force", is_flag=True, help="Delete runs that are being computed right now too.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def runs_delete(db, run_keys, failed, force, yes):
    """Delete runs (by id or hash prefix) and everything stored with them."""
    from batchlab.store import StoreError

    store = _open_store(db)
    try:
        store.require_writable("delete runs")
        ids = []
        for key in run_keys:
            run_id = store.resolve_run(key)
            if run_id is None:
                raise click.ClickException(f"no run {shown(key)} in {store.url}")
            ids.append(run_id)
        if failed:
            ids += [r.id for r in store.list_runs(status="failed")] + [r.id for r in store.list_runs(status="stale")]
        ids = sorted(set(ids))
        if not ids:
            raise click.UsageError("name the runs to delete (ids or hash prefixes), or pass --failed")
        if not yes:
            click.confirm(f"delete {len(ids)} run(s) ({', '.join(map(str, ids[:10]))}"
                          f"{', ...' if len(ids) > 10 else ''}) from {store.url}?", abort=True)
        deleted = sum(store.delete_run(i, force=force) for i in ids)
    except StoreError as exc:
        _fail(exc)
    click.echo(f"deleted {deleted} run(s)")


@cli.group()
def grids():
    """List, show, upload and delete calibration grids in the store."""


@grids.command("list")
@db_option
@format_options("the list")
def grids_list(db, fmt, as_json):
    """List the calibration grids --latency grid:NAME can name: the bundled ones, then the stored ones."""
    from batchlab.store.format import format_grids_table
    from batchlab.store.grids import bundled_grid_rows

    rows = bundled_grid_rows() + _open_store(db).list_grids()
    _emit(_chosen_format(fmt, as_json), [g.to_dict() for g in rows], lambda: format_grids_table(rows))


@grids.command("show")
@db_option
@click.argument("name")
@format_options("the grid: text (metadata, warnings, table), json (its metadata) or csv (the grid file, "
                "canonical CSV)")
@click.option("--csv", "as_csv", is_flag=True, help="The same as --format csv.")
def grids_show(db, name, fmt, as_json, as_csv):
    """Show a bundled or stored grid's metadata, warnings and table."""
    from batchlab.calibration import load_bundled
    from batchlab.store.format import format_grid
    from batchlab.store.grids import bundled_grid_rows

    if as_csv and fmt not in (None, "csv"):
        raise click.UsageError(f"--csv asks for csv but --format asks for {fmt}: give one of them")
    fmt = "csv" if as_csv else _chosen_format(fmt, as_json)
    bundled = {r.name: r for r in bundled_grid_rows()}
    if name in bundled:
        row, grid = bundled[name], load_bundled(name)
    else:
        store = _open_store(db)
        row = store.grid_info(name)
        if row is None:
            raise click.ClickException(f"no grid named {shown(name)} in {store.url} (bundled: {', '.join(bundled)})")
        grid = store.get_grid(name)
    if fmt == "json":
        click.echo(to_json(row.to_dict()))
    elif fmt == "csv":
        click.echo(grid.to_csv_bytes().decode("utf-8"), nl=False)
    else:
        click.echo(format_grid(row, grid.table))


@grids.command("upload")
@db_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Name to store it under (default: the file's '# name:' or its stem; "
                             "not a bundled grid's name).")
@click.option("--replace", is_flag=True, help="Replace a different grid stored under the same name.")
@click.option("--legacy-split", default="writer", show_default=True, metavar="SPLIT",
              help="For a legacy batch_size,max_seq_len,mean_latency_sec file: how max_seq_len splits into "
                   "prompt and generated tokens: 'writer' (the legacy calibration script's own split), "
                   "'total:P' or 'generated:P' (README, Calibration).")
def grids_upload(db, path, name, replace, legacy_split):
    """Validate a calibration grid CSV and store it (latency = grid:NAME then uses it)."""
    from batchlab.calibration.resolve import named, upload_name
    from batchlab.calibration.schema import GridError, parse_grid
    from batchlab.store import StoreError

    try:
        store = _open_store(db)
        store.require_writable("store a grid")
        grid = parse_grid(Path(path), legacy_split=legacy_split)
        try:
            grid = named(grid, name or upload_name(grid, path))
        except GridError as exc:
            raise GridError(f"{exc}{'' if name else ' (pass --name)'}") from None
        row, created = store.save_grid(grid, replace=replace)
    except (GridError, StoreError, OSError) as exc:
        _fail(exc)
    for w in grid.warnings:
        click.echo(f"warning: {w}", err=True)
    if created:
        click.echo(f"stored grid {row.name!r} ({row.rows} rows, sha256 {row.sha256[:12]})")
    else:
        click.echo(f"this file is already stored as grid {row.name!r} (sha256 {row.sha256[:12]}); nothing changed")


def _mode_list(text: str, flag: str) -> list[str]:
    """Comma-separated scheduler modes, each one known (BadParameter naming ``flag`` otherwise)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise click.BadParameter(f"unknown mode(s) {plain(', '.join(bad)) if bad else '(none)'}; "
                                 f"choose from {', '.join(MODES)}",
                                 param_hint=flag)
    return names


def _int_list(text: str, label: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise click.BadParameter(f"{shown(text)} is not a comma-separated list of integers", param_hint=label) from None
    if not values:
        raise click.BadParameter("needs at least one value", param_hint=label)
    return values


@cli.command()
@click.option("--model", required=True, metavar="ARCH|DIR",
              help="A bundled architecture (tiny, qwen2.5-0.5b, qwen2.5-1.5b, llama-3.2-1b, qwen3-4b; random "
                   "weights) or a local model directory with config.json.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dtype", default="float32", show_default=True, help="float32, float16 or bfloat16.")
@click.option("--batch-sizes", default="1,2,4,8,16", show_default=True, help="Comma-separated batch sizes.")
@click.option("--context-lens", default="128,256,512,1024,2048", show_default=True,
              help="Comma-separated context lengths [tokens per sequence].")
@click.option("--repeats", default=3, show_default=True, help="Timed runs per cell (the median is kept).")
@click.option("--warmup", default=1, show_default=True, help="Untimed runs per cell first.")
@click.option("--decode-steps", default=8, show_default=True, help="Decode steps timed per run.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--name", default=None, help="Grid name, written into the file as '# name:' "
                                            "(default: MODEL-DEVICE-DTYPE; not a bundled grid's name).")
@click.option("--out", type=click.Path(), callback=_output_file, default="grid.csv", show_default=True,
              help="The grid file to write (its folder must exist).")
@click.option("--upload", is_flag=True, help="Also store the grid in the results store.")
@db_option
def calibrate(model, device, dtype, batch_sizes, context_lens, repeats, warmup, decode_steps, threads, name,
              out, upload, db):
    """Measure a latency grid (prefill and decode-step time over batch x context) with torch.

    Every argument, the --out folder and (with --upload) the store are checked before torch is
    imported and anything is measured."""
    from batchlab.calibration.measure import (
        TorchMissing,
        check_arguments,
        default_grid_name,
        measure_grid,
        require_torch,
    )
    from batchlab.calibration.resolve import check_grid_name
    from batchlab.calibration.schema import GridError
    from batchlab.core.output import write_bytes

    given = _int_list(batch_sizes, "--batch-sizes"), _int_list(context_lens, "--context-lens")
    try:
        batch_list, context_list = check_arguments(model, device, dtype, *given, repeats, warmup, threads,
                                                   decode_steps)
        name = check_grid_name(name or default_grid_name(model, device, dtype))
        store = _open_store(db) if upload else None
        if store is not None:
            store.require_writable(f"store grid {shown(name)}")
        require_torch()
        grid = measure_grid(model, device=device, dtype=dtype, batch_sizes=batch_list, context_lens=context_list,
                            repeats=repeats, warmup=warmup, threads=threads, decode_steps=decode_steps, name=name)
        write_bytes(out, grid.to_csv_bytes())
    except (ValueError, GridError, TorchMissing, OSError) as exc:
        _fail(exc)
    measured = int(grid.table["decode_step_s"].notna().sum())
    click.echo(f"wrote {out}: grid {grid.name!r}, {measured} of {len(grid.table)} cells measured on "
               f"{grid.meta.get('device', device)} ({grid.meta.get('dtype', dtype)})")
    for w in grid.warnings:
        click.echo(f"warning: {w}", err=True)
    if store is not None:
        row, created = store.save_grid(grid)
        click.echo(f"{'stored' if created else 'already stored'} as grid {row.name!r}; "
                   f"simulate with --latency grid:{row.name}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --expose.")
@click.option("--port", default=8501, show_default=True, help="1-65535.")
@click.option("--expose", is_flag=True, help="Confirm a non-loopback --host: anyone who can reach it can use "
                                              "the app, with no login (what that exposes is printed first).")
@click.option("--cluster", "clusters", multiple=True, metavar="NAME=ADDRESS",
              help="A Dask cluster the Sweeps and Plan pages may use (repeatable; ADDRESS: local, "
                   "tcp://HOST:PORT or tls://HOST:PORT). Default: BATCHLAB_CLUSTERS, else none.")
@db_option
def app(host, port, expose, clusters, db):
    """Start the web explorer (Streamlit)."""
    from batchlab.core.sweep import SweepError
    from batchlab.webapp.clusters import parse
    from batchlab.webapp.launch import LaunchError, launch

    try:
        offered = parse(clusters) if clusters else None
        code = launch(host=host, port=port, db_url=db, expose=expose, clusters=offered,
                      echo=lambda line: click.echo(line, err=True))
    except (LaunchError, SweepError) as exc:
        _fail(exc)
    raise SystemExit(code)


@grids.command("compose")
@click.argument("model")
@click.argument("gpu")
@click.option("--tp", type=click.IntRange(1, 8), default=1, show_default=True, help="Tensor parallelism.")
@click.option("--out", type=click.Path(), callback=_output_file, default="-", show_default=True,
              help="The grid file to write ('-': standard output).")
def grids_compose(model, gpu, tp, out):
    """Compose a step-time grid for a catalogue MODEL on GPU from the shipped measured operator tables
    (docs/hardware.md#measured-grids-composed-from-operator-tables); use it as --latency grid:FILE."""
    from batchlab.calibration.compose import compose
    from batchlab.calibration.operators import OperatorError
    from batchlab.core.hardware import CatalogueError
    from batchlab.core.output import write_bytes

    try:
        grid = compose(model, gpu, tp)
        write_bytes(out, grid.to_csv_bytes())
    except (OperatorError, CatalogueError, OSError) as exc:
        _fail(exc)
    if out != "-":
        click.echo(f"wrote {out}: grid {grid.name!r}, {len(grid.table)} cells ({grid.meta['engine']})")


@grids.command("roofline")
@db_option
@click.argument("name")
@click.option("--model", default=None, help="Catalogue model (default: the grid's '# model:').")
@click.option("--gpu", default=None, help="Catalogue GPU (default: the grid's '# gpu:').")
@format_options("the comparison: text (per operating point), json or csv (every measured point)")
@click.option("--csv", "as_csv", is_flag=True, help="The same as --format csv.")
def grids_roofline(db, name, model, gpu, fmt, as_json, as_csv):
    """The roofline's error against a bundled or stored grid, per operating point."""
    from batchlab.calibration import GridError, resolve_grid
    from batchlab.core.hardware import CatalogueError
    from batchlab.core.roofline import error_text, roofline_error

    if as_csv and fmt not in (None, "csv"):
        raise click.UsageError(f"--csv asks for csv but --format asks for {fmt}: give one of them")
    fmt = "csv" if as_csv else _chosen_format(fmt, as_json)
    try:
        grid = resolve_grid(f"grid:{name}", stored=lambda n: _open_store(db).get_grid(n), files=True)
        errors = roofline_error(grid, model, gpu)
    except (GridError, CatalogueError, ValueError) as exc:
        _fail(exc)
    if fmt == "csv":
        click.echo(errors.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(to_json(json.loads(errors.to_json(orient="records"))))
    else:
        click.echo(error_text(grid.name, errors))


@grids.command("delete")
@db_option
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def grids_delete(db, name, yes):
    """Delete a stored calibration grid (runs made with it stay stored)."""
    from batchlab.calibration import bundled_grids

    if name in bundled_grids():
        raise click.ClickException(f"{name!r} is a bundled grid: it ships with batchlab and cannot be deleted")
    store = _open_store(db)
    store.require_writable(f"delete grid {shown(name)}")
    if store.grid_info(name) is None:
        raise click.ClickException(f"no grid named {shown(name)} in {store.url}")
    if not yes:
        click.confirm(f"delete grid {name!r} from {store.url}?", abort=True)
    store.delete_grid(name)
    click.echo(f"deleted grid {name!r}")


@cli.command("bench-store")
@click.option("--requests", "num_requests", type=_field_range("num_requests"), default=1_000_000, show_default=True,
              help="Requests of the stored run.")
@click.option("--runs", "num_runs", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True,
              help="Runs in the store when listing.")
@click.option("--repeats", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Repeats; the median is reported.")
@click.option("--scenarios", default="default,overload", show_default=True,
              help="default (default config and workload), overload (1000 req/s), light (0.2 req/s: 1M batches).")
@click.option("--db", default=None, metavar="URL",
              help="Benchmark this (empty) store instead of a temporary SQLite file.")
@format_options("the medians (text: line by line as each ends)")
def bench_store(num_requests, num_runs, repeats, scenarios, db, fmt, as_json):
    """Measure storing a large run and listing many runs (store/bench.py)."""
    from batchlab.store import StoreError
    from batchlab.store.bench import run_store_bench

    fmt = _chosen_format(fmt, as_json)
    try:
        out = run_store_bench(num_requests, num_runs, repeats, tuple(s.strip() for s in scenarios.split(",")),
                              db, echo=click.echo if fmt == "text" else None)
    except (StoreError, ValueError) as exc:
        _fail(exc)
    if fmt != "text":
        _emit(fmt, out, str)


# ------------------------------------------------ sweeps, capacity, suite --
def sim_options_without(*names: str):
    """Like :func:`sim_options`, without the flags of ``names`` (the command sets them itself)."""
    def attach(func):
        seen: set[str] = set(names)
        opts = [_field_option(f, seen) for f in config_fields() + spec_fields()]
        for opt in reversed([o for o in opts if o is not None]):
            func = opt(func)
        return click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                            help="TOML or JSON file of settings (flags override it).")(func)
    return attach


def _cluster_address(ctx, param, value):
    """--cluster checked before anything is stored: a one-line error naming it."""
    from batchlab.core.executors import check_cluster
    from batchlab.core.sweep import SweepError

    try:
        return check_cluster(value)
    except SweepError as exc:
        raise click.ClickException(str(exc)) from None


def executor_options(func):
    from batchlab.core.executors import CLUSTER_HELP

    func = click.option("--workers", type=click.IntRange(1, 4096), default=None,
                        help="Worker processes (default: the CPU count; with --cluster local, its workers).")(func)
    return click.option("--cluster", default=None, metavar="local|tcp://HOST:PORT|tls://HOST:PORT",
                        callback=_cluster_address, help=CLUSTER_HELP)(func)


def _sweep_errors() -> tuple:
    from batchlab.core.sweep import SweepError

    return _store_errors() + (SweepError,)


def _compile_before(plan: dict, cluster: str | None) -> None:
    """Compile the continuous engine here, saying so, before a plan that names a continuous mode runs on
    this machine's processes (each would otherwise compile it at once, silently)."""
    from batchlab.core.config import CONTINUOUS_MODES
    from batchlab.core.continuous_engine import ensure_compiled

    text = json.dumps(plan, default=str)
    if cluster is None and any(mode in text for mode in CONTINUOUS_MODES):
        ensure_compiled(_compile_echo)


def _run_plan(plan: dict, db, no_store, cluster, workers, label: str, name: str | None = None):
    """Run a plan with a progress bar: through the store (a sweep) unless --no-store."""
    from tqdm import tqdm

    from batchlab.core.executors import open_executor
    from batchlab.store.sweep_jobs import open_plan, run_plan, worker_env

    store = None if no_store else _open_store(db)
    sweep_id = open_plan(store, plan, name) if store is not None else None
    _compile_before(plan, cluster)
    bar = tqdm(total=None, desc=label, unit="run", file=sys.stderr, delay=0.5, leave=False, disable=None)

    def event(done: int, total: int | None, phase: str) -> None:
        if total is not None and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.set_description(f"{label}: {phase}" if phase else label, refresh=False)
        bar.update(done - bar.n)

    try:
        with open_executor(cluster, workers, worker_env(store) if store is not None else None) as (executor, n):
            out = run_plan(plan, executor, n, store, sweep_id, event)
    except KeyboardInterrupt:
        bar.close()
        where = f"; rerun the same command to resume sweep {sweep_id}" if sweep_id is not None else ""
        raise click.ClickException(f"interrupted: every finished run is stored{where}") from None
    finally:
        bar.close()
    return out, sweep_id


def _echo_link(plan: dict, sweep_id: int | None) -> None:
    """Say where the web app shows a stored sweep, capacity search, suite or plan (standard error)."""
    from batchlab.store.sweep_jobs import plan_key

    if sweep_id is None:
        return
    what, page = ("plan", "plan") if plan["kind"] == "plan" else ("sweep", "sweeps")
    click.echo(f"stored as {what} {sweep_id}: the web app shows it at /{page}?{what}={plan_key(plan)}", err=True)


def _write_table(df, fmt: str, out: str | None, text: str | None = None) -> None:
    """Print or write a DataFrame as text, CSV or JSON (a file is written whole or not at all)."""
    from batchlab.core.output import write_text
    from batchlab.core.sweep_report import format_frame

    if fmt == "csv":
        data = df.to_csv(index=False)
    elif fmt == "json":
        data = to_json(json.loads(df.to_json(orient="records")))
    else:
        data = (text if text is not None else format_frame(df)) + "\n"
    if out:
        write_text(out, data)
        click.echo(f"wrote {len(df)} rows to {out}", err=True)
    else:
        click.echo(data, nl=False)


def _vary_values(vary: tuple[str, ...]) -> dict[str, list]:
    from batchlab.core.settings_text import SettingError
    from batchlab.core.sweep import parse_vary

    out: dict[str, list] = {}
    for text in vary:
        try:
            name, values = parse_vary(text)
        except SettingError as exc:
            raise _error(f"--vary {exc}") from None
        if name in out:
            raise click.BadParameter(f"{name} is varied twice", param_hint="--vary")
        out[name] = values
    return out


out_option = click.option("--out", type=click.Path(), callback=_output_file, default=None,
                          help="Write the table to this file instead of standard output.")


@cli.command()
@sim_options
@click.option("--vary", multiple=True, metavar="NAME=START:STOP:STEP|NAME=A,B,...",
              help="A setting to vary (repeatable; the grid is the product). Ranges include STOP.")
@click.option("--replications", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Seeds per grid point (replication r adds r to the workload and scheduler seeds).")
@click.option("--name", default=None, help="A name for the sweep in the store.")
@executor_options
@with_store_options
@format_options("the table")
@out_option
def sweep(config_file, vary, replications, name, cluster, workers, db, no_store, fmt, as_json, out, **flags):
    """Run a grid of settings in parallel, storing every run as it finishes.

    Re-running the same command resumes the same sweep: stored runs are skipped,
    failed ones retried. Example: batchlab sweep --vary rate=0.5:8:0.5
    --vary mode=static_fifo,multi_bin_dynamic --replications 3 --format csv
    """
    from batchlab.core.sweep import expand
    from batchlab.core.sweep_report import member_frame
    from batchlab.store.models import NAME
    from batchlab.store.sweep_jobs import grid_plan

    fmt = _chosen_format(fmt, as_json)
    if name is not None and not 0 < len(name) <= NAME.length:  # SQLite would store any length, PostgreSQL not
        raise click.ClickException(f"--name: 1 to {NAME.length} characters, got {len(name):,}")
    try:
        cfg, spec, _ = build_inputs(config_file, **flags)
        values = _vary_values(vary)
        members = expand(cfg, spec, values, replications)
        plan = grid_plan(cfg, spec, values, replications)
        result, sweep_id = _run_plan(plan, db, no_store, cluster, workers, f"sweep ({len(members)} runs)", name)
    except _sweep_errors() as exc:
        _fail(exc)
    df = member_frame(result.members)
    _write_table(df, fmt, out)
    where = f"sweep {sweep_id}: " if sweep_id is not None else ""
    click.echo(f"{where}{len(result.members)} runs, {result.skipped} already stored, "
               f"{len(result.failed)} failed", err=True)
    _echo_link(plan, sweep_id)
    if result.failed:
        raise SystemExit(1)


@cli.command()
@sim_options_without("mode", "rate")
@click.option("--mode", "modes", default="multi_bin_dynamic", show_default=True,
              help="Scheduler mode, or several comma-separated for a capacity comparison.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.99, show_default=True,
              help="SLA attainment the rate must keep (0.99 = 99 % of requests meet every enabled deadline).")
@click.option("--tolerance", type=click.FloatRange(1e-4, 0.5), default=0.02, show_default=True,
              help="Relative accuracy: the search stops when capacity c passes and c x (1 + tolerance/2) fails.")
@click.option("--replications", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Seeds; more than one gives a confidence interval.")
@click.option("--start-rate", type=_field_range("rate"), default=None,
              help="First rate probed [req/s] (default 1).")
@executor_options
@with_store_options
@format_options("the result (json: an object, a list for several modes; csv: a row per mode)")
def capacity(config_file, modes, target, tolerance, replications, start_rate, cluster, workers, db, no_store,
             fmt, as_json, **flags):
    """Find the highest arrival rate whose SLA attainment stays at or above --target.

    Brackets, then bisects on the rate with the same seeds at every rate (common
    random numbers). Capacity is a search, never a throughput. Exit status 3 when a
    mode misses the target even at the lowest rate searched, 1 when a run failed.
    """
    from batchlab.core.capacity import CapacityResult
    from batchlab.core.sweep_report import format_capacities
    from batchlab.store.sweep_jobs import capacity_plan

    fmt = _chosen_format(fmt, as_json)
    names = _mode_list(modes, "--mode")
    try:
        cfg, spec, _ = build_inputs(config_file, mode=names[0], **flags)
        plan = capacity_plan(cfg, spec, names, target, tolerance, replications, start_rate)
        result, sweep_id = _run_plan(plan, db, no_store, cluster, workers, "capacity")
    except _sweep_errors() as exc:
        _fail(exc)
    caps: list[CapacityResult] = result.capacities
    objs = [c.to_dict() for c in caps]
    _emit(fmt, objs[0] if len(objs) == 1 and fmt == "json" else objs, lambda: format_capacities(caps))
    if fmt == "text":
        _echo_link(plan, sweep_id)
    if any(c.status == "failed" for c in caps):
        raise SystemExit(EXIT_CODES["error"])
    if any(c.status == "unreachable" for c in caps):
        raise SystemExit(EXIT_CODES["target_not_met"])


PLAN_KNOBS = {"mode": "--modes", "gpus": "--max-gpus", "replicas": "--max-gpus (and --tp-candidates)",
              "k_bins": "--k-candidates", "b_max": "--b-max-candidates", "batch_size": "--batch-candidates",
              "disaggregate": "--pd-ratios"}
PLAN_LISTS = {"router": "--routers", "tp": "--tp-candidates"}  # one value as a flag, or a list of candidates


def _text_list(text: str, label: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values:
        raise click.BadParameter("needs at least one value", param_hint=label)
    return values


def _candidates_option(name: str, default: tuple[int, ...], what: str):
    return click.option(name, default=",".join(map(str, default)), show_default=True,
                        help=f"Comma-separated {what} the plan tries.")


@cli.command()
@sim_options_without(*PLAN_KNOBS)
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.99, show_default=True,
              help="SLA attainment to reach (0.99 = 99 % of requests meet every enabled deadline).")
@click.option("--modes", default=",".join(PLAN_MODES), show_default=True, help="Comma-separated modes to consider.")
@click.option("--max-gpus", type=click.IntRange(1, MAX_GPUS), default=PLAN_MAX_GPUS, show_default=True,
              help="The most GPUs to consider.")
@_candidates_option("--k-candidates", K_VALUES, "bin counts K (multi-bin modes)")
@_candidates_option("--b-max-candidates", B_MAX_VALUES, "B_max values (dynamic modes)")
@_candidates_option("--batch-candidates", BATCH_VALUES,
                    "batch caps B (static_fifo, multi_bin_fixed, continuous_static)")
@click.option("--routers", default=None, metavar="R1,R2,...",
              help="Comma-separated routers the continuous modes try (" + ", ".join(ROUTERS) + "; default: "
                   "--router's, least_outstanding unless given). Batch-level modes share one queue.")
@click.option("--tp-candidates", default=None, metavar="T1,T2,...",
              help="Comma-separated tensor-parallel sizes (GPUs per replica) to try (default: --tp's, 1 unless "
                   "given); a candidate of TP t runs floor(g / t) replicas within g GPUs.")
@click.option("--pd-ratios", default=None, metavar="P:D,...",
              help="Comma-separated prefill:decode ratios the continuous modes try, none for no disaggregation "
                   "(e.g. none,1:1,1:3). At R replicas a ratio p:d is P = R p / (p + d) prefill replicas "
                   "(rounded, 1 to R - 1) and R - P decode replicas. Default: no disaggregation.")
@click.option("--replications", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Seeds per configuration (replication r adds r to the workload and scheduler seeds).")
@click.option("--rule", type=click.Choice(PLAN_RULES), default="mean", show_default=True,
              help="When a configuration meets the target: mean = its mean attainment over the seeds; "
                   "lower = the lower end of its confidence interval (needs --replications >= 2).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--evidence/--no-evidence", default=True, show_default=True,
              help="Search each mode's capacity at the chosen GPU count (the evidence).")
@click.option("--tolerance", type=click.FloatRange(1e-4, 0.5), default=0.05, show_default=True,
              help="Relative accuracy of the evidence's capacity searches.")
@click.option("--pilot/--no-pilot", default=True, show_default=True,
              help="For a synthetic workload of 50,000 requests or more, first search on a tenth of them to "
                   "choose where the full-size search looks first (it decides nothing).")
@click.option("--gpus-from", default=None, metavar="GPU1,GPU2,...",
              help="Plan once per catalogue GPU (e.g. L4,H100; needs --model, not --gpu) and recommend the "
                   "cheapest meeting --target: GPUs x USD per GPU-hour (docs/hardware.md has the default prices).")
@click.option("--gpu-cost", default=None, metavar="GPU=USD,...",
              help="USD per GPU-hour overriding the default prices with --gpus-from, e.g. h100=2.5,l4=0.8.")
@executor_options
@with_store_options
@format_options("the plan (json: the whole plan as one object; csv: the configurations ranked at the answer, "
                "or with --gpus-from one row per GPU type)")
def plan(config_file, target, modes, max_gpus, k_candidates, b_max_candidates, batch_candidates, routers,
         tp_candidates, pd_ratios, replications, rule, confidence, evidence, tolerance, pilot, gpus_from, gpu_cost,
         cluster, workers, db, no_store, fmt, as_json, **flags):
    """Find the fewest GPUs, and the batching configuration, that meet --target at this traffic.

    The traffic is the workload's own: a synthetic workload at --rate (default 12 req/s),
    or a BurstGPT or Mooncake --trace at its own arrivals (--rps-scaling or --rate rescale them). The
    plan bisects on the GPU count (more GPUs do not lower attainment), trying each mode with
    its K, B_max or B, and its TP, router and prefill:decode ratio, from the candidate lists
    (GPUs = replicas x TP), ranks the configurations at the answer, and
    gives each mode's capacity there as evidence. Every run is stored, so planning again
    (e.g. with a tighter target) reuses them. Exit status 3 when no configuration meets the
    target with --max-gpus GPUs, 1 when a run failed. With --gpus-from, one plan per GPU type,
    priced, the cheapest meeting the target recommended (exit status 3 when no type meets it).
    """
    from batchlab.core.plan_options import PlanOptions, parse_gpu_costs, parse_gpu_types
    from batchlab.core.plan_report import format_plan, plan_rows
    from batchlab.store.sweep_jobs import gpu_plan

    fmt = _chosen_format(fmt, as_json)
    names = [m.strip() for m in modes.split(",") if m.strip()]
    try:
        cfg, spec, given = build_inputs(config_file, **flags)
        for name in sorted(given & set(PLAN_KNOBS)):
            raise ConfigError(name, f"the plan chooses it; set what it tries with {PLAN_KNOBS[name]}")
        lists = {"router": routers, "tp": tp_candidates}
        for name in sorted(n for n in given & set(PLAN_LISTS) if lists[n] is not None):
            raise ConfigError(name, f"the plan tries {PLAN_LISTS[name]}; give one or the other")
        options = PlanOptions(target=target, modes=tuple(names), max_gpus=max_gpus,
                              k_values=tuple(_int_list(k_candidates, "--k-candidates")),
                              b_max_values=tuple(_int_list(b_max_candidates, "--b-max-candidates")),
                              batch_values=tuple(_int_list(batch_candidates, "--batch-candidates")),
                              routers=None if routers is None else tuple(_text_list(routers, "--routers")),
                              tp_values=None if tp_candidates is None else tuple(
                                  _int_list(tp_candidates, "--tp-candidates")),
                              pd_ratios=None if pd_ratios is None else tuple(
                                  None if r.lower() in ("none", "off") else r
                                  for r in _text_list(pd_ratios, "--pd-ratios")),
                              replications=replications, rule=rule, confidence=confidence, evidence=evidence,
                              tolerance=tolerance, pilot=pilot)
        if gpu_cost is not None and gpus_from is None:
            raise click.BadParameter("prices the GPU types of --gpus-from: give --gpus-from too",
                                     param_hint="--gpu-cost")
        if gpus_from is not None:
            try:
                types = parse_gpu_types(gpus_from)
                costs = None if gpu_cost is None else parse_gpu_costs(gpu_cost)
            except ValueError as exc:
                raise click.BadParameter(str(exc).split(": ", 1)[1],
                                         param_hint="--gpu-cost" if str(exc).startswith("gpu_cost") else
                                         "--gpus-from") from None
            if "gpu" in given:
                raise ConfigError("gpu", "--gpus-from sets it per plan; give --gpu or --gpus-from, not both")
            if cfg.model is None:
                raise ConfigError("model", "--gpus-from needs --model (the weights and KV cache on each GPU)")
            options = dataclasses.replace(options, gpu_types=types, gpu_costs=costs)
        planned = gpu_plan(cfg, spec, options)
        result, sweep_id = _run_plan(planned, db, no_store, cluster, workers, "plan")
    except _sweep_errors() as exc:
        _fail(exc)
    answer = dict(result.answer, sweep_id=sweep_id)
    _emit(fmt, answer if fmt == "json" else plan_rows(answer), lambda: format_plan(answer))
    if fmt == "text":
        _echo_link(planned, sweep_id)
    if answer["status"] != "ok":
        raise SystemExit(EXIT_CODES["error" if answer["status"] == "failed" else "target_not_met"])


def _suite_titles() -> dict[int, str]:
    from batchlab.core.suite import step_titles

    return step_titles()


def _suite_steps(step: str) -> tuple[int, ...]:
    if step == "all":
        return (1, 2, 3)
    return tuple(int(s) for s in step.split(","))


@cli.command()
@click.option("--step", type=click.Choice(("1", "2", "3", "all")), default="all", show_default=True,
              help="; ".join(f"{n}: {text}" for n, text in _suite_titles().items()) + ".")
@click.option("--max-requests", type=click.IntRange(min=1), default=None,
              help="Cap every run's request count (a small suite).")
@executor_options
@with_store_options
@format_options("the tables")
@click.option("--out", "out_dir", type=click.Path(), callback=_output_folder, default=None,
              help="Write each step's table (CSV and JSON) and charts (SVG and PNG) into this folder.")
def suite(step, max_requests, cluster, workers, db, no_store, fmt, as_json, out_dir):
    """The stress suite: request scaling, GPU scaling, bin-count sensitivity (tables, charts, timings)."""
    from batchlab.core.suite import DISPLAY, SuitePlan
    from batchlab.core.sweep_report import format_frame
    from batchlab.store.sweep_jobs import suite_plan

    fmt = _chosen_format(fmt, as_json)
    t0 = time.perf_counter()
    try:
        plan = SuitePlan(steps=_suite_steps(step), max_requests=max_requests)
        result, sweep_id = _run_plan(suite_plan(plan), db, no_store, cluster, workers, "suite")
    except _sweep_errors() as exc:
        _fail(exc)
    wall = time.perf_counter() - t0
    tables = result.tables
    if fmt == "json":
        click.echo(to_json({"tables": {k: json.loads(v.to_json(orient="records")) for k, v in tables.items()},
                            "step_seconds": result.step_seconds, "total_seconds": wall, "sweep_id": sweep_id}))
    else:
        for name, df in tables.items():
            click.echo(f"\n{name}" if fmt == "text" else f"# {name}")
            click.echo(format_frame(df, DISPLAY.get(name)) if fmt == "text" else df.to_csv(index=False),
                       nl=fmt == "text")
        split = ", ".join(f"step {k} {v:.1f} s" for k, v in result.step_seconds.items())
        click.echo(f"\nsuite: {wall:.1f} s ({split}); {len(result.members)} runs + "
                   f"{sum(len(c.probes) for c in result.capacities)} capacity probes, {result.skipped} already stored"
                   + (f"; sweep {sweep_id}" if sweep_id is not None else ""), err=fmt != "text")
        _echo_link(suite_plan(plan), sweep_id)
    if out_dir:
        from batchlab.webapp.sweep_charts import save_suite

        for path in save_suite(tables, Path(out_dir)):
            click.echo(f"wrote {path}", err=True)
    if result.failed:
        raise SystemExit(1)


@cli.command()
@click.argument("paper", type=click.Choice(("paper1", "paper2")))
@click.option("--workers", type=click.IntRange(1, 4096), default=None, help="Worker processes (default: CPUs).")
@format_options("the tables")
def reproduce(paper, workers, fmt, as_json):
    """Reproduce a paper's figures beside its formulas (paper1: Guldogan et al.; paper2: Pang et al.)."""
    from batchlab.core.reproduce import reproduce as run_reproduction
    from batchlab.core.reproduce import text_table
    from batchlab.core.sweep_report import format_frame

    fmt = _chosen_format(fmt, as_json)
    try:
        tables = run_reproduction(paper, workers=workers)
    except _sweep_errors() as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(to_json({k: json.loads(v.to_json(orient="records")) for k, v in tables.items()}))
        return
    for name, df in tables.items():
        click.echo(f"\n{name}" if fmt == "text" else f"# {name}")
        click.echo(format_frame(text_table(name, df)) if fmt == "text" else df.to_csv(index=False),
                   nl=fmt == "text")


@cli.group()
def workload():
    """Build workloads and write them as trace files (see docs/traces.md)."""


@workload.command("export")
@click.option("--to", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="The trace format to write (docs/traces.md).")
@click.option("--out", type=click.Path(), callback=_output_file, required=True,
              help="Output file ('-' = standard output).")
@sim_options_without(*(f.name for f in config_fields()))
def workload_export(fmt, out, config_file, **flags):
    """Build a workload (synthetic or a trace window, as `run` would) and write it as a trace file that
    reads back to the same arrivals, prompts and outputs."""
    from batchlab.core.output import written
    from batchlab.workloads import build_workload

    try:
        _, spec, _ = build_inputs(config_file, **flags)
        w = build_workload(spec)
        if out == "-":
            export_workload(w, fmt, sys.stdout)
        else:
            with written(out) as fh:
                export_workload(w, fmt, fh)
    except (ConfigError, WorkloadError, OSError) as exc:
        _fail(exc)
    if out != "-":
        block = f" (read it back with --hash-block {w.prefix.block})" if fmt == "mooncake" and w.prefix else ""
        click.echo(f"wrote {len(w):,} requests to {out} as {fmt}{block}", err=True)


def main() -> None:
    cli(prog_name="batchlab")


if __name__ == "__main__":
    main()
