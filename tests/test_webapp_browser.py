"""The web app in a real browser: ``streamlit run`` on 127.0.0.1 driven by Playwright with
Debian's chromium. Uploads a grid (invalid, then valid, then saves it), runs a 10,000-request
three-scheduler comparison from the form, reopens a stored run by its URL, opens History.

Timings (written to test-artifacts/browser_timings.json, screenshots next to it):
* compare: pressing "Run comparison" -> all 11 charts drawn (browser clock);
* stored run: navigation start of ``/?run=<hash>`` -> its 6 charts drawn (median of 3 loads).
The browser's cache is warm by then (the grid step loaded the chart code), as for any user
after the first page. The assertions allow SLACK x the targets (3 s, 1 s) so a busy CI machine
does not fail them; the measured numbers are printed and saved.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from calibration import bundled_grids

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "webapp" / "app.py"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SLACK = float(os.environ.get("BATCHLAB_BROWSER_SLACK", "2.0"))
COMPARE_CHARTS = 11  # CDF, violations, 2 throughput, GPU util, 3 batch-size, 2 controller, histogram
RUN_CHARTS = 6

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (.ci/run installs Debian's "
                                                           "chromium; Playwright cannot download browsers here)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run webapp/app.py`` with a private BATCHLAB_HOME (SQLite store inside it)."""
    home = tmp_path_factory.mktemp("browser-home")
    port = _free_port()
    env = {**os.environ, "BATCHLAB_HOME": str(home), "BATCHLAB_CACHE_DIR": str(home / "cache"),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop("BATCHLAB_DB_URL", None)
    log = open(home / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 40
        while True:
            try:
                with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("streamlit did not start:\n" + (home / "streamlit.log").read_text()[-3000:])
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000})
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        try:
            yield pg
        finally:
            ctx.close()


CHARTS_JS = ("n => document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
             "[data-testid=stVegaLiteChart] svg').length >= n ? performance.now() : false")


def _charts_drawn_at(page, n: int, timeout_ms: int = 30_000) -> float:
    """performance.now() (ms) at the first animation frame with ``n`` charts drawn."""
    return page.wait_for_function(CHARTS_JS, arg=n, polling="raf", timeout=timeout_ms).json_value()


def _shot(page, name: str, height: int = 3600) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1600, "height": height})
    page.wait_for_timeout(600)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    page.set_viewport_size({"width": 1600, "height": 1000})


def _upload(page, name: str, data: bytes) -> None:
    page.locator("[data-testid=stFileUploaderDropzoneInput]").first.set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}])


def test_browser_grid_upload_compare_and_stored_run(server, page):
    timings: dict = {}

    # --- Calibration: an invalid grid names line and column; a valid one is drawn and saved
    page.goto(server + "/calibration")
    page.get_by_role("heading", name="Calibration grids").wait_for()
    _upload(page, "broken.csv", b"batch_size,context_len,prefill_s,decode_step_s\n1,1,0.1,0.01\n1,2,abc,0.01\n")
    error = page.get_by_text("line 3, column 'prefill_s'", exact=False)
    error.wait_for()
    assert "Traceback" not in page.content()
    _upload(page, "browser-grid.csv", bundled_grids()["qwen3-4b-sglang"].read_bytes())
    page.get_by_text("Valid grid: 95 cells", exact=False).wait_for()
    page.get_by_text("Uploaded grid", exact=False).first.wait_for()
    _charts_drawn_at(page, 2)
    page.get_by_role("button", name="Save to the store").click()
    page.get_by_text("grid:browser-grid", exact=False).first.wait_for()
    _shot(page, "calibration.png", 1400)

    # --- Compare: 10,000 requests x 3 schedulers from the form, timed press -> charts
    page.goto(server + "/compare")
    run_button = page.get_by_role("button", name="Run comparison")
    run_button.wait_for()
    page.get_by_text("Scheduler modes", exact=True).wait_for()
    t0 = page.evaluate("performance.now()")
    run_button.click()
    t1 = _charts_drawn_at(page, COMPARE_CHARTS)
    timings["compare_10k_3_schedulers_s"] = round((t1 - t0) / 1000, 3)
    page.get_by_text("3 runs: 3 simulated", exact=False).wait_for()
    page.wait_for_url("**compare=*")
    hashes = page.url.split("compare=", 1)[1].split("&", 1)[0].replace("%2C", ",").split(",")
    assert len(hashes) == 3 and all(len(h) == 64 for h in hashes)
    page.locator("[data-testid=stTable]").first.wait_for()  # the metrics table
    assert "SLA attainment" in page.locator("[data-testid=stTable]").first.inner_text()
    _shot(page, "compare.png", 4200)

    # --- A stored run's shareable URL: navigation start -> its charts drawn (fresh session each time)
    loads = []
    for _ in range(3):
        page.goto(f"{server}/?run={hashes[2]}")
        loads.append(round(_charts_drawn_at(page, RUN_CHARTS) / 1000, 3))
    timings["stored_run_page_s"] = statistics.median(loads)
    timings["stored_run_page_loads_s"] = loads
    page.get_by_text("multi_bin_dynamic · 4 GPUs · 4 bins").wait_for()
    _shot(page, "run.png", 2200)

    # --- History lists the three runs; the Run page's form with defaults
    page.goto(server + "/history")
    page.get_by_text("3 stored runs match", exact=False).wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    _shot(page, "history.png", 1000)
    page.goto(server + "/")
    page.get_by_role("button", name="Run simulation").wait_for()
    _shot(page, "run_form.png", 1300)
    assert "Traceback" not in page.content()

    timings.update({"targets_s": {"compare": 3.0, "stored_run_page": 1.0}, "slack": SLACK,
                    "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()})
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser_timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print("\nbrowser timings:", json.dumps(timings))
    assert timings["compare_10k_3_schedulers_s"] < 3.0 * SLACK
    assert timings["stored_run_page_s"] < 1.0 * SLACK
