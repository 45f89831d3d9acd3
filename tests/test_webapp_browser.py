"""The web app in a real browser: ``streamlit run`` on 127.0.0.1 driven by Playwright with
Debian's chromium, at the two window sizes a reviewer used (1400x2000 and 900x1200).

* a grid upload (invalid, then valid, saved), a 10,000-request three-scheduler comparison,
  a stored run reopened by its URL, History;
* typed request count and arrival rate take effect, and no metric card is truncated
  (a value's scrollWidth never exceeds its clientWidth) at either size; History and the
  comparison table fit a 900 px window;
* leaving the page during a 1,000,000-request run: the run is stored, no row is ``failed``,
  and the page shows the result on return;
* a comparison link opened on an empty store and on a store holding one of its runs
  rebuilds every run;
* no request leaves the machine (the favicon included).

Timings are written to test-artifacts/browser_timings.json (screenshots next to it) for the
README; no test asserts a measured time.
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

from batchlab.calibration import bundled_grids
from batchlab.core.config import COMPARE_MODES, SimConfig

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "webapp" / "app.py"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# CDF, violations, 2 throughput, GPU use, running, KV use, 2 batch-size (batch-level), 2 controllers, sizes
COMPARE_CHARTS = 12
RUN_CHARTS = 7
N = len(COMPARE_MODES)                          # the default comparison
DEFAULT_RUN = COMPARE_MODES.index(SimConfig().mode)

WIDE, NARROW = {"width": 1400, "height": 2000}, {"width": 900, "height": 1200}
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (.ci/run installs Debian's "
                                                           "chromium; Playwright cannot download browsers here)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run webapp/app.py`` with a private BATCHLAB_HOME (SQLite store inside it)."""

    def __init__(self, home: Path):
        self.home = home
        port = _free_port()
        env = {**os.environ, "BATCHLAB_HOME": str(home), "BATCHLAB_CACHE_DIR": str(home / "cache"),
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        env.pop("BATCHLAB_DB_URL", None)
        self.log = open(home / "streamlit.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("streamlit did not start:\n" + (home / "streamlit.log").read_text()[-3000:])
            time.sleep(0.25)

    def store(self):
        from batchlab.store import open_store

        return open_store(f"sqlite:///{self.home / 'batchlab.db'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Start servers on demand (each with its own empty store); all stopped at the end."""
    started: list[Server] = []

    def start() -> Server:
        started.append(Server(tmp_path_factory.mktemp("browser-home")))
        return started[-1]

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport=WIDE)
        ctx.outside = []  # every request that left 127.0.0.1
        ctx.on("request", lambda r: ctx.outside.append(r.url) if not r.url.startswith(
            ("http://127.0.0.1:", "data:", "blob:", "about:")) else None)
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser_context):
    pg = browser_context.new_page()
    pg.set_default_timeout(120_000)  # generous: a loaded CI machine is slow, never wrong
    try:
        yield pg
    finally:
        assert browser_context.outside == [], f"requests left the machine: {browser_context.outside[:5]}"
        pg.close()


CHARTS_JS = ("n => document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
             "[data-testid=stVegaLiteChart] svg').length >= n ? performance.now() : false")


def _charts_drawn_at(page, n: int, timeout_ms: int = 120_000) -> float:
    """performance.now() (ms) at the first animation frame with ``n`` charts drawn."""
    return page.wait_for_function(CHARTS_JS, arg=n, polling="raf", timeout=timeout_ms).json_value()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# (text, scrollWidth, clientWidth) of each metric card's value and label: truncated iff scroll > client
CARDS_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid=stMetricValue] [data-testid=stMarkdownContainer], [data-testid=stMetricLabel] '
    + '[data-testid=stMarkdownContainer]')).map(e => [e.textContent, e.scrollWidth, e.clientWidth])"""
# (scrollWidth, clientWidth) of the elements that scroll a grid or a table sideways
SIDEWAYS_JS = """sel => Array.from(document.querySelectorAll(sel)).map(e => [e.scrollWidth, e.clientWidth])"""


def _wait_cards(page, n: int = 6) -> list:
    page.wait_for_function(f"document.querySelectorAll('[data-testid=stMetricValue]').length >= {n}")
    page.wait_for_timeout(300)  # fonts and layout settle
    return page.evaluate(CARDS_JS)


def _nav(page, title: str) -> None:
    page.get_by_role("link", name=title, exact=True).first.click()


def _upload(page, name: str, data: bytes) -> None:
    page.locator("[data-testid=stFileUploaderDropzoneInput]").first.set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}])


def test_browser_grid_upload_compare_and_stored_run(server, page):
    page.set_viewport_size(WIDE)
    base = server.url
    timings: dict = {}

    # --- Calibration: an invalid grid names line and column; a valid one is drawn and saved
    page.goto(base + "/calibration")
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
    _shot(page, "calibration.png")

    # --- Compare: 10,000 requests x 3 schedulers from the form, timed press -> charts
    page.goto(base + "/compare")
    run_button = page.get_by_role("button", name="Run comparison")
    run_button.wait_for()
    page.get_by_text("Scheduler modes", exact=True).wait_for()
    t0 = page.evaluate("performance.now()")
    run_button.click()
    t1 = _charts_drawn_at(page, COMPARE_CHARTS)
    timings["compare_10k_3_schedulers_s"] = round((t1 - t0) / 1000, 3)
    page.get_by_text(f"{N} runs: {N} simulated", exact=False).wait_for()
    page.wait_for_url("**compare=*")
    hashes = page.url.split("compare=", 1)[1].split("&", 1)[0].replace("%2C", ",").split(",")
    assert len(hashes) == N and all(len(h) == 64 for h in hashes)
    page.locator("[data-testid=stTable]").first.wait_for()  # the metrics table
    assert "SLA attainment" in page.locator("[data-testid=stTable]").first.inner_text()
    assert "modes=static_fifo" in page.url, "the link names its modes, defaults included"
    _shot(page, "compare.png")
    (ARTIFACTS / "compare_link.txt").write_text(page.url + "\n")

    # --- A stored run's shareable URL: navigation start -> its charts drawn (fresh session each time)
    loads = []
    for _ in range(3):
        page.goto(f"{base}/?run={hashes[DEFAULT_RUN]}")
        loads.append(round(_charts_drawn_at(page, RUN_CHARTS) / 1000, 3))
    timings["stored_run_page_s"] = statistics.median(loads)
    timings["stored_run_page_loads_s"] = loads
    page.get_by_text("continuous_dynamic · 4 GPUs · router least_outstanding · 1 bin").wait_for()
    _shot(page, "run.png")

    # --- History lists the three runs; the Run page's form with defaults
    page.goto(base + "/history")
    page.get_by_text(f"{N} stored runs match", exact=False).wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    _shot(page, "history.png")
    page.goto(base + "/")
    page.get_by_role("button", name="Run simulation").wait_for()
    _shot(page, "run_form.png")
    assert "Traceback" not in page.content()

    timings.update({"targets_s": {"compare": 3.0, "stored_run_page": 1.0},
                    "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()})
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser_timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print("\nbrowser timings (recorded, not asserted):", json.dumps(timings))


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["1400x2000", "900x1200"])
def test_browser_typed_values_take_effect_and_nothing_is_cut(server, page, size):
    """Typed requests and rate are what runs; no card, table or grid is cut at either size."""
    page.set_viewport_size(size)
    w = size["width"]
    page.goto(server.url + "/")
    page.get_by_role("button", name="Run simulation").wait_for()
    page.get_by_label("Requests", exact=True).fill("1500")
    page.get_by_label("Arrival rate (req/s)", exact=True).fill("5")
    page.get_by_role("button", name="Run simulation").click()
    cards = _wait_cards(page, 7)   # six headline cards and, on 4 replicas, the load imbalance
    page.get_by_text("1,500 req", exact=False).first.wait_for()
    header = page.locator("[data-testid=stMarkdownContainer]", has_text="Workload run:").first.inner_text()
    assert "1,500 req" in header and "at 5 req/s" in header, header
    assert "num_requests=1500" in page.url and "rate=5.0" in page.url
    assert len(cards) == 14, cards   # 7 cards (label and value each): 6, and on 4 replicas the load imbalance
    cut = [c for c in cards if c[1] > c[2]]
    assert not cut, f"truncated at {w} px: {cut}"
    assert page.get_by_role("button", name="Run simulation").count() == 0, "the settings folded away"
    _shot(page, f"run_{w}.png")

    # a comparison of the same settings: its metrics table is not cut either
    _nav(page, "Compare")
    page.get_by_role("button", name="Run comparison").click()
    _charts_drawn_at(page, COMPARE_CHARTS)
    page.get_by_text(f"{N} runs compared").wait_for()
    page.locator("[data-testid=stTable]").first.wait_for()
    tables = page.evaluate(SIDEWAYS_JS, "[data-testid=stTable] > div, [data-testid=stTable] table")
    assert tables and all(sw <= cw + 1 for sw, cw in tables), tables
    _shot(page, f"compare_{w}.png")

    # History fits: its grid does not scroll sideways
    _nav(page, "History")
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    page.wait_for_timeout(500)
    grid = page.evaluate(SIDEWAYS_JS, "[data-testid=stDataFrame] .dvn-scroller")
    assert grid and all(sw <= cw + 1 for sw, cw in grid), grid
    _shot(page, f"history_{w}.png")
    assert "Traceback" not in page.content()


def test_browser_leaving_a_running_page_keeps_the_run(servers, page):
    """Click another page during a 1,000,000-request run: the run is stored, nothing is failed,
    and the Run page shows the result on return."""
    srv = servers()
    page.set_viewport_size(WIDE)
    page.goto(srv.url + "/")
    page.get_by_label("Requests", exact=True).fill("1000000")
    page.get_by_role("button", name="Run simulation").click()
    page.get_by_text("Computing in the background", exact=False).wait_for()
    _nav(page, "History")
    page.get_by_role("heading", name="Run history").wait_for()
    store = srv.store()
    try:
        deadline = time.time() + 180
        while True:
            rows = store.list_runs()
            assert not [r for r in rows if r.status == "failed"], [r.error for r in rows]
            if rows and rows[0].status == "done":
                break
            assert time.time() < deadline, "the run was not stored"
            time.sleep(0.5)
        assert len(rows) == 1 and rows[0].num_requests == 1_000_000
        assert store.count_runs(status="failed") == 0
    finally:
        store.close()
    _nav(page, "Run")
    _wait_cards(page)
    page.get_by_text("1,000,000 req", exact=False).first.wait_for()
    assert f"run={rows[0].hash}" in page.url
    _nav(page, "History")
    page.get_by_text("1 stored run matches", exact=False).wait_for()
    assert "Traceback" not in page.content()


def test_browser_comparison_link_rebuilds_on_empty_and_partial_stores(servers, page):
    page.set_viewport_size(NARROW)
    source, empty, partial = servers(), servers(), servers()
    page.goto(source.url + "/compare")
    page.get_by_role("button", name="Run comparison").click()
    _charts_drawn_at(page, COMPARE_CHARTS)
    page.wait_for_url("**compare=*")
    link = page.url.split("/compare?", 1)[1]
    hashes = page.url.split("compare=", 1)[1].split("&", 1)[0].replace("%2C", ",").split(",")

    # an empty store: every run is missing, one button rebuilds them all
    page.goto(f"{empty.url}/compare?{link}")
    page.get_by_text(f"{N} of {N} runs of this comparison cannot be shown", exact=False).wait_for()
    page.get_by_role("button", name=f"Recompute the {N} missing runs").click()
    _charts_drawn_at(page, COMPARE_CHARTS)
    page.get_by_text(f"{N} runs compared").wait_for()
    assert page.url.split("compare=", 1)[1].split("&", 1)[0].replace("%2C", ",").split(",") == hashes

    # a store that holds one of them (the default run, made on its Run page)
    page.goto(partial.url + "/")
    page.get_by_role("button", name="Run simulation").click()
    _wait_cards(page)
    assert f"run={hashes[DEFAULT_RUN]}" in page.url
    page.goto(f"{partial.url}/compare?{link}")
    page.get_by_text(f"{N - 1} of {N} runs of this comparison cannot be shown", exact=False).wait_for()
    page.get_by_text(f"1 of {N} runs shown").wait_for()
    page.get_by_role("button", name=f"Recompute the {N - 1} missing runs").click()
    page.get_by_text(f"{N} runs compared").wait_for()
    _charts_drawn_at(page, COMPARE_CHARTS)
    with partial.store() as store:
        assert sorted(r.hash for r in store.list_runs()) == sorted(hashes)
    assert "Traceback" not in page.content()
