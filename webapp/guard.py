"""What a web user may name: the one policy every web entry point applies before anything is built or launched.

Every web input is hostile: it never names a server file, a host or code. Of all the settings
(``batchlab run``'s), two can name a file, and the web allows:

* ``trace``: a bundled excerpt (with or without ``.csv``), or a trace uploaded in this session:
  the Run and Compare pages read an upload's bytes (the setting is then only its file name);
  the Plan page saves an upload under the data home, named by its content, and remembers the
  path in the session (:func:`remember_upload`). Never a path a user typed.
* ``latency``: ``parametric``, or ``grid:NAME`` where NAME is a grid name (a bundled grid, or one
  stored through the Calibration page), looked up by name only: never ``grid:PATH`` or ``grid:X.csv``.

Hosts are not settings: the Dask clusters a page offers are the operator's (:mod:`webapp.clusters`).
A refused value is a one-line error naming the setting and saying what is allowed; it quotes at
most a short prefix of the value, and nothing is read.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator

from batchlab.calibration import bundled_grids
from batchlab.calibration.resolve import NAME_RE, is_grid_path
from batchlab.calibration.schema import excerpt
from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.suite import SuitePlan
from batchlab.core.sweep import expand
from batchlab.workloads.burstgpt import bundled_traces
from batchlab.workloads.spec import SpecError, WorkloadSpec

UPLOADS = "_uploaded_traces"  # session state: the paths of the traces this session saved
SHOWN = 40  # characters of a refused value a message quotes


def bundled_trace(value: str) -> bool:
    """True for the name of a bundled trace excerpt, with or without ``.csv``."""
    return str(value).removesuffix(".csv") in bundled_traces()


def trace_problem(trace: str, uploads: Collection[str] = ()) -> str | None:
    """Why the web cannot use ``trace`` (None when it can): it must be bundled or one of ``uploads``."""
    if bundled_trace(trace) or trace in uploads:
        return None
    return (f"trace: the web reads a bundled trace ({', '.join(bundled_traces())}) or a trace (BurstGPT CSV, "
            f"Mooncake JSONL) uploaded in this session, not {excerpt(trace, SHOWN)}")


def latency_problem(latency: str) -> str | None:
    """Why the web cannot use ``latency`` (None when it can): parametric, roofline (from the bundled
    catalogues), or grid:NAME by name."""
    if not str(latency).startswith("grid:"):
        return None  # parametric or roofline (SimConfig refuses anything else)
    ref = str(latency)[len("grid:"):].strip()
    if ref in bundled_grids() or (NAME_RE.fullmatch(ref) and not is_grid_path(ref)):
        return None
    return (f"latency: the web takes parametric or grid:NAME, a bundled grid or one stored on the Calibration "
            f"page (never a file), not {excerpt(latency, SHOWN)}")


def link_trace_problem(trace: str) -> str | None:
    """Why a link cannot carry ``trace``: a link names a bundled trace, or the file name of an upload
    (which it cannot carry; the page asks for the file), never a path."""
    text = str(trace)
    plain = text and not text.startswith((".", "~")) and not any(c in text for c in "/\\\0")
    if bundled_trace(text) or (plain and len(text) <= 255):
        return None
    return (f"trace: a link names a bundled trace or an uploaded file's name, never a path, not "
            f"{excerpt(text, SHOWN)}")


def check(config: SimConfig, spec: WorkloadSpec, uploads: Collection[str] = ()) -> None:
    """Raise SpecError or ConfigError unless every file-naming setting is one the web allows."""
    problem = trace_problem(spec.trace, uploads)
    if problem:
        raise SpecError("trace", problem.removeprefix("trace: "))
    problem = latency_problem(config.latency)
    if problem:
        raise ConfigError("latency", problem.removeprefix("latency: "))


def plan_runs(plan: dict) -> Iterator[tuple[SimConfig, WorkloadSpec]]:
    """Every (config, spec) a stored plan (``store.sweep_jobs``) bases its runs on: each grid point,
    a capacity search's or a capacity plan's base, each suite member."""
    kind = plan.get("kind")
    if kind == "suite":
        suite = SuitePlan.from_dict(plan["suite"])
        for step in suite.steps:
            yield from ((m.config, m.spec) for m in suite.members(step))
        if 3 in suite.steps:
            yield from suite.capacity_bases()[0]
        return
    config, spec = SimConfig.from_dict(plan["config"]), WorkloadSpec.from_dict(plan["spec"])
    if kind == "grid":
        yield from ((m.config, m.spec) for m in expand(config, spec, plan["vary"], plan["replications"]))
    else:
        yield config, spec


def check_plan(plan: dict, uploads: Collection[str] = ()) -> None:
    """:func:`check` on every run a plan is based on (its form's values, every Vary value, a Resume)."""
    for config, spec in plan_runs(plan):
        check(config, spec, uploads)


# ----------------------------------------------------------------- session --
def remember_upload(path: str) -> None:
    """Allow the trace this session just saved at ``path`` (and nothing else new)."""
    import streamlit as st

    st.session_state[UPLOADS] = session_uploads() | {str(path)}


def session_uploads() -> frozenset[str]:
    """The traces this session saved (their paths)."""
    import streamlit as st

    return frozenset(st.session_state.get(UPLOADS, ()))
