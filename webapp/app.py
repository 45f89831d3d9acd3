"""batchlab web explorer: ``streamlit run webapp/app.py`` (or ``batchlab app``)."""
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:  # running from a checkout without an install
    sys.path.insert(0, str(ROOT.parent))

import streamlit as st  # noqa: E402

from batchlab.core.hardware import WEB_ENV  # noqa: E402

os.environ[WEB_ENV] = "1"   # this process and the job runners it starts: a model is a bundled name, never a path

from batchlab.webapp.favicon import favicon  # noqa: E402
from batchlab.webapp.services import log, user_message  # noqa: E402

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("batchlab").setLevel(logging.INFO)
st.set_page_config(page_title="batchlab", page_icon=favicon(), layout="wide")  # served by this server

PAGES = [
    st.Page(ROOT / "app_pages" / "run.py", title="Run", icon=":material/play_circle:", default=True),
    st.Page(ROOT / "app_pages" / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(ROOT / "app_pages" / "calibration.py", title="Calibration", icon=":material/grid_on:",
            url_path="calibration"),
    st.Page(ROOT / "app_pages" / "history.py", title="History", icon=":material/history:", url_path="history"),
    st.Page(ROOT / "app_pages" / "sweeps.py", title="Sweeps", icon=":material/query_stats:", url_path="sweeps"),
    st.Page(ROOT / "app_pages" / "plan.py", title="Plan", icon=":material/calculate:", url_path="plan"),
    st.Page(ROOT / "app_pages" / "reproduce.py", title="Reproduce", icon=":material/science:", url_path="reproduce"),
]

_t0 = time.perf_counter()
page = st.navigation(PAGES, position="top")
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - last resort: a message for the user, the traceback for the log
    log.error("page %s failed", page.title, exc_info=True)
    st.error(f"This page could not be drawn: {user_message(exc)}", icon=":material/error:")
log.debug("page %s ran in %.3f s", page.title, time.perf_counter() - _t0)
