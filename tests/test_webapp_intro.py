"""The Run and Compare pages open with a hint that names the real defaults, and the batch-size help's
example holds."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from batchlab.core.config import MODES, SimConfig
from batchlab.core.simulation import simulate
from batchlab.webapp import forms, intro
from batchlab.webapp.state import DEFAULT_COMPARE, default_settings
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.spec import SYNTHETIC_RATE, SYNTHETIC_REQUESTS

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")


def test_run_hint_names_the_forms_defaults():
    sim = SimConfig()
    settings = default_settings()
    assert settings["source"] == "synthetic" and settings["sim"]["mode"] == sim.mode
    hint = intro.run_hint()
    for fact in (f"{SYNTHETIC_REQUESTS:,} ", f" {SYNTHETIC_RATE:g} req/s", f"on {sim.gpus} GPUs", f"`{sim.mode}`"):
        assert fact in hint, fact


def test_compare_hint_names_every_default_mode_and_no_other():
    hint = intro.compare_hint()
    assert [m for m in MODES if f"`{m}`" in hint] == [m for m in MODES if m in DEFAULT_COMPARE]
    assert f"{SYNTHETIC_REQUESTS:,} synthetic requests at {SYNTHETIC_RATE:g} req/s" in hint
    assert default_settings()["modes"] == list(DEFAULT_COMPARE)


def test_batch_size_help_example_holds():
    """'static FIFO with B = 16 at 1 req/s on the default workload averages about 1.7 requests'."""
    assert "B = 16 at 1 req/s on the default workload averages about 1.7 requests" in forms.EXTRA_HELP["batch_size"]
    workload = build_workload(WorkloadSpec(rate=1.0))
    summary = simulate(SimConfig(mode="static_fifo", batch_size=16), workload).summary
    assert 1.6 <= summary["mean_batch_size"] < 1.8


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
@pytest.mark.parametrize("page, hint", [("run", intro.run_hint), ("compare", intro.compare_hint)])
def test_pages_open_with_their_hint(page, hint):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page != "run":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    assert hint() in [i.value for i in at.info]
