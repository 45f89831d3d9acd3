"""batchlab command line: thin glue above core, workloads, calibration and store.

Nothing imports this module. Every SimConfig and WorkloadSpec field is a flag
(``--k-bins``, ``--d-sla-tbt none``, ...); ``--config FILE`` (TOML or JSON, flat
or with [sim]/[workload] tables) supplies defaults that flags override.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from core.config import MODES, ConfigError, SimConfig, config_fields
from workloads.spec import WorkloadSpec, spec_fields
from workloads.workload import WorkloadError

COMPARE_MODES = ("static_fifo", "dynamic_no_bins", "multi_bin_dynamic")


# ----------------------------------------------------------- flag builders --
class _NoneOr(click.ParamType):
    """A number that may also be 'none' (a disabled deadline, no limit) or 'auto'."""

    def __init__(self, inner: type):
        self.inner = inner
        self.name = f"{inner.__name__}|none"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off", "auto", "")):
            return None
        try:
            return self.inner(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {self.inner.__name__} or 'none'", param, ctx)


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
    help_text += f" (default: {f.default})"
    if kind.startswith("bool"):
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
    choices = f.metadata.get("choices")
    if choices:
        ptype: Any = click.Choice(choices)
    elif kind.endswith("| None"):
        ptype = _NoneOr(int if kind.startswith("int") else float if kind.startswith("float") else str)
    else:
        ptype = {"int": int, "float": float}.get(kind, str)
    return click.option(flag, f.name, type=ptype, default=None, help=help_text)


def sim_options(func):
    """Attach every SimConfig and WorkloadSpec field as a flag, plus --config."""
    seen: set[str] = set()
    opts = [_field_option(f, seen) for f in config_fields() + spec_fields()]
    for opt in reversed([o for o in opts if o is not None]):
        func = opt(func)
    return click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                        help="TOML or JSON file of settings (flags override it).")(func)


def _read_config_file(path: str | None) -> dict:
    if not path:
        return {}
    text = Path(path).read_text()
    try:
        data = tomllib.loads(text) if not path.endswith(".json") else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{path}: not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}")
    flat: dict = {}
    for key, value in data.items():
        if key in ("sim", "workload") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def build_inputs(config_file: str | None, **flags) -> tuple[SimConfig, WorkloadSpec]:
    """Merge the config file and the given flags into a SimConfig and a WorkloadSpec."""
    values = _read_config_file(config_file)
    values.update({k: v for k, v in flags.items() if v is not None})
    sim_names = {f.name for f in config_fields()}
    spec_names = {f.name for f in spec_fields()}
    unknown = sorted(set(values) - sim_names - spec_names)
    if unknown:
        raise ConfigError(unknown[0], "unknown setting in the config file")
    cfg = SimConfig(**{k: v for k, v in values.items() if k in sim_names})
    spec = WorkloadSpec(**{k: v for k, v in values.items() if k in spec_names})
    return cfg, spec


# ---------------------------------------------------------------- helpers --
class _Progress:
    """A tqdm bar that appears only when a run takes more than half a second."""

    def __init__(self, label: str):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=label, delay=0.5, leave=False, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def __call__(self, fraction: float) -> None:
        self.bar.update(int(fraction * 1000) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _clean(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _dump(obj) -> str:
    return json.dumps(_clean(obj), default=_json_default, indent=2)


def _pct(v) -> str:
    return "off" if v is None else f"{100 * v:.1f} %"


def _secs(v: float) -> str:
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def format_summary(s: dict, workload_label: str, source: str) -> str:
    lines = [
        f"{s['mode']}: {s['gpus']} GPU(s), {s['k_bins']} bin(s) | {workload_label} | {source}",
        f"  requests         {s['completed']:,} of {s['num_requests']:,} in {s['makespan_s']:,.1f} s",
        f"  throughput       {s['throughput_rps']:.3f} req/s, {s['throughput_tps']:,.1f} output tok/s",
        f"  latency (e2e)    mean {_secs(s['latency_mean_s'])}, p50 {_secs(s['latency_p50_s'])}, "
        f"p95 {_secs(s['latency_p95_s'])}, p99 {_secs(s['latency_p99_s'])}",
        f"  TTFT             mean {_secs(s['ttft_mean_s'])}, p99 {_secs(s['ttft_p99_s'])}; "
        f"queueing mean {_secs(s['queue_delay_mean_s'])}",
        f"  TBT              mean {_secs(s['tbt_mean_s'])}, p99 {_secs(s['tbt_p99_s'])}",
        f"  SLA attainment   {_pct(s['sla_attainment'])} (violations: TTFT {_pct(s['sla_violation_rate_ttft'])}, "
        f"TBT {_pct(s['sla_violation_rate_tbt'])}, E2E {_pct(s['sla_violation_rate_e2e'])})",
        f"  GPU utilisation  {_pct(s['gpu_utilization'])} over the whole horizon",
        f"  batches          {s['num_batches']:,}, mean size {s['mean_batch_size']:.1f}, max {s['batch_size_max']}"
        f", memory-truncated {s['mem_truncated_batches']:,}",
    ]
    if "sla_branch_counts" in s:
        c = s["sla_branch_counts"]
        lines.append(f"  controllers      mean b_mem {s['b_mem_mean']:.1f}, mean b_SLA {s['b_sla_mean']:.1f}; "
                     f"Algorithm 2 branches over {c['over']}, under {c['under']}, within {c['within']}")
    if len(s["bins"]) > 1:
        lines.append("  bin  predicted len     requests  mean b  latency mean   p99      SLA")
        for b in s["bins"]:
            if not b["requests"]:
                lines.append(f"  {b['bin']:>3}  {b['pred_lo']:>6.0f}-{b['pred_hi']:<8.0f}  {0:>9}")
                continue
            lines.append(f"  {b['bin']:>3}  {b['pred_lo']:>6.0f}-{b['pred_hi']:<8.0f}  {b['requests']:>9,}"
                         f"  {b['mean_batch_size']:>6.1f}  {_secs(b['latency_mean_s']):>10}  "
                         f"{_secs(b['latency_p99_s']):>8}  {_pct(b['sla_attainment']):>7}")
    notes = s.get("latency_notes") or {}
    if notes.get("extrapolated_queries"):
        lines.append(f"  note: {notes['extrapolated_queries']:,} latency queries were extrapolated "
                     "beyond the calibration grid")
    return "\n".join(lines)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


# --------------------------------------------------------------- commands --
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", is_flag=True, help="Log details to stderr.")
def cli(verbose: bool) -> None:
    """batchlab: simulate and compare batching schedulers for LLM inference."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _simulate(cfg: SimConfig, spec: WorkloadSpec, label: str):
    from core import simulate
    from workloads import build_workload

    workload = build_workload(spec)
    bar = _Progress(label)
    try:
        result = simulate(cfg, workload, progress=bar)
    finally:
        bar.close()
    return workload, result, "simulated"


@cli.command()
@sim_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def run(config_file, as_json, **flags):
    """Simulate one scheduler on one workload (no flags: the documented default run)."""
    try:
        cfg, spec = build_inputs(config_file, **flags)
        workload, result, source = _simulate(cfg, spec, cfg.mode)
    except (ConfigError, WorkloadError, OSError) as exc:
        _fail(exc)
    summary = dict(result.summary, source=source)
    if as_json:
        click.echo(_dump(summary))
    else:
        click.echo(format_summary(summary, workload.identity.get("label", "workload"), source))


@cli.command()
@sim_options
@click.option("--modes", default=",".join(COMPARE_MODES), show_default=True,
              help="Comma-separated scheduler modes to compare.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of summaries.")
def compare(config_file, modes, as_json, **flags):
    """Run several scheduler modes on the same workload and tabulate them."""
    names = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise click.BadParameter(f"unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}",
                                 param_hint="--modes")
    try:
        base, spec = build_inputs(config_file, **flags)
        rows = []
        for mode in names:
            cfg = base.replace(mode=mode)
            workload, result, source = _simulate(cfg, spec, mode)
            rows.append(dict(result.summary, source=source))
    except (ConfigError, WorkloadError, OSError) as exc:
        _fail(exc)
    if as_json:
        click.echo(_dump(rows))
        return
    click.echo(f"workload: {workload.identity.get('label', 'workload')} ({len(workload):,} requests)")
    click.echo(format_compare_table(rows))


def format_compare_table(rows: list[dict]) -> str:
    metrics = [
        ("throughput (req/s)", "throughput_rps", "{:.3f}"),
        ("throughput (tok/s)", "throughput_tps", "{:,.1f}"),
        ("latency mean (s)", "latency_mean_s", "{:.2f}"),
        ("latency p99 (s)", "latency_p99_s", "{:.2f}"),
        ("TTFT p99 (s)", "ttft_p99_s", "{:.2f}"),
        ("TBT mean (ms)", "tbt_mean_s", "ms"),
        ("SLA attainment", "sla_attainment", "pct"),
        ("TTFT violations", "sla_violation_rate_ttft", "pct"),
        ("TBT violations", "sla_violation_rate_tbt", "pct"),
        ("E2E violations", "sla_violation_rate_e2e", "pct"),
        ("GPU utilisation", "gpu_utilization", "pct"),
        ("mean batch size", "mean_batch_size", "{:.1f}"),
        ("source", "source", "{}"),
    ]
    width = max(18, *(len(r["mode"]) for r in rows)) + 2
    out = ["metric".ljust(20) + "".join(r["mode"].rjust(width) for r in rows)]
    for label, key, fmt in metrics:
        cells = []
        for r in rows:
            v = r.get(key)
            if fmt == "pct":
                cells.append(_pct(v))
            elif fmt == "ms":
                cells.append(f"{v * 1000:.1f}")
            else:
                cells.append(fmt.format(v))
        out.append(label.ljust(20) + "".join(c.rjust(width) for c in cells))
    return "\n".join(out)


@cli.command()
@click.option("--requests", "num_requests", default=1_000_000, show_default=True, help="Requests per run.")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Comma-separated modes.")
@click.option("--scenarios", default="overload,light", show_default=True,
              help="overload (GPUs always busy, big batches) and/or light (every request its own batch).")
@click.option("--repeats", default=3, show_default=True, help="Runs per case; the median is reported.")
@click.option("--gpus", default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench(num_requests, modes, scenarios, repeats, gpus, as_json):
    """Measure simulated requests per second and peak memory (each run in a fresh process)."""
    from core.bench import run_bench

    rows = run_bench(num_requests, [m.strip() for m in modes.split(",")],
                     [s.strip() for s in scenarios.split(",")], repeats, gpus,
                     echo=None if as_json else click.echo)
    if as_json:
        click.echo(_dump(rows))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
